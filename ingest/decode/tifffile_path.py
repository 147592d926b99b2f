"""The general GeoTIFF path: tifffile, for what the fast path of :mod:`ingest.decode.geotiff` does
not take (tiled or compressed files, BigTIFF, other layouts). Slower but general: it decodes, or
fails with an :class:`~ingest.errors.InputDataError` naming the member. tifffile's own decoders
(without imagecodecs) inflate whatever they are given, so every segment is measured with a bounded
inflater first, against the size the checked shape gives."""

from __future__ import annotations

import io
import lzma
import math
import zlib
from typing import Any

import numpy as np
import tifffile

from ingest.errors import InputDataError

from .raster import GEO_TAGS, Raster, check_shape, georeference, one_line

#: Largest strip or tile tifffile may decode for an image smaller than it (a 512 × 512 tile).
_MAX_SEGMENT_PIXELS = 512 * 512
#: Compressions the tifffile path accepts, by the bounded inflater that checks each segment first.
_TIFFFILE_CODECS: dict[int, str | None] = {1: None, 8: "zlib", 32946: "zlib", 50013: "zlib",
                                           34925: "lzma", 32773: "packbits"}  # fmt: skip
_UINT16 = np.dtype(np.uint16)


def decode_with_tifffile(
    buf: bytes | memoryview,
    name: str,
    wanted: np.dtype[Any] = _UINT16,
    shape: tuple[int, int] | None = None,
) -> Raster:
    """The general path. Without imagecodecs, tifffile decodes raw, deflate, lzma and packbits;
    every segment is checked to inflate to at most its size before tifffile decodes it."""
    what = "TIFF"
    try:
        with tifffile.TiffFile(io.BytesIO(buf)) as tif:
            page = tif.pages.first
            what = f"TIFF (compression {getattr(page.compression, 'name', page.compression)})"
            if page.dtype is None:
                layout = f"{page.bitspersample}-bit samples of format {page.sampleformat}"
                raise InputDataError(name, f"unsupported TIFF: {layout}")
            if page.dtype != wanted:
                raise InputDataError(name, f"dtype {page.dtype}, expected {wanted}")
            if len(page.shape) != 2:
                raise InputDataError(name, f"unsupported TIFF: shape {page.shape}, expected 2-D")
            # Unlike the fast path's, these pixels are not bounded by the file's size: a few
            # corrupt header bytes could otherwise make tifffile allocate gigabytes.
            check_shape(name, tuple(page.shape), shape)
            _check_segments(buf, page, wanted.itemsize, name)
            decoded = page.asarray(maxworkers=1)
            geo = [_tag_values(page.tags.get(tag)) for tag in GEO_TAGS]
    except InputDataError:
        raise
    except Exception as exc:  # tifffile and its codecs raise anything from KeyError to zlib.error
        raise InputDataError(name, f"cannot decode {what}: {one_line(exc)}") from exc
    epsg, x_ul, y_ul, pixel_size = georeference(*geo, name=name)
    pixels = np.ascontiguousarray(decoded, dtype=wanted.newbyteorder("="))
    pixels.flags.writeable = False
    return Raster(pixels, epsg, x_ul, y_ul, pixel_size)


def _check_segments(
    buf: bytes | memoryview, page: tifffile.TiffPage, itemsize: int, name: str
) -> None:
    """Bound what tifffile allocates and inflates for ``page``: each strip or tile at most the
    image's size (or a 512 × 512 tile), and each compressed one inflating to at most its own
    size (tifffile's decoders without imagecodecs inflate whatever they are given)."""
    compression = int(page.compression)
    if compression not in _TIFFFILE_CODECS:
        label = getattr(page.compression, "name", compression)
        raise InputDataError(name, f"unsupported TIFF compression {label}")
    segment = math.prod(page.chunks)
    if segment > max(page.size, _MAX_SEGMENT_PIXELS):
        raise InputDataError(name, f"unsupported TIFF: segments of {page.chunks} pixels")
    codec = _TIFFFILE_CODECS[compression]
    if codec is None:
        return
    limit = segment * itemsize
    for at, n in zip(page.dataoffsets, page.databytecounts, strict=False):
        if _inflated_size(codec, buf[int(at) : int(at) + int(n)], limit) > limit:
            raise InputDataError(
                name, f"malformed TIFF: a compressed segment inflates beyond its {limit:,} bytes"
            )


def _inflated_size(codec: str, data: bytes | memoryview, limit: int) -> int:
    """How many bytes ``data`` inflates to with ``codec``, counting no further than limit + 1
    (so never holding more than that)."""
    if codec == "packbits":
        return _packbits_size(bytes(data), limit)
    size = 0
    while data and size <= limit:  # lzma.decompress, as tifffile calls it, reads every stream
        inflater = zlib.decompressobj() if codec == "zlib" else lzma.LZMADecompressor()
        size += len(inflater.decompress(data, limit + 1 - size))
        if codec == "zlib" or not inflater.eof:
            break
        data = inflater.unused_data
    return size


def _packbits_size(data: bytes, limit: int) -> int:
    """The length PackBits ``data`` decodes to (counted up to limit + 1, never decoded)."""
    size = at = 0
    end = len(data)
    while at < end and size <= limit:
        n = data[at]
        if n < 128:
            size += n + 1
            at += n + 2
        elif n > 128:
            size += 257 - n
            at += 2
        else:
            at += 1
    return size


def _tag_values(tag: tifffile.TiffTag | None) -> tuple[int | float, ...] | None:
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, np.ndarray):
        return tuple(value.ravel().tolist())
    if isinstance(value, tuple | list):
        return tuple(value)
    return (value,)
