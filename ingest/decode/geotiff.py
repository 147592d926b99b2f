"""Decode one BigEarthNet band file (a single-band uint16 GeoTIFF) into pixels and georeferencing.

This is the ingest's hot path: a patch has 12 band files and the dataset about 7 million of them.
Measured on this project's machine per 120×120 file: a hand-rolled IFD parse plus one
``numpy.frombuffer`` ≈ 8 µs; imagecodecs 21 µs; tifffile 81–145 µs; rasterio 530–650 µs. No library
reaches that speed, hence the hand-written fast path for the layout every real file has
(uncompressed, stripped, one 16-bit unsigned sample; either byte order). With all its checks and the
georeferencing it measures ≈ 12 µs (timeit, bytes input; 17 µs big-endian, which must byte-swap).
Anything else (tiled, compressed, BigTIFF, other dtypes) goes through tifffile, slower but general,
so it still decodes or fails with a clear :class:`~ingest.errors.InputDataError` naming the member.

The bytes are untrusted (archives from mirrors): the image's declared size is checked against the
caller's expected shape (else :data:`~ingest.decode.raster.MAX_PIXELS`) before anything is
decoded; strip offsets and sizes must be unsigned integers inside the file; every decompression,
here and on the tifffile path (:mod:`ingest.decode.tifffile_path`), stops at the size the checked
shape gives. No allocation is larger than the file or the image.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.errors import InputDataError

from .raster import (
    GEO_TAGS,
    Raster,
    check_shape,
    georeference,
    is_point,
    one_line,
    upper_left,
)
from .tifffile_path import decode_with_tifffile

__all__ = ["Raster", "decode_geotiff"]


_Entry = tuple[int, int, int, bytes]  # tag, field type, count, value or offset (4 raw bytes)


class _NotFast(Exception):
    """A TIFF outside the fast path's layout: tifffile decides whether it decodes."""


# TIFF field type -> struct code, item size. ASCII and rationals are never needed here.
_FIELDS: dict[int, tuple[str, int]] = {
    1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 6: ("b", 1), 7: ("B", 1),
    8: ("h", 2), 9: ("i", 4), 11: ("f", 4), 12: ("d", 8),
}  # fmt: skip
_ENTRY = {bo: struct.Struct(bo + "HHI4s") for bo in "<>"}
_HEAD = {bo: struct.Struct(bo + "4xI") for bo in "<>"}
_SHORT = {bo: struct.Struct(bo + "H") for bo in "<>"}
_OFFSET = {bo: struct.Struct(bo + "I") for bo in "<>"}
#: The fast path's pixel kinds: uint16 (S2 bands) and float32 (Sentinel-1), either byte order.
_KINDS = ("u2", "f4")
_PIXEL = {(kind, bo): np.dtype(bo + kind) for kind in _KINDS for bo in "<>"}
_NATIVE = "<" if sys.byteorder == "little" else ">"

_CLASSIC = {b"II*\0": "<", b"MM\0*": ">"}
_BIGTIFF = (b"II+\0", b"MM\0+")
_TILE_TAGS = (322, 323, 324, 325)
_WHOLE_IMAGE = 2**32 - 1  # the RowsPerStrip default
_TIEPOINT = 33922
# Compression, SamplesPerPixel, BitsPerSample, SampleFormat, PlanarConfiguration: the values the
# fast path needs, and what an absent tag means (BitsPerSample's default, 1, is never right).
_LAYOUT_TAGS = (259, 277, 258, 339, 284)
_LAYOUT_VALUES = {"u2": (1, 1, 16, 1, 1), "f4": (1, 1, 32, 3, 1)}
_LAYOUT_DEFAULTS = (1, 1, 1, 1, 1)
# Those five entries exactly as every real file has them (SHORT, inline, zero-padded): then the
# layout check is one tuple comparison instead of five decodes.
_REAL_LAYOUT = {
    (kind, bo): tuple(
        (tag, 3, 1, struct.pack(bo + "H2x", value))
        for tag, value in zip(_LAYOUT_TAGS, _LAYOUT_VALUES[kind], strict=True)
    )
    for kind in _KINDS
    for bo in "<>"
}
#: Most values read from one tag (a real GeoKeyDirectory has 32): a tag of millions of values
#: would become a tuple of millions of Python ints.
_MAX_VALUES = 4096
#: The last fast-path decode of each file size: (the bytes the parse looked at, what it found).
#: The 12 band files of a patch share all of their header but the size-dependent tags, so 9 of
#: them repeat the header of an earlier band of the same size: a byte comparison then replaces
#: the parse (the parse is a function of those bytes and the file size, nothing else).
_RECENT: dict[int, tuple[bytes, _Parsed]] = {}
_RECENT_SIZES = 16
#: Bytes per value of every TIFF 6 field type (ASCII and rationals too: real files have them).
_TYPE_BYTES: dict[int, int] = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8,
                               11: 4, 12: 8}  # fmt: skip


