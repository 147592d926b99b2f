"""Write single-band Sentinel-2 GeoTIFFs the way BigEarthNet v1 ships them, or in other layouts.

``"stripped"`` reproduces the real files byte for byte (checked against every band of the six real
example patches), so tests and demos can build archives that the ingest cannot tell from the real
ones. ``"cog"`` (tiled, deflate) and ``"bigendian"`` exercise the decoder's other paths; they are
written with tifffile, which is independent of the hand-written decoder under test.
"""

from __future__ import annotations

import io
import struct
from typing import Literal

import numpy as np
import tifffile

Layout = Literal["stripped", "cog", "bigendian"]

__all__ = ["Layout", "encode_band"]

# TIFF field types.
_SHORT, _LONG, _ASCII, _DOUBLE = 3, 4, 2, 12
# Classic TIFF: 8-byte header, then the IFD: entry count, 12-byte entries, next-IFD offset.
_HEADER_SIZE = 8
_ENTRY_COUNT = 15
_IFD_END = _HEADER_SIZE + 2 + 12 * _ENTRY_COUNT + 4
# The real 120×120 files are cut in strips of 34 rows; the smaller ones are a single strip.
_ROWS_PER_STRIP_10M = 34
_TILE = 16  # divides neither 60 nor 20, so partial edge tiles are exercised too


def encode_band(
    pixels: np.ndarray,
    *,
    epsg: int,
    x_ul: float,
    y_ul: float,
    gsd: float,
    layout: Layout = "stripped",
) -> bytes:
    """Encode one band as a GeoTIFF in WGS 84 / UTM ``epsg`` (326zz or 327zz), north-up.

    ``(x_ul, y_ul)`` is the upper-left corner of the upper-left pixel and ``gsd`` the pixel size,
    both in metres. ``pixels`` must be a 2-D uint16 array.
    """
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(f"pixels must be a 2-D uint16 array, got {_describe(pixels)}")
    if not all(0 < n < 2**16 for n in pixels.shape):
        raise ValueError(f"pixels must have 1 to 65535 rows and columns, got {pixels.shape}")
    citation = _citation(epsg)
    scale = (float(gsd), float(gsd), 0.0)
    tiepoint = (0.0, 0.0, 0.0, float(x_ul), float(y_ul), 0.0)
    geokeys = _geokeys(epsg, citation)
    if layout == "stripped":
        return _encode_stripped(pixels, scale, tiepoint, geokeys, citation)
    if layout == "cog":
        return _encode_tifffile(pixels, scale, tiepoint, geokeys, citation, big_endian=False)
    if layout == "bigendian":
        return _encode_tifffile(pixels, scale, tiepoint, geokeys, citation, big_endian=True)
    raise ValueError(f"unknown layout {layout!r}, expected 'stripped', 'cog' or 'bigendian'")


def _describe(pixels: object) -> str:
    if isinstance(pixels, np.ndarray):
        return f"{pixels.ndim}-D {pixels.dtype}"
    return type(pixels).__name__


