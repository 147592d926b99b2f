"""Decoding one inner chunk (one sample, blosc 1) straight into its slot of an array.

c-blosc 1 makes a new zstd decompression context for every chunk it decodes, ≈ 25 µs here — more
than decoding a ``bands_60m`` chunk, ≈ 60 % of a sample's decoding time over its three chunks — so
:class:`Decoder` decodes a zstd chunk's single block with a zstd context kept per thread
(``zstandard``) and lets blosc do only the bit-unshuffle, on a stored-block frame (same values;
anything else goes to ``numcodecs.blosc.decompress`` as it is).

The chunk's bytes are untrusted (a store on shared storage): before blosc sees a frame its header
must declare exactly the destination's size and the chunk's own length, so blosc never reads past
the chunk or writes past the slot, and the zstd block is inflated to at most the slot's size. A
frame that fails that or blosc's own checks raises :class:`CorruptChunk` (a ``ValueError``), which
the readers turn into a :class:`~ingest.errors.StoreError` naming the shard (:func:`corrupt`).
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import zstandard
from numcodecs import blosc

from ..errors import StoreError

__all__ = ["CorruptChunk", "Decoder", "corrupt", "decoder"]

#: blosc 1 header (version, versionlz, flags, typesize, nbytes, blocksize, cbytes), then the
#: first block's start and, unsplit, that block's compressed size.
_HEADER = struct.Struct("<BBBBiiiii")
_ZSTD = 4  # blosc 1 compressor code (flags >> 5)
_UNSPLIT = 0x10  # flags: each block one stream (always so for zstd)
_MEMCPYED = 0x02  # flags: stored uncompressed
#: The blosc 1 header proper (the first 16 bytes).
_HEAD = struct.Struct("<BBBBiii")


class CorruptChunk(ValueError):
    """A chunk that is not a blosc 1 frame of the destination's size."""


class Decoder:
    """Decodes blosc 1 chunks into arrays, one thread's (see the module docstring).

    A zstd chunk of one unsplit block, ``header | start | size | zstd frame``, is decoded with
    this thread's zstd context into a stored-block frame ``header' | start | nbytes | shuffled
    bytes``, which blosc then copies and bit- (or byte-) unshuffles into ``dest``, as it does
    for a block that did not compress. Any other chunk goes to ``numcodecs.blosc.decompress``
    unchanged once its header is checked."""

    def __init__(self) -> None:
        self.zstd = zstandard.ZstdDecompressor()
        self.frame = bytearray(0)

    def decode(self, chunk: bytes | memoryview, dest: np.ndarray) -> None:
        """Decode ``chunk`` into ``dest`` (C-contiguous); :class:`CorruptChunk` (or blosc's
        ``RuntimeError``) when it is not a valid frame of exactly ``dest.nbytes`` bytes."""
        n = dest.nbytes
        if len(chunk) > 24:
            _, _, flags, _, nbytes, blocksize, cbytes, start, size = _HEADER.unpack_from(chunk)
            if (
                flags >> 5 == _ZSTD
                and flags & (_UNSPLIT | _MEMCPYED) == _UNSPLIT
                and nbytes == blocksize == n
                and start == 20
                and cbytes == len(chunk) == 24 + size
                and 0 < size < n
            ):
                try:
                    block = self.zstd.decompress(memoryview(chunk)[24:], max_output_size=n)
                except zstandard.ZstdError:
                    block = b""
                if len(block) == n:
                    if len(self.frame) < 24 + n:
                        self.frame = bytearray(24 + n)
                    frame = memoryview(self.frame)[: 24 + n]
                    frame[:16] = memoryview(chunk)[:16]
                    struct.pack_into("<iii", frame, 12, 24 + n, 20, n)
                    frame[24:] = block
                    blosc.decompress(frame, dest)
                    return
        _check(chunk, n)
        blosc.decompress(chunk, dest)


def _check(chunk: bytes | memoryview, n: int) -> None:
    """The header checks blosc 1 does not make itself (it trusts ``cbytes`` and ``blocksize``)."""
    if len(chunk) < _HEAD.size:
        raise CorruptChunk(f"{len(chunk)} bytes, shorter than a blosc header")
    _, _, flags, typesize, nbytes, blocksize, cbytes = _HEAD.unpack_from(chunk)
    if nbytes != n or cbytes != len(chunk):
        raise CorruptChunk(
            f"blosc frame of {nbytes} bytes in {cbytes}, expected {n} in {len(chunk)}"
        )
    if typesize < 1 or not 0 < blocksize <= max(n, 1):
        raise CorruptChunk(f"blosc header (typesize {typesize}, blocksize {blocksize}) is not "
                           "one blosc writes")  # fmt: skip
    if flags & _MEMCPYED and cbytes != n + _HEAD.size:
        raise CorruptChunk(f"stored blosc frame of {cbytes} bytes for {n}")


def corrupt(where: str, error: Exception) -> StoreError:
    """The store error for a chunk of shard ``where`` that did not decode."""
    return StoreError(f"{where}: corrupt chunk ({error})")


_THREAD = threading.local()


def decoder() -> Decoder:
    """This thread's decoder (its zstd context and frame buffer are reused)."""
    found: Decoder | None = getattr(_THREAD, "decoder", None)
    if found is None:
        found = _THREAD.decoder = Decoder()
    return found