def decode_geotiff(
    data: bytes | memoryview,
    name: str,
    dtype: npt.DTypeLike = np.uint16,
    shape: tuple[int, int] | None = None,
) -> Raster:
    """Decode a single-band GeoTIFF of ``dtype`` (uint16: the S2 bands, the reference maps;
    float32: Sentinel-1); ``name`` (the archive member) names it in errors. ``shape`` (rows,
    columns), when given, is the only size accepted, checked before any pixel is decoded.

    Raises :class:`InputDataError` for anything that is not such a file, whatever went wrong.
    The fast path takes uncompressed uint16 files; everything else goes through tifffile.
    """
    wanted = np.dtype(dtype)
    try:
        buf = data if isinstance(data, bytes) else memoryview(data).cast("B")
        if len(buf) < 8:
            raise InputDataError(name, f"not a TIFF file ({len(buf) or 'no'} bytes)")
        magic = bytes(buf[:4])
        if magic in _CLASSIC:
            kind = wanted.newbyteorder("<").str[1:]
            if kind in _KINDS:
                if isinstance(buf, bytes):
                    seen = _RECENT.get(len(buf))
                    if (
                        seen is not None
                        and seen[1].kind == kind
                        and (shape is None or seen[1].shape == shape)
                    ):
                        if buf.startswith(seen[0]):
                            return _raster(buf, seen[1])
                        moved = _moved(buf, *seen)
                        if moved is not None:
                            return _raster(buf, moved)
                try:
                    return _decode_fast(buf, _CLASSIC[magic], name, kind, shape)
                except _NotFast:
                    pass
        elif magic not in _BIGTIFF:
            raise InputDataError(name, f"not a TIFF file (starts with {magic!r})")
        return decode_with_tifffile(buf, name, wanted, shape)
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError) as exc:
        # Offsets and counts that point nowhere sensible, values of unexpected types, ...
        raise InputDataError(name, f"malformed TIFF: {one_line(exc)}") from exc