def _citation(epsg: int) -> str:
    """The GeoAsciiParams text of the real files: projected then geographic citation."""
    hemisphere = {326: "N", 327: "S"}.get(epsg // 100)
    zone = epsg % 100
    if hemisphere is None or not 1 <= zone <= 60:
        raise ValueError(f"epsg must be WGS 84 / UTM (32601-32660 or 32701-32760), got {epsg}")
    return f"WGS 84 / UTM zone {zone}{hemisphere}|WGS 84|"


def _geokeys(epsg: int, citation: str) -> tuple[int, ...]:
    """The GeoKeyDirectory of the real files: projected, PixelIsArea, metres, degrees."""
    pcs_len = citation.index("|") + 1  # the citations point into GeoAsciiParams, '|'-terminated
    gcs_len = len(citation) - pcs_len
    return (
        *(1, 1, 0, 7),  # directory version 1.1.0, 7 keys
        *(1024, 0, 1, 1),  # GTModelType: projected
        *(1025, 0, 1, 1),  # GTRasterType: PixelIsArea
        *(1026, 34737, pcs_len, 0),  # GTCitation
        *(2049, 34737, gcs_len, pcs_len),  # GeogCitation
        *(2054, 0, 1, 9102),  # GeogAngularUnits: degree
        *(3072, 0, 1, epsg),  # ProjectedCSType
        *(3076, 0, 1, 9001),  # ProjLinearUnits: metre
    )


def _encode_stripped(
    pixels: np.ndarray,
    scale: tuple[float, ...],
    tiepoint: tuple[float, ...],
    geokeys: tuple[int, ...],
    citation: str,
) -> bytes:
    height, width = pixels.shape
    rows = _ROWS_PER_STRIP_10M if height == 120 else height
    counts = [min(rows, height - top) * width * 2 for top in range(0, height, rows)]
    ascii_value = citation.encode("ascii") + b"\0"

    # Out-of-line values follow the IFD in the real files' order; arrays of one strip are inline.
    many = len(counts) > 1
    blob_sizes = [4 * len(counts) if many else 0] * 2 + [24, 48, 2 * len(geokeys), len(ascii_value)]
    blob_offsets = [_IFD_END + sum(blob_sizes[:i]) for i in range(len(blob_sizes))]
    counts_at, offsets_at, scale_at, tiepoint_at, geokeys_at, ascii_at = blob_offsets
    data_at = blob_offsets[-1] + blob_sizes[-1]
    padding = b"\0" * (data_at % 2)  # keep the strips word-aligned for odd-length citations
    data_at += len(padding)
    strip_offsets = [data_at + sum(counts[:i]) for i in range(len(counts))]

    def longs(values: list[int], at: int) -> bytes:  # the array, inline when it has one value
        return struct.pack("<I", at) if many else struct.pack("<I", values[0])

    entries = [
        _entry(256, _SHORT, 1, struct.pack("<H", width)),
        _entry(257, _SHORT, 1, struct.pack("<H", height)),
        _entry(258, _SHORT, 1, struct.pack("<H", 16)),
        _entry(259, _SHORT, 1, struct.pack("<H", 1)),  # no compression
        _entry(262, _SHORT, 1, struct.pack("<H", 1)),  # min-is-black
        _entry(273, _LONG, len(counts), longs(strip_offsets, offsets_at)),
        _entry(277, _SHORT, 1, struct.pack("<H", 1)),
        _entry(278, _SHORT, 1, struct.pack("<H", rows)),
        _entry(279, _LONG, len(counts), longs(counts, counts_at)),
        _entry(284, _SHORT, 1, struct.pack("<H", 1)),  # chunky
        _entry(339, _SHORT, 1, struct.pack("<H", 1)),  # unsigned integer
        _entry(33550, _DOUBLE, 3, struct.pack("<I", scale_at)),
        _entry(33922, _DOUBLE, 6, struct.pack("<I", tiepoint_at)),
        _entry(34735, _SHORT, len(geokeys), struct.pack("<I", geokeys_at)),
        _entry(34737, _ASCII, len(ascii_value), struct.pack("<I", ascii_at)),
    ]
    assert len(entries) == _ENTRY_COUNT
    parts = [
        b"II*\0",
        struct.pack("<IH", _HEADER_SIZE, _ENTRY_COUNT),
        *entries,
        struct.pack("<I", 0),  # no next IFD
        struct.pack(f"<{len(counts)}I", *counts) if many else b"",
        struct.pack(f"<{len(counts)}I", *strip_offsets) if many else b"",
        struct.pack("<3d", *scale),
        struct.pack("<6d", *tiepoint),
        struct.pack(f"<{len(geokeys)}H", *geokeys),
        ascii_value,
        padding,
        pixels.astype("<u2", copy=False).tobytes(),  # C order,
    ]
    return b"".join(parts)


def _entry(tag: int, field_type: int, count: int, value: bytes) -> bytes:
    """One IFD entry; an inline value is left-justified in its 4 bytes."""
    return struct.pack("<HHI", tag, field_type, count) + value.ljust(4, b"\0")


def _encode_tifffile(
    pixels: np.ndarray,
    scale: tuple[float, ...],
    tiepoint: tuple[float, ...],
    geokeys: tuple[int, ...],
    citation: str,
    *,
    big_endian: bool,
) -> bytes:
    extratags = [
        (33550, "d", 3, scale, True),
        (33922, "d", 6, tiepoint, True),
        (34735, "H", len(geokeys), geokeys, True),
        (34737, "s", 0, citation, True),
    ]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        pixels,
        byteorder=">" if big_endian else "<",
        tile=None if big_endian else (_TILE, _TILE),
        # Deflate through the standard library's zlib: tifffile needs no imagecodecs for it.
        compression=None if big_endian else "zlib",
        photometric="minisblack",
        metadata=None,  # no tifffile JSON description: keep the tag set close to the real files'
        software=False,
        extratags=extratags,
    )
    return buffer.getvalue()
