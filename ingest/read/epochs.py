"""The shard-aware epoch engine under ``SampleDataset.batches`` and ``ds.ben.batches``.

An epoch is planned over *blocks* — the dataset positions whose samples live in one shard (or one
dask chunk) — so that reading stays sequential where the store is: the blocks are shuffled, cut
into windows of ``window`` blocks, and the samples of each window shuffled together. That global
order is the same in every process for a seed. Each consumer then takes its part of it:

- a rank (``rank`` of ``world_size``, e.g. DDP) takes a contiguous, balanced slice of the order
  (sizes differ by at most one sample; with ``drop_last`` every rank gets the same number of full
  batches), so the ranks' parts are disjoint and cover the epoch;
- a DataLoader worker of that rank takes a contiguous run of the rank's batches (the batch count
  does not depend on the number of workers, so ``len()`` is exact).

A part is read window by window and decoded batch by batch, each sample straight into its slot of
the batch's arrays (locally each chunk read by byte range right before it is decoded; on object
storage the window's chunks fetched first, in one batched request), on a background thread that
keeps a few batches ready while the caller trains. A batch's arrays are reused for a later batch
once nothing refers to them any more (:class:`_Recycler`): fresh arrays cost page faults, and on
this virtual machine first-touching a fresh batch cost up to ≈ 100 µs per sample, about what
decoding it costs.

The reading itself is a :class:`Source` (``prepare(positions)``); :mod:`ingest.read.dataset`
reads through :class:`ingest.read.samples.SampleStore`, ``ds.ben.batches`` through the store too
when its arrays are the store's, else through dask.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .samples import SampleStore, Take

__all__ = ["Epoch", "Prepared", "Source", "StoreSource", "blocks_of", "part", "plan", "worker"]


class Prepared(Protocol):
    """Fetched samples of one window, decodable run by run (see ``SampleStore.prepare``)."""

    def __len__(self) -> int: ...

    def empty(self, count: int) -> dict[str, np.ndarray]: ...

    def decode_into(self, start: int, stop: int, out: dict[str, np.ndarray], at: int) -> None: ...

    def close(self) -> None: ...


class Source(Protocol):
    """What an epoch reads from: the samples at dataset positions, and per-sample extras."""

    def prepare(self, positions: np.ndarray) -> Prepared: ...

    def extras(self, positions: np.ndarray) -> dict[str, np.ndarray]: ...


class StoreSource:
    """A :class:`Source` reading through a :class:`~ingest.read.samples.SampleStore`.

    ``rows`` maps dataset positions to store positions (None: the same); the extras are the
    store's small ``tables`` at those rows and, when given, rows of an in-memory ``labels``
    table indexed by dataset position.
    """

    def __init__(
        self,
        store: SampleStore,
        takes: Sequence[Take],
        rows: np.ndarray | None = None,
        tables: Sequence[str] = (),
        labels: np.ndarray | None = None,
    ) -> None:
        self.store, self.takes, self.rows = store, list(takes), rows
        self.tables, self.labels = tuple(tables), labels

    def _at(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.rows is None else self.rows[positions]

    def prepare(self, positions: np.ndarray) -> Prepared:
        return self.store.prepare(self._at(positions), self.takes)

    def extras(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        at = self._at(positions)
        out = {name: self.store.table(name)[at] for name in self.tables}
        if self.labels is not None:
            out["labels"] = self.labels[positions]
        return out

    def blocks(self) -> list[np.ndarray]:
        """Dataset positions grouped by the shard of their store position."""
        lengths = [t.array.length for t in self.takes if t.array.length]
        length = lengths[0] if lengths else 256
        count = self.store.size if self.rows is None else len(self.rows)
        return blocks_of(self._at(np.arange(count)) // length)


def blocks_of(keys: np.ndarray) -> list[np.ndarray]:
    """Dataset positions grouped by ``keys`` (e.g. the shard of each sample), in key order."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    edges = np.flatnonzero(np.diff(keys[order])) + 1
    return [b for b in np.split(order, edges) if len(b)]


