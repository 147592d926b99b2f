"""The shard layout the readers read, and the one rule for its shard indexes.

:class:`ingest.store.shards.ShardEncoder` writes exactly one layout of the Zarr v3 sharding spec:
inner chunk = one sample, bytes + blosc, the index at the END of the shard as (offset, nbytes)
uint64 pairs followed by its CRC32C, and (2**64 - 1, 2**64 - 1) for an absent chunk.
:class:`ShardLayout` recognises that layout in an array's zarr metadata (any fixed-size numeric
dtype, so that zarr-python's own writing of it qualifies too), and :meth:`ShardLayout.entries`
is the rule every reader (:mod:`ingest.read.samples`, the epochs, ``open_store``'s
:class:`~ingest.read.reading.ShardedBands`) applies to an index before trusting it:

- the index is exactly ``16 * S + 4`` bytes and its CRC32C matches;
- a pair (2**64 - 1, 2**64 - 1) is an absent chunk (it reads as the fill value), and only that;
- every other entry points at 1 to ``raw + 16`` bytes (blosc's largest frame for one sample) lying
  wholly within the shard's data, i.e. before the index (when the shard's size is known; on object
  storage, where only the index is fetched, a range beyond the object is caught when it comes
  back short).

Anything else is a :class:`~ingest.errors.StoreError` naming the shard. A shard object that does
not exist reads as the fill value only while the store is unfinished (:func:`missing_shard`): in a
store marked complete every shard was written (``ingest verify`` checks it), so a missing one is a
damaged store (an interrupted copy), never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

from ..errors import StoreError
from ..store.shards import _endian

__all__ = ["SampleArray", "ShardLayout", "Take", "missing_shard", "shard_length"]

#: Both halves of an absent chunk's index entry.
ABSENT = np.iinfo(np.uint64).max
#: The largest byte position an entry may reach when the shard's size is unknown (no int64
#: overflow anywhere downstream).
_FAR = (1 << 63) - 1


@dataclass(frozen=True)
class ShardLayout:
    """One per-pixel array's shards: ``length`` samples each, ``raw`` bytes per sample."""

    length: int
    raw: int

    @classmethod
    def of(cls, array: zarr.Array[Any]) -> ShardLayout | None:
        """The layout of ``array`` when it is stored the way ``ShardEncoder`` writes (the same
        checks as ``ShardEncoder.for_array``, but any fixed-size numeric dtype, so that
        ``bands_s1`` (float32) and ``reference_map`` qualify); None for any other layout."""
        codecs = array.metadata.codecs  # type: ignore[union-attr]
        if array.shards is None or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        sharding = codecs[0]
        inner = sharding.codecs
        dtype = np.dtype(array.dtype)
        if (
            sharding.chunk_shape != (1, *array.shape[1:])
            or tuple(array.shards[1:]) != tuple(array.shape[1:])
            or sharding.index_location.value != "end"
            or len(inner) != 2
            or not isinstance(inner[0], BytesCodec)
            or not isinstance(inner[1], BloscCodec)
            or [type(c) for c in sharding.index_codecs] != [BytesCodec, Crc32cCodec]
            or dtype.kind not in "biuf"
            or (dtype.itemsize > 1 and _endian(inner[0]) not in (None, "little"))
            or _endian(sharding.index_codecs[0]) not in (None, "little")
            or int(array.shards[0]) < 1
        ):
            return None
        raw = dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        return cls(int(array.shards[0]), raw)

    @property
    def index_bytes(self) -> int:
        """Size of the index at the end of each shard, its CRC32C included."""
        return 16 * self.length + 4

    @property
    def max_chunk(self) -> int:
        """The largest encoded inner chunk: one sample's bytes plus blosc's header overhead."""
        return self.raw + int(blosc.MAX_OVERHEAD)

    def absent(self) -> np.ndarray:
        """The entries of a shard that was not written: every chunk absent."""
        entries = np.zeros((self.length, 2), dtype=np.int64)
        entries[:, 0] = -1
        return entries

    def entries(self, index: bytes | memoryview, size: int | None, where: str) -> np.ndarray:
        """The checked ``(S, 2)`` int64 ``(offset, nbytes)`` table of a shard whose last
        ``index_bytes`` bytes are ``index`` and whose whole size is ``size`` (None: not known);
        offset -1 for an absent chunk. :class:`StoreError` naming ``where`` (the shard) for
        anything but the layout's index (see the module docstring)."""
        if len(index) != self.index_bytes or (size is not None and size < self.index_bytes):
            raise StoreError(f"{where}: shard is shorter than its index ({self.index_bytes} bytes)")
        table = memoryview(index)[:-4]
        if google_crc32c.value(bytes(table)) != int.from_bytes(index[-4:], "little"):
            raise StoreError(f"{where}: shard index checksum mismatch (corrupt shard)")
        pairs = np.frombuffer(table, dtype="<u8").reshape(self.length, 2)
        offsets, sizes = pairs[:, 0], pairs[:, 1]
        absent = (offsets == ABSENT) & (sizes == ABSENT)
        end = np.uint64(_FAR if size is None else size - self.index_bytes)
        with np.errstate(over="ignore"):  # masked below: only entries with offset <= end count
            bad = ~absent & (
                (sizes == 0)
                | (sizes > np.uint64(self.max_chunk))
                | (offsets > end)
                | (sizes > end - offsets)
            )
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise StoreError(
                f"{where}: corrupt shard index (entry {k}: offset {int(offsets[k])}, "
                f"{int(sizes[k])} bytes; chunks hold 1 to {self.max_chunk} bytes within "
                f"{'the shard' if size is None else f'the shard of {size} bytes'})"
            )
        out = pairs.astype(np.int64)
        out[absent] = -1
        return out


def missing_shard(layout: ShardLayout, where: str, complete: bool) -> np.ndarray:
    """The entries of a shard object that does not exist: every chunk absent while the store is
    unfinished (not written yet), a :class:`StoreError` once it is marked complete."""
    if complete:
        raise StoreError(f"{where}: shard missing from a store marked complete (damaged or "
                         "partial copy; `ingest verify` counts the missing shards)")  # fmt: skip
    return layout.absent()


def shard_length(array: zarr.Array[Any]) -> int | None:
    """Samples per shard when ``array`` is in the layout (:meth:`ShardLayout.of`), else None."""
    layout = ShardLayout.of(array)
    return None if layout is None else layout.length


@dataclass(frozen=True)
class SampleArray:
    """What the reader knows of one per-pixel array, from its zarr metadata."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    dims: tuple[str, ...]
    fill: Any
    length: int | None
    """Samples per shard in the fast layout, None when zarr-python reads the array."""
    keys: tuple[str, ...]
    """The shard objects' keys relative to the store root, by shard number."""
    bands: tuple[str, ...] | None
    """Names along the second dimension when it is a band dimension with a coordinate."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @cached_property
    def layout(self) -> ShardLayout:
        """The shard layout (only for an array read the fast way: ``length`` not None)."""
        assert self.length is not None
        raw = np.dtype(self.dtype).itemsize * int(np.prod(self.sample_shape, dtype=np.int64))
        return ShardLayout(self.length, raw)


@dataclass(frozen=True)
class Take:
    """One array of a read: which array, and which rows of its band dimension (None: all)."""

    array: SampleArray
    rows: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        inner = self.array.sample_shape
        return inner if self.rows is None else (len(self.rows), *inner[1:])
