"""A read of many samples, planned and (on object storage) fetched, then decoded run by run.

:meth:`ingest.read.samples.SampleStore.prepare` plans which byte ranges of which shards hold the
samples' chunks (each shard index checked by :mod:`ingest.read.shards`); a :class:`Prepared`
then decodes any run of those samples straight into arrays the caller owns (an epoch's batch),
each chunk with :mod:`ingest.read.decoding`. Locally each chunk is read (``os.preadv``) into a
small per-thread buffer right before it is decoded, from the shard files the read holds open
(:meth:`ingest.read.files.LocalFiles.advise`, at most ``MAX_HELD`` of them; a chunk of any other
shard is read on its own) until :meth:`Prepared.close`; on object storage the ranges were fetched
when it was made. :class:`Local` is a store's per-process state the reads share.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import zarr

from ..errors import StoreError
from .decoding import corrupt, decoder
from .files import Files, LocalFiles, short
from .shards import Take

__all__ = ["Local", "Plan", "Prepared"]


@dataclass
class Local:
    """Per-process state: open files, cached shard indexes, tables, the decode pool."""

    generation: int
    """The fork generation of :mod:`ingest.read.samples` when made: a forked child must not use
    its parent's files."""
    files: Files
    indexes: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    """(S, 2) int64 ``(offset, nbytes)`` per inner chunk of a shard; offset -1: absent chunk."""
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    group: zarr.Group | None = None
    pool: ThreadPoolExecutor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    buffers: threading.local = field(default_factory=threading.local)
    """Each thread's read buffer (local stores), reused."""

    def decode_pool(self, threads: int) -> ThreadPoolExecutor:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ingest-decode")
        return self.pool

    def buffer(self, size: int) -> memoryview:
        """This thread's read buffer, at least ``size`` bytes (replaced, never resized, when it
        is too small: nothing else refers to it by then)."""
        buffer: memoryview | None = getattr(self.buffers, "view", None)
        if buffer is None or len(buffer) < size:
            buffer = self.buffers.view = memoryview(bytearray(max(size, 1 << 17)))
        return buffer


@dataclass
class Plan:
    """How to produce one array of a :class:`Prepared`: from fetched ranges, or zarr's values."""

    take: Take
    where: np.ndarray | None = None
    values: np.ndarray | None = None


class Prepared:
    """The planned (locally) or fetched (remotely) chunks of some samples; :meth:`decode_into`
    decodes them, :meth:`close` ends it (locally it keeps its shard files open until then)."""

    def __init__(
        self,
        threads: int,
        count: int,
        plans: list[Plan],
        buffers: list[memoryview] | None,
        local: Local,
        fds: dict[str, int] | None = None,
        wheres: list[str] | None = None,
    ) -> None:
        self._threads = threads
        self._count = count
        self._plans = plans
        self._buffers = buffers
        self._local = local
        self._fds = fds
        """Locally: the open file of each shard key involved (held open until :meth:`close`)."""
        self._wheres = wheres or []
        """Remotely: the shard of each fetched range, for messages."""

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Let the shard files go (locally); idempotent."""
        fds, self._fds = self._fds, None
        if fds:
            files = self._local.files
            assert isinstance(files, LocalFiles)
            for key in fds:
                files.release(key)

    def empty(self, count: int) -> dict[str, np.ndarray]:
        """Uninitialised output arrays for ``count`` samples."""
        return {
            p.take.array.name: np.empty((count, *p.take.shape), dtype=p.take.array.dtype)
            for p in self._plans
        }

    def decode_into(self, start: int, stop: int, out: dict[str, np.ndarray], at: int) -> None:
        """Decode rows ``[start, stop)`` into ``out[name][at : at + stop - start]``, each sample
        straight into its slot; split with a second decode thread (blosc releases the GIL) when
        the store has one and there is enough work."""
        if stop - start >= 8 and self._threads > 1:
            middle = (start + stop) // 2
            other = self._local.decode_pool(self._threads).submit(
                self._decode, middle, stop, out, at + middle - start
            )
            try:
                self._decode(start, middle, out, at)
            finally:
                other.result()
        else:
            self._decode(start, stop, out, at)

    def _decode(self, start: int, stop: int, out: dict[str, np.ndarray], at: int) -> None:
        local = self._local
        decode = decoder().decode
        files = local.files
        for plan in self._plans:
            take, target = plan.take, out[plan.take.array.name]
            if plan.values is not None:
                target[at : at + stop - start] = plan.values[start:stop]
                continue
            assert plan.where is not None
            rows = None if take.rows is None else list(take.rows)
            scratch = None if rows is None else np.empty(take.array.sample_shape, target.dtype)
            where = plan.where[start:stop]
            keys = take.array.keys
            if self._fds is not None:  # local: read each chunk into this thread's buffer
                assert isinstance(files, LocalFiles)
                fds = self._fds
                view = local.buffer(int(where[:, 2].max(initial=0)))
                reads = 0
                for k, (shard, offset, nbytes) in enumerate(where.tolist(), at):
                    if shard < 0:
                        target[k] = take.array.fill
                        continue
                    chunk = view[:nbytes]
                    key = keys[shard]
                    fd = fds.get(key)
                    if fd is not None:
                        got = os.preadv(fd, [chunk], offset)
                    else:  # beyond the files a window holds: this chunk's alone
                        got = self._read_alone(files, key, chunk, offset)
                    if got != nbytes:
                        raise short(files.where(key))
                    reads += 1
                    try:
                        if scratch is None:
                            decode(chunk, target[k])
                        else:
                            decode(chunk, scratch)
                            target[k] = scratch[rows]
                    except (ValueError, RuntimeError) as exc:  # CorruptChunk, blosc's
                        raise corrupt(files.where(key), exc) from None
                files.count(reads)
                continue
            buffers = self._buffers
            assert buffers is not None
            for k, (number, offset, nbytes) in enumerate(where.tolist(), at):
                if number < 0:
                    target[k] = take.array.fill
                    continue
                try:
                    if scratch is None:
                        decode(buffers[number][offset : offset + nbytes], target[k])
                    else:
                        decode(buffers[number][offset : offset + nbytes], scratch)
                        target[k] = scratch[rows]
                except (ValueError, RuntimeError) as exc:  # CorruptChunk, blosc's
                    raise corrupt(self._wheres[number], exc) from None

    @staticmethod
    def _read_alone(files: LocalFiles, key: str, chunk: memoryview, offset: int) -> int:
        fd = files.acquire(key)
        if fd is None:
            raise StoreError(f"{files.where(key)}: shard vanished while reading")
        try:
            return os.preadv(fd, [chunk], offset)
        finally:
            files.release(key)
