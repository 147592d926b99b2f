"""Shard writers: where batches of exactly one shard are compressed and written.

One reader owns the archive stream; :class:`ShardCutter` numbers its samples, has each patch
decoded straight into a slot of a batch buffer, skips shards a resumed run already has, and hands
full batches to a writer, which writes each as one whole shard of each band array (two writers
never touch the same shard). :class:`InlineWriter` writes in the calling process;
:class:`PoolWriter` writes in worker processes. Its batch buffers live in shared memory and are
reused: measured on 2 cores, pickling 41 MB batches through a pipe cost the reader a fifth of its
time, and fresh buffers cost a page fault per 4 KiB touched. At most ``workers + SPARE_BUFFERS``
batches are in flight, which bounds memory to that many buffers (41 MB each at 256 samples).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from multiprocessing.shared_memory import SharedMemory
from typing import Protocol

import numpy as np

from ..errors import StoreError
from ..nomenclature import BAND_GROUPS
from ..processes import SHARED_MEMORY, held_sigint, init_child, shared_memory_free
from ..processes import WORKING as _WRITING
from ..units import human_bytes
from . import zarrstore as store
from .buffers import SPARE_BUFFERS, Buffers, Written, shapes
from .location import StoreLocation
from .staging import Staged, Staging


class ShardWriter(Protocol):
    """Hands out batch buffers and writes them; ``close`` waits for all, raising the first error."""

    def buffers(self) -> Buffers:
        """A free batch buffer (waits for one when all are in flight)."""
        ...

    def submit(
        self,
        buffers: Buffers,
        start: int,
        record: store.ShardRecord,
        staged: Staged,
        *,
        journal: bool = True,
    ) -> Written:
        """Write the first ``len(record.patch_ids)`` samples of ``buffers`` at sample ``start``,
        and the partner arrays' shards from their ``staged`` chunks; the journal entry last,
        unless ``journal`` is False (the partner arrays follow with :meth:`submit_partners`)."""
        ...

    def submit_partners(self, start: int, record: store.ShardRecord, staged: Staged) -> Written:
        """Write a shard's partner arrays from their ``staged`` chunks, then its journal entry
        (its S2 arrays must be written already)."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Stop after an error or interruption without waiting for queued batches."""
        ...


class InlineWriter:
    """Writes each batch immediately in this process (``--workers 0``)."""

    def __init__(self, path: StoreLocation, length: int) -> None:
        self._path = path
        self._buffers = {name: np.empty(shape, np.uint16) for name, shape in shapes(length).items()}

    def buffers(self) -> Buffers:
        return self._buffers

    def submit(
        self,
        buffers: Buffers,
        start: int,
        record: store.ShardRecord,
        staged: Staged,
        *,
        journal: bool = True,
    ) -> Written:
        count = len(record.patch_ids)
        bands = {k: v[:count] for k, v in buffers.items()}
        if journal:  # (the keyword only when needed: tests stand in for write_shard)
            return _finished(store.write_shard(self._path, start, bands, record, staged))
        return _finished(store.write_shard(self._path, start, bands, record, staged,
                                           journal=False))  # fmt: skip

    def submit_partners(self, start: int, record: store.ShardRecord, staged: Staged) -> Written:
        return _finished(store.write_shard(self._path, start, {}, record, staged))

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