def _decode_fast(
    buf: bytes | memoryview,
    bo: str,
    name: str,
    kind: str = "u2",
    shape: tuple[int, int] | None = None,
) -> Raster:
    size = len(buf)
    (ifd,) = _HEAD[bo].unpack_from(buf)
    if ifd < 8 or ifd + 2 > size:
        raise InputDataError(name, f"truncated TIFF: first IFD at byte {ifd} of {size}")
    (count,) = _SHORT[bo].unpack_from(buf, ifd)
    end = ifd + 2 + 12 * count  # then the next IFD's offset, never needed but part of the IFD
    if end + 4 > size:
        raise InputDataError(name, f"truncated TIFF: IFD ends at byte {end + 4} of {size}")
    # Entries stay raw until needed: most of the 15 tags of a real file are never decoded.
    tags = {e[0]: e for e in _ENTRY[bo].iter_unpack(buf[ifd + 2 : end])}
    if len(tags) != count:  # readers disagree on which entry counts: refuse
        raise InputDataError(name, "malformed TIFF: a tag appears twice in the IFD")
    if not tags.keys().isdisjoint(_TILE_TAGS):
        raise _NotFast
    layout = tuple(map(tags.get, _LAYOUT_TAGS))
    deflated = False
    if layout != _REAL_LAYOUT[kind, bo] and not _is_plain_layout(
        buf, bo, layout, _LAYOUT_VALUES[kind], name
    ):
        deflated = kind == "u2" and _is_deflate_layout(
            buf, bo, layout, _LAYOUT_VALUES[kind], tags, name
        )
        if not deflated:
            raise _NotFast
    width = _scalar(bo, tags.get(256))
    height = _scalar(bo, tags.get(257))
    rows = _scalar(bo, tags.get(278)) if 278 in tags else _WHOLE_IMAGE
    if not width or not height or not rows:
        raise _NotFast  # absent, of another type, or 0: tifffile decides
    check_shape(name, (height, width), shape)
    n_strips = -(-height // min(rows, height))
    offsets = _positions(buf, bo, tags.get(273), name, n_strips)
    counts = _positions(buf, bo, tags.get(279), name, n_strips)
    if offsets is None or counts is None:
        raise _NotFast
    if offsets and min(offsets) < 8:  # readers differ: tifffile takes offset 0 for "no strip"
        raise InputDataError(name, f"malformed TIFF: a strip at byte {min(offsets)}, in the header")
    first: int | None = None
    if deflated:
        predictor = _layout_value(buf, bo, tags.get(317), name) == (2,)
        pixels = _inflate_strips(buf, bo, (height, width), rows, offsets, counts, name, predictor)
    else:
        pixels, first = _read_strips(buf, bo, (height, width), rows, offsets, counts, name, kind)
    geo = [_values(buf, bo, tags.get(tag), name) for tag in GEO_TAGS]
    epsg, x_ul, y_ul, pixel_size = georeference(*geo, name=name)
    if first is not None and isinstance(buf, bytes):
        parsed = _Parsed(bo, kind, (height, width), first, epsg, x_ul, y_ul, pixel_size,
                         is_point(geo[2]))  # fmt: skip
        _remember(buf, bo, (ifd, end + 4), tags, parsed)
    return Raster(pixels, epsg, x_ul, y_ul, pixel_size)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What a fast-path parse found in a file whose pixels are one contiguous run."""

    bo: str
    kind: str
    """``u2`` or ``f4``: a parse is reused only for a file asked for as the same dtype."""
    shape: tuple[int, int]
    first: int
    """Byte offset of the pixels."""
    epsg: int
    x_ul: float
    y_ul: float
    pixel_size: tuple[float, float]
    point: bool
    """PixelIsPoint: the tiepoint is a pixel's centre."""
    tiepoint: tuple[int, str] | None = None
    """Where the ModelTiepoint values are (byte offset, struct format) when no other part of
    the parse overlaps them: a file that differs from this one only there is this one moved."""


def _moved(buf: bytes, head: bytes, parsed: _Parsed) -> _Parsed | None:
    """``parsed`` for ``buf``, a file of the same size whose header bytes equal ``head`` but for
    the tiepoint's values (the next patch's band of the same size: 3 of a patch's 12 bands),
    else None. The parse is a function of those bytes and the size: only the upper-left corner
    changes, computed as :func:`~ingest.decode.raster.georeference` does. Kept for the other bands
    of its patch."""
    if parsed.tiepoint is None:
        return None
    at, fmt = parsed.tiepoint
    after = at + struct.calcsize(fmt)
    if buf[:at] != head[:at] or buf[after : len(head)] != head[after:]:
        return None
    x_ul, y_ul = upper_left(struct.unpack_from(fmt, buf, at), parsed.pixel_size, parsed.point)
    moved = replace(parsed, x_ul=x_ul, y_ul=y_ul)
    _RECENT[len(buf)] = (buf[: len(head)], moved)
    return moved


def _raster(buf: bytes, parsed: _Parsed) -> Raster:
    """The raster of ``buf``, whose header bytes equal those ``parsed`` was read from: exactly
    what :func:`_decode_fast` returns for it (a read-only view, byte-swapped if need be)."""
    dtype = _PIXEL[parsed.kind, parsed.bo]
    pixels = np.ndarray(parsed.shape, dtype, buf, parsed.first)
    if parsed.bo != _NATIVE:
        pixels = pixels.astype(dtype.newbyteorder("="))
        pixels.flags.writeable = False
    return Raster(pixels, parsed.epsg, parsed.x_ul, parsed.y_ul, parsed.pixel_size)


def _remember(
    buf: bytes, bo: str, ifd: tuple[int, int], tags: dict[int, _Entry], parsed: _Parsed
) -> None:
    """Keep ``parsed`` with every byte the parse may have looked at: the header, the IFD
    (``ifd``: its first byte and the end of its next-IFD offset) and the out-of-line values of
    all its entries (more than the parse reads; never less); and where the tiepoint's values
    are, when nothing else the parse read overlaps them."""
    size = len(buf)
    extent = ifd[1]
    point: tuple[int, int] | None = None  # the tiepoint's values: (first byte, end)
    others = [(0, 8), ifd]  # what else the parse read, which the tiepoint must not overlap
    for tag, field_type, count, raw in tags.values():
        item = _TYPE_BYTES.get(field_type)
        if item is None:
            extent = size  # an entry of unknown size: compare the whole file
            others.append((0, size))
            break
        nbytes = count * item
        if nbytes > 4:
            at = _OFFSET[bo].unpack(raw)[0]
            extent = max(extent, at + nbytes)
            if tag == _TIEPOINT:
                point = (at, at + nbytes)
            else:
                others.append((at, at + nbytes))
    entry = tags.get(_TIEPOINT)
    if (
        point is not None
        and entry is not None
        and entry[1] in _FIELDS
        and point[1] <= min(extent, size)
        and all(end <= point[0] or start >= point[1] for start, end in others)
    ):
        fmt = f"{bo}{entry[2]}{_FIELDS[entry[1]][0]}"
        parsed = replace(parsed, tiepoint=(point[0], fmt))
    if len(_RECENT) >= _RECENT_SIZES and size not in _RECENT:
        _RECENT.clear()
    _RECENT[size] = (buf[: min(extent, size)], parsed)


def _is_plain_layout(
    buf: bytes | memoryview,
    bo: str,
    layout: tuple[_Entry | None, ...],
    values: tuple[int, ...],
    name: str,
) -> bool:
    """Layout tags that differ from the real files' entries but still mean the same layout."""
    for entry, wanted, default in zip(layout, values, _LAYOUT_DEFAULTS, strict=True):
        value = _layout_value(buf, bo, entry, name)
        if value != (wanted,) and (value is not None or default != wanted):
            return False
    return True


def _is_deflate_layout(
    buf: bytes | memoryview,
    bo: str,
    layout: tuple[_Entry | None, ...],
    values: tuple[int, ...],
    tags: dict[int, _Entry],
    name: str,
) -> bool:
    """The reference maps' layout: Deflate (8 or the old 32946), with no predictor or the
    horizontal one (2), otherwise the plain layout."""
    compression = _layout_value(buf, bo, layout[0], name)
    if compression not in ((8,), (32946,)):
        return False
    rest = (None, *layout[1:])
    if not _is_plain_layout(buf, bo, rest, (1, *values[1:]), name):
        return False
    return _layout_value(buf, bo, tags.get(317), name) in (None, (1,), (2,))


def _inflate_strips(
    buf: bytes | memoryview,
    bo: str,
    shape: tuple[int, int],
    rows: int,
    offsets: Sequence[int],
    counts: Sequence[int],
    name: str,
    predictor: bool,
) -> npt.NDArray[Any]:
    """uint16 Deflate-compressed strips (zlib, as the reference maps are written), the
    horizontal predictor undone (a running sum along each row, modulo 2**16). tifffile takes
    ≈ 600 µs for a 120 × 120 map here. Each strip must inflate to exactly its rows' bytes
    (``rows`` per strip, fewer in the last), and the inflater stops one byte past them: a
    Deflate bomb ends there."""
    dtype = _PIXEL["u2", bo]
    height, width = shape
    step = min(rows, height)
    n_strips = -(-height // step)
    if len(offsets) != n_strips or len(counts) != n_strips:
        raise InputDataError(
            name, f"malformed TIFF: {len(offsets)} strips, {len(counts)} sizes, {n_strips} needed"
        )
    pieces = []
    for i, (at, n) in enumerate(zip(offsets, counts, strict=True)):
        need = min(step, height - i * step) * width * dtype.itemsize
        if at + n > len(buf):
            raise InputDataError(
                name, f"truncated TIFF: strip {i} ends at byte {at + n} of {len(buf)}"
            )
        inflater = zlib.decompressobj()
        try:
            piece = inflater.decompress(buf[at : at + n], need + 1)
        except zlib.error as exc:
            raise InputDataError(name, f"corrupt Deflate strip {i}: {exc}") from None
        if len(piece) > need:
            raise InputDataError(
                name, f"malformed TIFF: Deflate strip {i} inflates beyond its {need:,} bytes"
            )
        if not inflater.eof:
            raise InputDataError(name, f"corrupt Deflate strip {i}: incomplete or truncated stream")
        if len(piece) != need:
            raise InputDataError(
                name, f"malformed TIFF: Deflate strip {i} holds {len(piece):,} of {need:,} bytes"
            )
        pieces.append(piece)
    data = b"".join(pieces)
    pixels = np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if predictor:
        pixels = np.cumsum(pixels, axis=1, dtype=pixels.dtype)
    pixels.flags.writeable = False
    return pixels


def _values(
    buf: bytes | memoryview, bo: str, entry: _Entry | None, name: str, most: int = _MAX_VALUES
) -> tuple[int | float, ...] | None:
    """The numeric values of one IFD entry, inline or out of line; None if the tag is absent.
    More than ``most`` values is an error (they would become that many Python objects)."""
    if entry is None:
        return None
    tag, field_type, count, raw = entry
    field = _FIELDS.get(field_type)
    if field is None:
        raise _NotFast
    if count > most:
        raise InputDataError(name, f"malformed TIFF: tag {tag} holds {count:,} values")
    fmt = f"{bo}{count}{field[0]}"
    nbytes = count * field[1]
    if nbytes <= 4:
        return struct.unpack_from(fmt, raw)
    (at,) = _OFFSET[bo].unpack(raw)
    if at + nbytes > len(buf):
        raise InputDataError(
            name, f"truncated TIFF: tag {tag} ends at byte {at + nbytes} of {len(buf)}"
        )
    return struct.unpack_from(fmt, buf, at)


def _layout_value(
    buf: bytes | memoryview, bo: str, entry: _Entry | None, name: str
) -> tuple[int | float, ...] | None:
    """A layout tag's values (compression, samples, bits, format, planar configuration,
    predictor): SHORT or LONG as the specification has them, else tifffile decides."""
    if entry is not None and entry[1] not in (3, 4):
        raise _NotFast
    return _values(buf, bo, entry, name)


def _positions(
    buf: bytes | memoryview, bo: str, entry: _Entry | None, name: str, strips: int
) -> tuple[int, ...] | None:
    """StripOffsets or StripByteCounts: SHORT or LONG values (unsigned: never before the file's
    first byte), as many as the image has strips. Anything else is left to tifffile."""
    if entry is None:
        return None
    if entry[1] not in (3, 4) or entry[2] > strips:
        raise _NotFast
    values = _values(buf, bo, entry, name, strips)
    return None if values is None else tuple(int(v) for v in values)


def _scalar(bo: str, entry: _Entry | None) -> int:
    """A SHORT or LONG count-1 tag, 0 when absent or of another kind."""
    if entry is not None and entry[2] == 1:
        if entry[1] == 3:
            return int(_SHORT[bo].unpack_from(entry[3])[0])
        if entry[1] == 4:
            return int(_OFFSET[bo].unpack(entry[3])[0])
    return 0


def _read_strips(
    buf: bytes | memoryview,
    bo: str,
    shape: tuple[int, int],
    rows: int,
    offsets: Sequence[int],
    counts: Sequence[int],
    name: str,
    kind: str = "u2",
) -> tuple[npt.NDArray[Any], int | None]:
    """The pixels, and the offset of their first byte when they are one contiguous run."""
    dtype = _PIXEL[kind, bo]
    size = dtype.itemsize
    height, width = shape
    step = min(rows, height) * width * size
    total = height * width * size
    n_strips = -(-total // step)
    if len(offsets) < n_strips or len(counts) < n_strips:
        raise InputDataError(
            name, f"malformed TIFF: {len(offsets)} strips listed, {n_strips} needed"
        )
    first = offsets[0]
    # The real layout: full strips, following each other, all inside the file. Checked in a few
    # C-level comparisons; anything else gets the strip-by-strip check and its precise error.
    contiguous = offsets[:n_strips] == tuple(range(first, first + total, step))
    if not (
        contiguous
        and first + total <= len(buf)
        and (n_strips == 1 or min(counts[: n_strips - 1]) >= step)
        and counts[n_strips - 1] >= total - (n_strips - 1) * step
    ):
        _check_strips(len(buf), step, total, offsets[:n_strips], counts, name)
    if contiguous:
        # Zero-copy: a view of the input, read-only when the input is bytes.
        pixels = np.ndarray(shape, dtype, buf, first)
    else:
        flat = np.empty(total // size, dtype)
        for i in range(n_strips):
            n = min(step, total - i * step) // size
            chunk = np.frombuffer(buf, dtype, n, offsets[i])
            flat[i * step // size : i * step // size + chunk.size] = chunk
        pixels = flat.reshape(shape)
    if bo != _NATIVE:
        pixels = pixels.astype(dtype.newbyteorder("="))  # byte-swapping copy into native order
    elif contiguous and not isinstance(buf, bytes):
        # A memoryview may be over a reused or closable buffer: the pixels must not alias it.
        pixels = pixels.copy()
    if pixels.flags.writeable:
        pixels.flags.writeable = False
    return pixels, first if contiguous else None


def _check_strips(
    size: int,
    step: int,
    total: int,
    offsets: Sequence[int],
    counts: Sequence[int],
    name: str,
) -> None:
    for i, at in enumerate(offsets):
        need = min(step, total - i * step)
        if counts[i] < need:
            raise InputDataError(
                name, f"malformed TIFF: strip {i} holds {counts[i]} of {need} bytes"
            )
        if at + need > size:
            raise InputDataError(
                name, f"truncated TIFF: strip {i} ends at byte {at + need} of {size}"
            )