def plan(
    blocks: Sequence[np.ndarray], *, shuffle: bool, seed: int, window: int
) -> list[np.ndarray]:
    """The epoch's windows, each the dataset positions in the order to yield them."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(blocks)) if shuffle else np.arange(len(blocks))
    windows = []
    for w in range(0, len(order), window):
        chosen = sorted((blocks[int(k)] for k in order[w : w + window]), key=lambda b: int(b[0]))
        positions = np.concatenate(chosen)
        windows.append(positions[rng.permutation(len(positions))] if shuffle else positions)
    return windows


def part(
    total: int,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    workers: int = 1,
    drop_last: bool = False,
) -> tuple[int, int, int]:
    """``(start, stop, batches)``: the slice of the epoch's order that one worker of one rank
    reads, and how many batches the whole rank yields."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size or not 0 <= worker < workers:
        raise ValueError(f"rank {rank} of {world_size} / worker {worker} of {workers}")
    if drop_last:  # the same number of full batches on every rank
        batches = total // world_size // batch_size
        first, size = rank * batches * batch_size, batches * batch_size
    else:
        first = rank * total // world_size
        size = (rank + 1) * total // world_size - first
        batches = -(-size // batch_size)
    a, b = worker * batches // workers, (worker + 1) * batches // workers
    return first + min(a * batch_size, size), first + min(b * batch_size, size), batches


def worker() -> tuple[int, int]:
    """``(id, count)`` of the PyTorch DataLoader worker running this code, ``(0, 1)`` outside
    one (torch is consulted only when the process has imported it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0, 1
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


class Epoch:
    """One pass over a dataset in batches (see the module docstring); iterate it, or hand it to a
    PyTorch ``DataLoader(epoch, batch_size=None, num_workers=...)``.

    Yields dicts of stacked arrays plus ``index`` (the dataset positions of the batch's rows).
    ``len()`` is the number of batches of this rank. Pickles with its source (workers open
    their own files).
    """

    def __init__(
        self,
        source: Source,
        blocks: Sequence[np.ndarray],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        window: int = 4,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        transform: Callable[[dict[str, np.ndarray]], Any] | None = None,
        prefetch: int = 4,
    ) -> None:
        self.total = sum(len(b) for b in blocks)
        part(self.total, batch_size, rank=rank, world_size=world_size)  # validates
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.source = source
        self.blocks = list(blocks)
        self.batch_size = batch_size
        self.shuffle, self.seed, self.window = shuffle, seed, window
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.transform = transform
        self.prefetch = prefetch

    def __len__(self) -> int:
        return part(self.total, self.batch_size, rank=self.rank, world_size=self.world_size,
                    drop_last=self.drop_last)[2]  # fmt: skip

    def __iter__(self) -> Iterator[Any]:
        me, workers = worker()
        if workers > 1 and isinstance(self.source, StoreSource):
            self.source.store.threads = 1  # this worker's copy: the workers are the parallelism
        start, stop, _ = part(
            self.total, self.batch_size, rank=self.rank, world_size=self.world_size,
            worker=me, workers=workers, drop_last=self.drop_last,
        )  # fmt: skip
        windows = plan(self.blocks, shuffle=self.shuffle, seed=self.seed, window=self.window)
        produced = _batches(self.source, windows, start, stop, self.batch_size, self.transform,
                            keep=self.prefetch + 4)  # fmt: skip
        if self.prefetch < 1:
            return produced
        return _background(produced, self.prefetch)


def _batches(
    source: Source,
    windows: list[np.ndarray],
    start: int,
    stop: int,
    batch_size: int,
    transform: Callable[[dict[str, np.ndarray]], Any] | None,
    keep: int,
) -> Iterator[Any]:
    """The batches of positions ``[start, stop)`` of the epoch's order, window by window."""
    remaining = stop - start
    recycler = _Recycler(keep)
    out: dict[str, np.ndarray] | None = None
    index = np.empty(0, dtype=np.int64)
    filled = 0
    offset = 0
    for positions in windows:
        a, b = offset, offset + len(positions)
        offset = b
        lo, hi = max(a, start), min(b, stop)
        if lo >= hi:
            if a >= stop:
                break
            continue
        wanted = positions[lo - a : hi - a]
        prepared = source.prepare(wanted)
        try:
            k = 0
            while k < len(wanted):
                if out is None:
                    size = min(batch_size, remaining)
                    out, index = recycler.arrays(prepared, size), np.empty(size, np.int64)
                    filled = 0
                n = min(len(index) - filled, len(wanted) - k)
                prepared.decode_into(k, k + n, out, filled)
                index[filled : filled + n] = wanted[k : k + n]
                filled, k, remaining = filled + n, k + n, remaining - n
                if filled == len(index):
                    batch = {**out, **source.extras(index), "index": index}
                    out = None
                    yield batch if transform is None else transform(batch)
                    del batch  # its arrays may be reused once the caller lets them go too
        finally:
            prepared.close()


class _Recycler:
    """Batch arrays, reused for a later batch once nothing but this holds them.

    After allocating a set of arrays it notes their reference counts (``sys.getrefcount``, with
    only its own list holding them); a set whose counts are back to those is referenced by no
    one else — no batch dict, view, tensor (``torch.from_numpy`` / ``as_tensor`` keep the array
    alive), memoryview or list of the caller's — so nothing can observe it being overwritten.
    Sets still referenced are left alone and a fresh one allocated; at most ``keep`` sets are
    held. Off on free-threaded builds (reference counts are not exact there)."""

    def __init__(self, keep: int) -> None:
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        self.keep = keep if gil else 0
        self.held: list[tuple[list[np.ndarray], list[int]]] = []
        self.reused = 0

    def arrays(self, prepared: Prepared, size: int) -> dict[str, np.ndarray]:
        if not self.keep:
            return prepared.empty(size)
        names = {name: (a.shape[1:], a.dtype) for name, a in prepared.empty(0).items()}
        for arrays, counts in self.held:
            if (
                len(arrays) == len(names)
                and all((len(a), a.shape[1:], a.dtype) == (size, *kind)
                        for a, kind in zip(arrays, names.values(), strict=True))
                and _counts(arrays) == counts
            ):  # fmt: skip
                self.reused += 1
                return dict(zip(names, arrays, strict=True))
        fresh = list(prepared.empty(size).values())
        if len(self.held) < self.keep:
            self.held.append((fresh, _counts(fresh)))  # held by ``fresh`` alone, as when reused
        return dict(zip(names, fresh, strict=True))


def _counts(arrays: list[np.ndarray]) -> list[int]:
    """The reference counts of ``arrays`` (taken the same way every time, so comparable)."""
    return [sys.getrefcount(a) for a in arrays]


_DONE = object()


def _background(batches: Iterator[Any], depth: int) -> Iterator[Any]:
    """``batches`` produced on a background thread, at most ``depth`` ahead of the caller."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((_DONE, None))
        except BaseException as error:  # handed to the caller, raised there
            ready.put((_DONE, error))

    thread = threading.Thread(target=produce, name="ingest-epoch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        thread.join()
