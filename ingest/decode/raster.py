"""A decoded band, and what the two GeoTIFF decoders share: the size check made before any pixel
is decoded, and the georeferencing read from the three GeoTIFF tags (the fast path of
:mod:`ingest.decode.geotiff` and the general one of :mod:`ingest.decode.tifffile_path` must agree
on both, to the last bit)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy.typing as npt

from ingest.errors import InputDataError

#: ModelPixelScale, ModelTiepoint, GeoKeyDirectory.
GEO_TAGS: Final = (33550, 33922, 34735)
USER_DEFINED: Final = 32767
MAX_PIXELS: Final = 2**24  # 1165 times the largest real band


@dataclass(frozen=True)
class Raster:
    """One decoded band. ``pixels`` is read-only: it may share memory with the input bytes."""

    pixels: npt.NDArray[Any]
    """2-D, of the dtype asked for (uint16 for S2 bands and reference maps, float32 for S1),
    native byte order, C-contiguous."""
    epsg: int
    """From GeoKey ProjectedCSTypeGeoKey (3072), else GeographicTypeGeoKey (2048)."""
    x_ul: float
    """Upper-left corner of the upper-left pixel (pixel-is-area), in CRS units."""
    y_ul: float
    pixel_size: tuple[float, float]
    """(x, y) from ModelPixelScale; y is positive for north-up images."""


def check_shape(name: str, found: tuple[int, ...], expected: tuple[int, int] | None) -> None:
    """The declared image size, before decoding: the expected one, or at most MAX_PIXELS."""
    if expected is not None and found != expected:
        raise InputDataError(name, f"shape {found}, expected {expected}")
    if math.prod(found) > MAX_PIXELS:
        raise InputDataError(name, f"unsupported TIFF: shape {found} is too large")


def georeference(
    scale: Sequence[int | float] | None,
    tiepoint: Sequence[int | float] | None,
    geokeys: Sequence[int | float] | None,
    *,
    name: str,
) -> tuple[int, float, float, tuple[float, float]]:
    """(epsg, x_ul, y_ul, (sx, sy)) from the three GeoTIFF tags, the same in both paths."""
    if tiepoint is None or len(tiepoint) < 6:
        raise InputDataError(name, "no GeoTIFF georeferencing (ModelTiepoint missing)")
    if scale is None or len(scale) < 2:
        raise InputDataError(name, "no GeoTIFF georeferencing (ModelPixelScale missing)")
    if geokeys is None or len(geokeys) < 4:
        raise InputDataError(name, "no GeoTIFF georeferencing (GeoKeyDirectory missing)")
    if geokeys[0] != 1:  # KeyDirectoryVersion: 1 is the only one (GDAL and tifffile agree)
        raise InputDataError(name, f"GeoKeyDirectory of version {geokeys[0]}, expected 1")
    n_keys = int(geokeys[3])
    if len(geokeys) < 4 + 4 * n_keys:
        raise InputDataError(name, f"malformed GeoKeyDirectory: {n_keys} keys in {len(geokeys)}")
    ids = geokeys[4 : 4 + 4 * n_keys : 4]
    epsg = geokey(geokeys, ids, 3072)
    if epsg is None:
        epsg = geokey(geokeys, ids, 2048)
    if epsg is None:
        raise InputDataError(name, "no EPSG code in GeoKeys (ProjectedCSType and GeographicType)")
    if epsg in (0, USER_DEFINED):
        raise InputDataError(name, f"GeoKeys hold a user-defined CRS ({epsg}), not an EPSG code")
    sx, sy = float(scale[0]), float(scale[1])
    x_ul, y_ul = upper_left(tiepoint, (sx, sy), is_point(geokeys))
    return epsg, x_ul, y_ul, (sx, sy)


def upper_left(
    tiepoint: Sequence[int | float], pixel_size: tuple[float, float], point: bool
) -> tuple[float, float]:
    """The upper-left corner from a tiepoint (raster I, J, K, model X, Y, Z ...)."""
    sx, sy = pixel_size
    i, j, _, x, y = tiepoint[:5]
    x_ul, y_ul = x - i * sx, y + j * sy
    if point:  # PixelIsPoint: the tiepoint is a pixel centre
        x_ul, y_ul = x_ul - sx / 2, y_ul + sy / 2
    return float(x_ul), float(y_ul)


def is_point(geokeys: Sequence[int | float] | None) -> bool:
    """Whether GTRasterTypeGeoKey (1025) says PixelIsPoint (2)."""
    if geokeys is None or len(geokeys) < 4:
        return False
    ids = geokeys[4 : 4 + 4 * int(geokeys[3]) : 4]
    return geokey(geokeys, ids, 1025) == 2


def geokey(geokeys: Sequence[int | float], ids: Sequence[int | float], key: int) -> int | None:
    """A GeoKey's value when stored in the directory itself (all the keys used here are)."""
    if key not in ids:
        return None
    at = 4 + 4 * ids.index(key)
    return int(geokeys[at + 3]) if geokeys[at + 1] == 0 else None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
