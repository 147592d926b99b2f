"""GeoTIFFs as the BigEarthNet releases ship them: v2 S2 bands, S1 backscatter, reference maps.

One hand-written encoder of single-band, stripped, little-endian classic TIFFs with the GeoTIFF
keys of the real files (:mod:`ingest.testing.geotiff`), parametrised by what differs between the
distributions. Checked against the real files copied into ``ingest/testing/data/bigearthnet-v2``:

- :func:`encode_v2_band` — v2 S2: the v1 layout plus ``GDAL_NODATA`` "0" (16 tags); the 120 × 120
  bands store their four StripByteCounts as SHORT, the single-strip ones as LONG. Re-encoding the
  real v2 patch's pixels gives the real files byte for byte.
- :func:`encode_s1_band` — v1 and v2 S1: float32, 17-row strips, no nodata tag. Byte for byte too.
- :func:`encode_reference_map` — uint16, Deflate with horizontal predictor, 34-row strips,
  ``GDAL_NODATA`` "0": the real map's tags, values and layout (17 tags, same order, same offsets
  of the tag values). The deflate bytes differ from GDAL's (it used another deflate library), so
  the strip sizes do; the pixels read back identically.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np

from ingest.testing.geotiff import _citation, _geokeys

__all__ = ["encode_reference_map", "encode_s1_band", "encode_v2_band"]

_SHORT, _LONG, _ASCII, _DOUBLE = 3, 4, 2, 12
_HEADER_SIZE: Final = 8
#: GDAL's nodata tag: the value as ASCII text.
_GDAL_NODATA: Final = 42113
_ROWS_10M: Final = 34
_ROWS_S1: Final = 17
#: zlib level of the reference maps (GDAL's default; its output bytes are not reproducible).
_DEFLATE_LEVEL: Final = 6


@dataclass(frozen=True)
class _Style:
    rows_per_strip: int
    short_counts: bool
    nodata: str | None
    deflate: bool


def encode_v2_band(pixels: np.ndarray, *, epsg: int, x_ul: float, y_ul: float, gsd: float) -> bytes:
    """One v2 (reBEN) S2 band: uint16, uncompressed, stripped, ``GDAL_NODATA`` "0"."""
    _check(pixels, np.uint16)
    many = pixels.shape[0] == 120  # the 10 m bands; 20 m and 60 m bands are one strip
    rows = _ROWS_10M if many else pixels.shape[0]
    style = _Style(rows, short_counts=many, nodata="0", deflate=False)
    return _encode(pixels, epsg, x_ul, y_ul, gsd, style)


def encode_s1_band(pixels: np.ndarray, *, epsg: int, x_ul: float, y_ul: float) -> bytes:
    """One S1 band (VV or VH): float32 dB, 120 × 120 at 10 m, 17-row strips, no nodata tag."""
    _check(pixels, np.float32)
    style = _Style(_ROWS_S1, short_counts=False, nodata=None, deflate=False)
    return _encode(pixels, epsg, x_ul, y_ul, 10.0, style)


def encode_reference_map(pixels: np.ndarray, *, epsg: int, x_ul: float, y_ul: float) -> bytes:
    """One reference map: uint16 CLC codes on the 10 m grid, Deflate + predictor, nodata "0"."""
    _check(pixels, np.uint16)
    style = _Style(_ROWS_10M, short_counts=False, nodata="0", deflate=True)
    return _encode(pixels, epsg, x_ul, y_ul, 10.0, style)


def _check(pixels: np.ndarray, dtype: type[np.generic]) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype != dtype:
        raise ValueError(f"pixels must be a 2-D {np.dtype(dtype).name} array")
    if not all(0 < n < 2**16 for n in pixels.shape):
        raise ValueError(f"pixels must have 1 to 65535 rows and columns, got {pixels.shape}")


def _strips(pixels: np.ndarray, style: _Style) -> list[bytes]:
    data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    if style.deflate:
        # Horizontal predictor: each sample minus its left neighbour, modulo 2**16.
        data = data.copy()
        data[:, 1:] = pixels[:, 1:] - pixels[:, :-1]
    rows = style.rows_per_strip
    strips = [data[top : top + rows].tobytes() for top in range(0, data.shape[0], rows)]
    if style.deflate:
        strips = [zlib.compress(strip, _DEFLATE_LEVEL) for strip in strips]
    return strips


def _encode(
    pixels: np.ndarray, epsg: int, x_ul: float, y_ul: float, gsd: float, style: _Style
) -> bytes:
    height, width = pixels.shape
    citation = _citation(epsg)
    geokeys = _geokeys(epsg, citation)
    strips = _strips(pixels, style)
    counts = [len(strip) for strip in strips]
    n = len(strips)
    count_type = _SHORT if style.short_counts else _LONG
    ascii_value = citation.encode("ascii") + b"\0"
    entries = 15 + int(style.deflate) + int(style.nodata is not None)
    ifd_end = _HEADER_SIZE + 2 + 12 * entries + 4

    # Out-of-line values follow the IFD in the real files' order; small arrays are inline.
    counts_blob = struct.pack(f"<{n}{'H' if style.short_counts else 'I'}", *counts)
    counts_out = len(counts_blob) > 4
    offsets_out = 4 * n > 4
    blobs = [
        counts_blob if counts_out else b"",
        b"\0" * (4 * n) if offsets_out else b"",  # placeholder: the strip offsets, filled below
        struct.pack("<3d", gsd, gsd, 0.0),
        struct.pack("<6d", 0.0, 0.0, 0.0, float(x_ul), float(y_ul), 0.0),
        struct.pack(f"<{len(geokeys)}H", *geokeys),
        ascii_value,
    ]
    at = [ifd_end + sum(len(b) for b in blobs[:i]) for i in range(len(blobs))]
    data_at = at[-1] + len(blobs[-1])
    padding = b"\0" * (data_at % 2)  # word-aligned strips for odd-length citations
    data_at += len(padding)
    offsets = [data_at + sum(counts[:i]) for i in range(n)]
    blobs[1] = struct.pack(f"<{n}I", *offsets) if offsets_out else b""

    def short(value: int) -> bytes:
        return struct.pack("<H", value)

    sample_format = 3 if pixels.dtype == np.float32 else 1
    tags = [
        _entry(256, _SHORT, 1, short(width)),
        _entry(257, _SHORT, 1, short(height)),
        _entry(258, _SHORT, 1, short(8 * pixels.dtype.itemsize)),
        _entry(259, _SHORT, 1, short(8 if style.deflate else 1)),
        _entry(262, _SHORT, 1, short(1)),  # min-is-black
        _entry(273, _LONG, n, struct.pack("<I", at[1]) if offsets_out else _inline_long(offsets)),
        _entry(277, _SHORT, 1, short(1)),
        _entry(278, _SHORT, 1, short(style.rows_per_strip)),
        _entry(279, count_type, n, struct.pack("<I", at[0]) if counts_out else counts_blob),
        _entry(284, _SHORT, 1, short(1)),  # chunky
    ]
    if style.deflate:
        tags.append(_entry(317, _SHORT, 1, short(2)))  # horizontal differencing
    tags += [
        _entry(339, _SHORT, 1, short(sample_format)),
        _entry(33550, _DOUBLE, 3, struct.pack("<I", at[2])),
        _entry(33922, _DOUBLE, 6, struct.pack("<I", at[3])),
        _entry(34735, _SHORT, len(geokeys), struct.pack("<I", at[4])),
        _entry(34737, _ASCII, len(ascii_value), struct.pack("<I", at[5])),
    ]
    if style.nodata is not None:
        value = style.nodata.encode("ascii") + b"\0"
        assert len(value) <= 4, "a longer nodata text would need an out-of-line value"
        tags.append(_entry(_GDAL_NODATA, _ASCII, len(value), value))
    assert len(tags) == entries
    return b"".join(
        [
            b"II*\0",
            struct.pack("<IH", _HEADER_SIZE, entries),
            *tags,
            struct.pack("<I", 0),  # no next IFD
            *blobs,
            padding,
            *strips,
        ]
    )


def _inline_long(values: list[int]) -> bytes:
    """The single LONG of a one-value array, stored in the entry itself."""
    return struct.pack("<I", values[0])


def _entry(tag: int, field_type: int, count: int, value: bytes) -> bytes:
    """One IFD entry; an inline value is left-justified in its 4 bytes."""
    return struct.pack("<HHI", tag, field_type, count) + value.ljust(4, b"\0")
