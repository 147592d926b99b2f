"""Shard writers: where batches of exactly one shard are compressed and written.

One reader owns the archive stream, decodes and cuts batches; a writer takes each batch and writes
it as one whole shard of each band array. :class:`InlineWriter` writes in the calling process;
:class:`PoolWriter` writes in worker processes with a bounded number of batches in flight, which
bounds memory to about (in-flight + 1) batches. Two writers never touch the same shard.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Protocol

import numpy as np

from . import store


class ShardWriter(Protocol):
    """Writes batches at shard boundaries; ``close`` waits for all and raises the first failure."""

    def submit(
        self, start: int, bands: dict[str, np.ndarray], record: store.ShardRecord
    ) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> ShardWriter: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class InlineWriter:
    """Writes each batch immediately in this process (``--workers 0``)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def submit(self, start: int, bands: dict[str, np.ndarray], record: store.ShardRecord) -> None:
        store.write_shard(self._path, start, bands, record)

    def close(self) -> None:
        return None

    def __enter__(self) -> InlineWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PoolWriter:
    """Writes batches in ``workers`` processes, at most ``workers + 1`` batches in flight."""

    def __init__(self, path: str, workers: int) -> None:
        self._path = path
        # spawn, not fork: the parent already runs zarr's event-loop thread, and forking a process
        # with threads can deadlock the child.
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint
        )
        self._in_flight: deque[Future[int]] = deque()
        self._limit = workers + 1

    def submit(self, start: int, bands: dict[str, np.ndarray], record: store.ShardRecord) -> None:
        while len(self._in_flight) >= self._limit:
            self._in_flight.popleft().result()
        self._in_flight.append(
            self._pool.submit(store.write_shard, self._path, start, bands, record)
        )

    def close(self) -> None:
        try:
            while self._in_flight:
                self._in_flight.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PoolWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            # Leave the store as it is (resumable); do not wait for queued batches.
            for future in self._in_flight:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the reader, which lets the shards in progress finish."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_writer(path: str, workers: int) -> InlineWriter | PoolWriter:
    return InlineWriter(path) if workers <= 0 else PoolWriter(path, workers)
