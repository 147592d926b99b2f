"""A small GeoTIFF writer for crafted files: any strip layout, field types and offsets, so tests
(and the fuzz suite) can write what the decoder must refuse. Valid output reads in tifffile."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# TIFF field type -> struct code.
CODES = {1: "B", 2: "s", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 11: "f", 12: "d"}
SHORT, LONG, SLONG, DOUBLE, FLOAT = 3, 4, 9, 12, 11


def geokeys(epsg: int) -> tuple[int, ...]:
    return (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)


@dataclass
class Tiff:
    """What to write; :meth:`encode` lays it out (header, IFD, out-of-line values, strips)."""

    pixels: np.ndarray
    bo: str = "<"
    rows: int | None = None
    """Rows per strip (None: one strip)."""
    deflate: bool = False
    predictor: int = 1
    epsg: int = 32633
    x_ul: float = 500_000.0
    y_ul: float = 5_000_000.0
    gsd: float = 10.0
    offsets_type: int = LONG
    edit_offsets: Callable[[list[int]], list[int]] | None = None
    edit_counts: Callable[[list[int]], list[int]] | None = None
    strips: list[bytes] | None = None
    """The strip bytes as stored (default: the pixels, compressed if ``deflate``)."""
    extra: dict[int, tuple[int, Sequence[int | float]]] = field(default_factory=dict)
    """Tags added or replaced: tag -> (field type, values)."""
    height: int | None = None
    width: int | None = None
    """Declared size (default: the pixels' shape)."""

    def stored_strips(self) -> list[bytes]:
        if self.strips is not None:
            return self.strips
        height = self.pixels.shape[0]
        rows = self.rows or height
        dtype = self.pixels.dtype.newbyteorder(self.bo)
        out = []
        for top in range(0, height, rows):
            block = self.pixels[top : top + rows]
            if self.deflate and self.predictor == 2:
                block = np.diff(block, axis=1, prepend=np.zeros((block.shape[0], 1), block.dtype))
            raw = block.astype(dtype).tobytes()
            out.append(zlib.compress(raw) if self.deflate else raw)
        return out

    def encode(self) -> bytes:
        strips = self.stored_strips()
        height = self.height if self.height is not None else self.pixels.shape[0]
        width = self.width if self.width is not None else self.pixels.shape[1]
        n_offsets = len(self.edit_offsets([0] * len(strips)) if self.edit_offsets else strips)
        n_counts = len(self.edit_counts([0] * len(strips)) if self.edit_counts else strips)
        kind = self.pixels.dtype.kind
        bits = self.pixels.dtype.itemsize * 8
        tags: dict[int, tuple[int, Sequence[int | float]]] = {
            256: (LONG, [width]),
            257: (LONG, [height]),
            258: (SHORT, [bits]),
            259: (SHORT, [8 if self.deflate else 1]),
            262: (SHORT, [1]),
            273: (self.offsets_type, [0] * n_offsets),
            277: (SHORT, [1]),
            278: (LONG, [self.rows or height]),
            279: (LONG, [0] * n_counts),
            284: (SHORT, [1]),
            339: (SHORT, [3 if kind == "f" else 1]),
            33550: (DOUBLE, [self.gsd, self.gsd, 0.0]),
            33922: (DOUBLE, [0.0, 0.0, 0.0, self.x_ul, self.y_ul, 0.0]),
            34735: (SHORT, list(geokeys(self.epsg))),
        }
        if self.deflate:
            tags[317] = (SHORT, [self.predictor])
        tags.update(self.extra)
        order = sorted(tags)
        ifd_end = 8 + 2 + 12 * len(order) + 4
        # Out-of-line values first, then the strips.
        blobs: dict[int, bytes] = {}
        for tag in order:
            ftype, values = tags[tag]
            blobs[tag] = struct.pack(f"{self.bo}{len(values)}{CODES[ftype]}", *values)
        at = ifd_end
        places: dict[int, int] = {}
        for tag in order:
            if len(blobs[tag]) > 4:
                places[tag] = at
                at += len(blobs[tag]) + len(blobs[tag]) % 2
        offsets = []
        for strip in strips:
            offsets.append(at)
            at += len(strip)
        counts = [len(s) for s in strips]
        if self.edit_offsets is not None:
            offsets = self.edit_offsets(offsets)
        if self.edit_counts is not None:
            counts = self.edit_counts(counts)
        if 273 not in self.extra:
            ftype = tags[273][0]
            blobs[273] = struct.pack(f"{self.bo}{len(offsets)}{CODES[ftype]}", *offsets)
        if 279 not in self.extra:
            blobs[279] = struct.pack(f"{self.bo}{len(counts)}I", *counts)
        head = (b"II*\0" if self.bo == "<" else b"MM\0*") + struct.pack(f"{self.bo}I", 8)
        ifd = [struct.pack(f"{self.bo}H", len(order))]
        for tag in order:
            ftype, values = tags[tag]
            count = len(blobs[tag]) // struct.calcsize(CODES[ftype])
            value = struct.pack(f"{self.bo}I", places[tag]) if tag in places else blobs[tag]
            ifd.append(struct.pack(f"{self.bo}HHI", tag, ftype, count) + value.ljust(4, b"\0"))
        ifd.append(bytes(4))
        body = bytearray(b"".join([head, *ifd]))
        for tag in order:
            if tag in places:
                body[len(body) : places[tag]] = bytes(places[tag] - len(body))
                body += blobs[tag]
        body += bytes(max(0, (offsets_start := ifd_end + _blob_room(blobs, places)) - len(body)))
        assert len(body) == offsets_start
        return bytes(body) + b"".join(strips)


def _blob_room(blobs: dict[int, bytes], places: dict[int, int]) -> int:
    return sum(len(blobs[t]) + len(blobs[t]) % 2 for t in places)


def band(seed: int = 0, shape: tuple[int, int] = (120, 120), dtype: str = "u2") -> np.ndarray:
    """Pixels with structure (a gradient and noise), so deflate and predictors matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    values = (y * 37 + x * 11) % 3000 + rng.integers(0, 50, shape)
    if dtype == "f4":
        return (values.astype(np.float32) / -100.0).astype(np.float32)
    return values.astype(np.uint16)
