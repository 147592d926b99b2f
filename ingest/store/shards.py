"""Whole-shard encoding of the per-pixel arrays: one batch of samples → one shard object.

Hand-written for speed, with zarr-python as the reference. zarr-python's sharding codec encodes
each inner chunk through its asyncio codec pipeline; measured here it spends about 1.2 ms of
CPU per patch in that machinery on top of 0.3 ms of actual blosc work, which made writing the
bottleneck of the ingest. The shard format of the Zarr v3 sharding spec is small: the encoded
inner chunks back to back, then an index of (offset, nbytes) uint64 pairs (2**64 - 1 for an
absent chunk) followed by its CRC32C. :class:`ShardEncoder` writes exactly that for the one
layout the store uses (inner chunk = one sample, bytes + blosc, index at the end, crc32c), of
any rank and of the store's pixel dtypes (uint16 bands and reference maps, float32 S1), and
declines any other layout or dtype, for which zarr-python writes the shard itself. The tests hold
the output byte for byte to zarr-python's for full and partial shards of each. In a local store
a shard file is written by :func:`write_flushed` (on the disk before its journal entry, and out
of the page cache); elsewhere (object storage) by the store.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

_ABSENT = np.iinfo(np.uint64).max
#: The pixel dtypes the encoder writes (little-endian, as the bytes codec stores them).
DTYPES = (np.dtype("<u2"), np.dtype("<f4"))


@dataclass(frozen=True)
class ShardEncoder:
    """Encodes a (k, *inner) block, k <= shard length, into the bytes of one shard object."""

    length: int
    """Samples per shard."""
    blosc: Blosc
    dtype: np.dtype[Any] = DTYPES[0]
    """The array's dtype, little-endian."""

    @classmethod
    def for_array(cls, array: zarr.Array[Any]) -> ShardEncoder | None:
        """The encoder for ``array``'s layout, or None when it is not the store's layout."""
        codecs = array.metadata.codecs  # type: ignore[union-attr]
        if array.shards is None or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        sharding = codecs[0]
        inner = sharding.codecs
        if (
            sharding.chunk_shape != (1, *array.shape[1:])
            or sharding.index_location.value != "end"
            or len(inner) != 2
            or not isinstance(inner[0], BytesCodec)
            or not isinstance(inner[1], BloscCodec)
            or [type(c) for c in sharding.index_codecs] != [BytesCodec, Crc32cCodec]
            or array.dtype not in DTYPES
            or any(_endian(c) not in (None, "little") for c in (inner[0], sharding.index_codecs[0]))
        ):
            return None
        blosc = inner[1]
        codec = Blosc(
            cname=blosc.cname.value,
            clevel=blosc.clevel,
            shuffle={"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
                     "bitshuffle": Blosc.BITSHUFFLE}[blosc.shuffle.value],
            blocksize=blosc.blocksize,
            typesize=blosc.typesize,
        )  # fmt: skip
        return cls(array.shards[0], codec, np.dtype(array.dtype))

    def encode(self, block: np.ndarray) -> bytes:
        return bytes(self.encode_into(block))

    def encode_into(self, block: np.ndarray) -> memoryview:
        """The shard's bytes, in this thread's scratch buffer (valid until its next call).

        Reusing one buffer matters: a fresh ~10 MB result per shard is fresh memory from the
        kernel, one page fault per 4 KiB (measured: a third of the ingest's page faults).
        """
        if block.shape[0] > self.length:
            raise ValueError(f"{block.shape[0]} samples do not fit a shard of {self.length}")
        block = np.ascontiguousarray(block, dtype=self.dtype)
        return self.assemble([self.blosc.encode(block[i]) for i in range(block.shape[0])])

    def encode_chunk(self, sample: np.ndarray) -> bytes:
        """One sample's inner chunk, exactly as :meth:`encode_into` stores it in a shard."""
        encoded: bytes = self.blosc.encode(np.ascontiguousarray(sample, dtype=self.dtype))
        return encoded

    def assemble(self, parts: list[bytes]) -> memoryview:
        """A shard from its samples' encoded inner chunks (:meth:`encode_chunk`), in this thread's
        scratch buffer: the chunks back to back, then the index and its CRC32C."""
        if len(parts) > self.length:
            raise ValueError(f"{len(parts)} samples do not fit a shard of {self.length}")
        index = np.full((self.length, 2), _ABSENT, dtype="<u8")
        offset = 0
        for i, encoded in enumerate(parts):
            index[i] = (offset, len(encoded))
            offset += len(encoded)
        table = index.tobytes()
        checksum = np.array([google_crc32c.value(table)], dtype="<u4").tobytes()
        out = _scratch(offset + len(table) + len(checksum))
        position = 0
        for part in (*parts, table, checksum):
            out[position : position + len(part)] = part
            position += len(part)
        return out[:position]