class PoolWriter:
    """Writes batches in ``workers`` processes from shared-memory buffers."""

    def __init__(
        self,
        path: StoreLocation,
        length: int,
        workers: int,
        pool: ProcessPoolExecutor | None = None,
    ) -> None:
        """``pool``: the ``workers`` processes started ahead (:func:`start_pool`), else new ones."""
        self._path = path
        self._shapes = shapes(length)
        size = sum(int(np.prod(s)) * 2 for s in self._shapes.values())
        need, free = size * (workers + SPARE_BUFFERS), shared_memory_free()
        if free is not None and free < need:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            raise StoreError(
                f"{SHARED_MEMORY}: the writers' batch buffers need {human_bytes(need)} of shared "
                f"memory but it has {human_bytes(free)} free: give it more (a container: docker "
                "run --shm-size=1g), or write with fewer --workers or a smaller --shard-size, or "
                "in the run's own process (--workers 0)"
            )
        self._pool = pool if pool is not None else _new_pool(workers)
        self._memory = [
            SharedMemory(create=True, size=size) for _ in range(workers + SPARE_BUFFERS)
        ]
        self._free: deque[SharedMemory] = deque(self._memory)
        self._in_flight: deque[tuple[Future[int], SharedMemory]] = deque()
        self._taken: dict[int, SharedMemory] = {}
        self._partner_parts: deque[Future[int]] = deque()

    def buffers(self) -> Buffers:
        if not self._free:
            future, memory = self._in_flight.popleft()
            self._free.append(memory)
            future.result()
        memory = self._free.popleft()
        views = _views(_buffer(memory), self._shapes)
        self._taken[id(views[BAND_GROUPS[0].array_name])] = memory
        return views

    def submit(
        self,
        buffers: Buffers,
        start: int,
        record: store.ShardRecord,
        staged: Staged,
        *,
        journal: bool = True,
    ) -> Written:
        memory = self._taken.pop(id(buffers[BAND_GROUPS[0].array_name]))
        with held_sigint():  # a worker may be spawned here: it starts with Ctrl-C held back
            future = self._pool.submit(_write_from_shared, self._path, memory.name, self._shapes,
                                       start, record, staged, journal)  # fmt: skip
        self._in_flight.append((future, memory))
        return future

    def submit_partners(self, start: int, record: store.ShardRecord, staged: Staged) -> Written:
        with held_sigint():
            future = self._pool.submit(_write_partners, self._path, start, record, staged)
        self._partner_parts.append(future)
        while self._partner_parts and self._partner_parts[0].done():
            self._partner_parts.popleft().result()
        return future

    def close(self) -> None:
        try:
            while self._in_flight:
                future, memory = self._in_flight.popleft()
                self._free.append(memory)
                future.result()
            while self._partner_parts:
                self._partner_parts.popleft().result()
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Stop without waiting for queued batches (the store stays resumable)."""
        for future, _ in self._in_flight:
            future.cancel()
        for future in self._partner_parts:
            future.cancel()
        self._shutdown()

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for memory in self._memory:
            memory.close()
            memory.unlink()
        self._memory.clear()


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent already runs zarr's event-loop thread, and forking a process
    # with threads can deadlock the child.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=init_child)


def start_pool(workers: int) -> ProcessPoolExecutor:
    """A :class:`PoolWriter`'s ``workers`` processes, started now rather than at its first shard.

    Each is a Python interpreter importing the package (~0.6 s of CPU). A run starts them before
    it reads its labels, which keeps one core busy while the other waits; started with the first
    shards, they took CPU from the S2 reader instead (10,000 reBEN patches, S2 only, 2 cores).
    """
    pool = _new_pool(workers)
    with held_sigint():  # as in PoolWriter.submit: the processes start here
        for _ in range(workers):  # each task finding no idle process starts one
            pool.submit(_ready)
    return pool


def _ready() -> None:
    """The task that makes a pool start a process (:func:`start_pool`)."""


def _buffer(memory: SharedMemory) -> memoryview:
    buffer = memory.buf
    if buffer is None:  # only after close()
        raise ValueError(f"shared memory {memory.name} is closed")
    return buffer


def _views(buffer: memoryview, shapes: dict[str, tuple[int, ...]]) -> Buffers:
    views, offset = {}, 0
    for name, shape in shapes.items():
        views[name] = np.ndarray(shape, np.uint16, buffer=buffer, offset=offset)
        offset += int(np.prod(shape)) * 2
    return views


@cache
def _attach(name: str) -> SharedMemory:
    """A worker maps each shared buffer once. The parent owns and unlinks it. (Attaching also
    registers it with the resource tracker, which spawned workers share with the parent: it is
    one entry, removed by the parent's unlink; unregistering here would remove it twice.)"""
    return SharedMemory(name=name)


def _write_from_shared(
    path: StoreLocation,
    name: str,
    shapes: dict[str, tuple[int, ...]],
    start: int,
    record: store.ShardRecord,
    staged: Staged,
    journal: bool = True,
) -> int:
    count = len(record.patch_ids)
    views = _views(_buffer(_attach(name)), shapes)
    with _WRITING:
        bands = {k: v[:count] for k, v in views.items()}
        return store.write_shard(path, start, bands, record, staged, journal=journal)


def _write_partners(
    path: StoreLocation, start: int, record: store.ShardRecord, staged: Staged
) -> int:
    with _WRITING:
        return store.write_shard(path, start, {}, record, staged)


def _finished(result: int) -> Written:
    future: Future[int] = Future()
    future.set_result(result)
    return future


@dataclass
class ShardCutter:
    """Cuts the samples, in order, into batches of one shard and hands full ones to the writer.

    Pixels are decoded straight into the slot :meth:`slot` returns. Shards finished by an earlier
    run (``done``) are not written again: their samples decode into a scratch slot (decoding still
    validates them, so ``--on-error skip`` decides as before) and must be the same patches.
    """

    writer: ShardWriter
    size: int
    done: dict[int, store.ShardRecord]
    path: StoreLocation
    start: int = -1
    buffers: Buffers = field(default_factory=dict)
    patch_ids: list[str] = field(default_factory=list)
    scratch: Buffers = field(default_factory=dict)
    partners: tuple[Staging, ...] = ()
    """The staged partner arrays (S1, reference maps) written with each shard."""
    deferred: Callable[[int, store.ShardRecord, Written], None] | None = None
    """Set when the partners are still being staged: each shard's S2 arrays are written without
    its journal entry, and this is told (start, record, the write), to write its partner arrays
    and the entry later (:mod:`ingest.layouts.pairing`)."""

    def slot(self, sample: int) -> Buffers:
        """Where the pixels of sample number ``sample`` go."""
        shard, position = divmod(sample, self.size)
        if shard in self.done:
            if not self.scratch:
                self.scratch = {g.array_name: np.empty((len(g.bands), g.size, g.size), np.uint16)
                                for g in BAND_GROUPS}  # fmt: skip
            return self.scratch
        if self.start != shard * self.size:
            self.start, self.buffers, self.patch_ids = shard * self.size, self.writer.buffers(), []
        return {name: array[position] for name, array in self.buffers.items()}

    def accept(self, sample: int, patch_id: str) -> None:
        """The patch decoded into ``slot(sample)`` is good: count it."""
        shard, position = divmod(sample, self.size)
        for staging in self.partners:
            staging.use(patch_id)
        if shard in self.done:
            check_resumed(self.path, self.done[shard], position, patch_id)
            return
        self.patch_ids.append(patch_id)
        if len(self.patch_ids) == self.size:
            self.flush()

    def flush(self) -> None:
        if self.patch_ids:
            record = store.ShardRecord(self.start // self.size, tuple(self.patch_ids))
            if self.deferred is not None:
                written = self.writer.submit(self.buffers, self.start, record, {}, journal=False)
                self.deferred(self.start, record, written)
            else:
                staged = {p.array: p.chunks(record.patch_ids) for p in self.partners}
                self.writer.submit(self.buffers, self.start, record, staged)
            self.start, self.patch_ids = -1, []

    def check_done(self, samples: int) -> None:
        """Finished shards must not hold more samples than this run produced."""
        for shard, record in self.done.items():
            held = samples - shard * self.size
            if held < len(record.patch_ids):
                check_resumed(self.path, record, max(held, 0), None)


def check_resumed(
    path: StoreLocation, record: store.ShardRecord, position: int, patch_id: str | None
) -> None:
    """A finished shard must hold what the stream delivers now, else the input changed."""
    held = record.patch_ids[position] if position < len(record.patch_ids) else None
    if held != patch_id:
        raise StoreError(
            f"{path}: cannot resume: shard {record.index} holds {held or 'nothing'} at position "
            f"{position} but the archives now give {patch_id or 'nothing'} (did the input change?)"
        )
