"""Decoded partners: a Sentinel-1 patch (VV and VH, float32 backscatter in dB) or a reference map
(uint16 CLC 2018 codes), each 120 × 120 pixels on the patch's 10 m grid.

Values are kept exactly as delivered. An S1 band must be float32 and a map uint16 (anything else is
an :class:`~ingest.errors.InputDataError` naming the member), both 120 × 120 (checked before
decoding) at 10 m, and VV and VH must share one georeferencing.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from ..archive.members import ArchiveItem
from ..errors import InputDataError
from .geotiff import Raster, decode_geotiff

#: ``band_s1``'s order in the store.
S1_BANDS: Final = ("VV", "VH")
SIZE: Final = 120
GSD: Final = 10.0
MAP_FILE: Final = "reference_map.tif"

Georef = tuple[int, float, float]
"""(EPSG code, x of the upper-left corner, y of the upper-left corner)."""


def _checked(raster: Raster, member: str, what: str) -> Georef:
    """The georeference of a decoded partner band (its shape was checked by the decoder)."""
    if max(abs(raster.pixel_size[0] - GSD), abs(raster.pixel_size[1] - GSD)) > 1e-6:
        raise InputDataError(member, f"{what} pixel size {raster.pixel_size}, expected 10 m")
    return raster.epsg, raster.x_ul, raster.y_ul


def decode_s1(item: ArchiveItem, out: np.ndarray) -> Georef:
    """Decode the VV and VH bands of an S1 patch folder into ``out`` ((2, 120, 120) float32)."""
    missing = [b for b in S1_BANDS if f"{b}.tif" not in item.files]
    if missing:
        raise InputDataError(item.folder, f"missing S1 band {', '.join(missing)}")
    reference: Georef | None = None
    for slot, band in enumerate(S1_BANDS):
        member = item.member(f"{band}.tif")
        raster = decode_geotiff(item.files[f"{band}.tif"], member, np.float32, (SIZE, SIZE))
        georef = _checked(raster, member, "S1 band")
        if reference is None:
            reference = georef
        elif georef != reference:
            raise InputDataError(member, f"georeferencing {georef} differs from VV's {reference}")
        out[slot] = raster.pixels
    assert reference is not None
    return reference


def decode_reference_map(item: ArchiveItem, out: np.ndarray) -> Georef:
    """Decode a reference map into ``out`` ((120, 120) uint16)."""
    if MAP_FILE not in item.files:
        raise InputDataError(item.folder, f"no {item.prefix}{MAP_FILE}")
    member = item.member(MAP_FILE)
    raster = decode_geotiff(item.files[MAP_FILE], member, np.uint16, (SIZE, SIZE))
    georef = _checked(raster, member, "reference map")
    out[...] = raster.pixels
    return georef