_LOCAL = threading.local()


def _scratch(size: int) -> memoryview:
    """This thread's reusable output buffer, grown to at least ``size`` bytes."""
    buffer: bytearray | None = getattr(_LOCAL, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _LOCAL.buffer = bytearray(size + size // 4)
    return memoryview(buffer)


def _flush(descriptor: int) -> None:
    fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has fsync only
    fdatasync(descriptor)


def _endian(codec: object) -> str | None:
    endian = getattr(codec, "endian", None)
    return None if endian is None else str(getattr(endian, "value", endian))


def write_block(array: zarr.Array[Any], start: int, block: np.ndarray) -> None:
    """Write ``block`` as the whole shard that starts at sample ``start``."""
    encoder = ShardEncoder.for_array(array)
    if encoder is None:
        array[start : start + block.shape[0]] = block
        return
    _put(array, encoder, start, encoder.encode_into(block))


def write_chunks(array: zarr.Array[Any], start: int, parts: list[bytes]) -> None:
    """Write the shard that starts at sample ``start`` from its samples' encoded inner chunks
    (:meth:`ShardEncoder.encode_chunk` with this array's encoder)."""
    encoder = ShardEncoder.for_array(array)
    if encoder is None:  # pragma: no cover - staged chunks exist only for the store's layout
        raise ValueError(f"{array.path}: not the store's shard layout")
    _put(array, encoder, start, encoder.assemble(parts))


def _put(array: zarr.Array[Any], encoder: ShardEncoder, start: int, data: memoryview) -> None:
    key = array.metadata.encode_chunk_key((start // encoder.length, *([0] * (array.ndim - 1))))
    path = f"{array.path}/{key}" if array.path else key
    if isinstance(array.store, LocalStore):
        write_flushed(Path(array.store.root) / path, data)
        return
    encoded = np.frombuffer(data, dtype=np.uint8)
    sync(array.store.set(path, default_buffer_prototype().buffer.from_array_like(encoded)))


def write_flushed(target: Path, data: memoryview | bytes) -> None:
    """Write ``data`` as the file ``target`` the way zarr's local store does (a temporary file
    beside it, renamed over it), but on the disk before the rename and then dropped from the page
    cache.

    On the disk first: a shard's journal entry, written after its files, then never names data
    still in memory only. Dropped: an ingest writes each byte once and does not read it back, so
    its pages are free again at once for the next shard rather than filling the cache (and
    evicting what the machine had there). Measured on this machine (a VM, where memory the kernel
    has not used lately costs ~2.5 s per GB to touch again): ``dd`` of 2 GiB took 4.3 s of
    system time, 0.5 s flushed and dropped every 64 MB; an S2-only ingest of 10,000 reBEN
    patches 3.7 -> 1.8 s of system time, with S1 and maps 7.5 -> 3.1 s (18.7 -> 16.3 s wall).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(descriptor, view) :]
        _flush(descriptor)
        if hasattr(os, "posix_fadvise"):  # Linux; elsewhere the cache keeps the pages
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    except BaseException:
        os.close(descriptor)
        partial.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    os.replace(partial, target)
