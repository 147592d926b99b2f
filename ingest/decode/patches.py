"""Decoded patches: the 12 band files of a source item → one validated :class:`Patch`.

Each band must decode to uint16 at its group's size (120/60/20 px) and pixel size (10/20/60 m), and
all bands must agree on the CRS and the upper-left corner: georeferencing comes from the GeoTIFF
tags, never from the STAC geometry (which is known to be wrong in MLHub's items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..archive.members import ArchiveItem
from ..errors import InputDataError
from ..nomenclature import BAND_SLOT, BANDS
from .geotiff import decode_geotiff

#: Files of a source item folder that are not band files of BigEarthNet v1 but are expected.
_METADATA_FILES = frozenset({"stac.json", "labels_metadata.json"})


@dataclass(frozen=True)
class Patch:
    """What the store keeps of a decoded patch besides its pixels (which went into the batch)."""

    patch_id: str
    epsg: int
    x_ul: float
    y_ul: float
    ignored: tuple[str, ...] = ()
    """Files of the item that are not one of the 12 bands (e.g. ``B10.tif``), left out."""


def band_file(band: str) -> str:
    return f"{band}.tif"


def decode_patch(item: ArchiveItem, patch_id: str, out: dict[str, np.ndarray]) -> Patch:
    """Decode and validate the 12 bands of a source item into ``out`` (band array name →
    (bands, y, x) uint16, e.g. one slot of a batch buffer); InputDataError names the culprit.

    On an error ``out`` may be partly overwritten.
    """
    missing = [b for b in BANDS if band_file(b) not in item.files]
    if missing:
        raise InputDataError(item.folder, f"missing band {', '.join(missing)}")
    reference: tuple[int, float, float, str] | None = None
    for band in BANDS:
        member = item.member(band_file(band))
        group, slot = BAND_SLOT[band]
        # The size is checked before decoding: a hostile header cannot make it allocate more.
        raster = decode_geotiff(item.files[band_file(band)], member, shape=(group.size, group.size))
        if max(abs(raster.pixel_size[0] - group.gsd), abs(raster.pixel_size[1] - group.gsd)) > 1e-6:
            raise InputDataError(member, f"pixel size {raster.pixel_size}, expected {group.gsd} m")
        if reference is None:
            reference = (raster.epsg, raster.x_ul, raster.y_ul, band)
        elif (raster.epsg, raster.x_ul, raster.y_ul) != reference[:3]:
            raise InputDataError(
                member,
                f"georeferencing EPSG:{raster.epsg} ({raster.x_ul}, {raster.y_ul}) differs from "
                f"{reference[3]}'s EPSG:{reference[0]} ({reference[1]}, {reference[2]})",
            )
        out[group.array_name][slot] = raster.pixels
    assert reference is not None
    expected = {band_file(b) for b in BANDS} | _METADATA_FILES
    ignored = tuple(sorted(f for f in item.files if f not in expected))
    return Patch(patch_id, reference[0], reference[1], reference[2], ignored)
