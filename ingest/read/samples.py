"""The fast sample reader: any sample of any per-pixel array of a store, by byte range.

Hand-written on purpose. Through zarr-python every read of a sharded array goes through its event
loop, re-reads the shard index and checks its CRC32C (≈ 2 ms per read here), and ``labels[i]``
decompresses a 65,536-row chunk (≈ 1.3 ms): 174 random samples/s for the four arrays of a
sample, against 0.19 ms of actual work (issue 15). So :class:`SampleStore` reads the one shard
layout the store uses itself, with the readers' shared parts: the layout and the rule for its
shard indexes (:mod:`ingest.read.shards`), the chunk decoder (:mod:`ingest.read.decoding`) and
the byte-range access (:mod:`ingest.read.files`):

- each shard index is read once (the last 16 × S + 4 bytes of the shard object), checked once
  (CRC32C, every entry within the shard and the layout's sizes) and cached;
- inner chunks are fetched by byte range: on local stores one ``os.preadv`` per chunk into a
  small per-thread buffer that stays in the CPU cache, right before it is decoded (file
  descriptors kept open, a bounded number of unused ones); on object storage one batched
  ``cat_ranges`` call per sample or per window (fsspec, e.g. s3fs), adjacent chunks of a shard
  merged into one range;
- chunks decode straight into the caller's arrays (each sample into its final slot of a batch),
  bulk reads split between two threads (the GIL is released while decoding);
- the small per-sample arrays (``labels``, ``labels19``, ``patch_id``) are read whole, once.

It is generic over the store's arrays: every array whose first dimension is ``sample`` and that
has at least 3 dimensions is a per-pixel array (``bands_10m`` … ``bands_s1``, ``reference_map``),
read the fast way when its zarr metadata shows the layout, whatever its fixed-size dtype, and
through zarr-python otherwise (same values, zarr's speed). A shard missing from a store marked
complete, a bad index entry or a corrupt chunk is a :class:`~ingest.errors.StoreError` naming
the shard, never zeros.

A :class:`SampleStore` pickles to its location and array metadata only: caches, open files and
the thread pool are per process and made on first use (so it works in forked and spawned
DataLoader workers alike). Finished stores are immutable; a store still being written is read as
it was when each shard index was first read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..store.location import StoreLocation
from .decoding import corrupt, decoder
from .files import Files, LocalFiles, RemoteFiles
from .prepared import Local, Plan, Prepared
from .shards import SampleArray, Take, missing_shard, shard_length

__all__ = ["Prepared", "SampleArray", "SampleStore", "Take", "shard_length"]

#: The small per-sample arrays read whole once per process.
TABLES = ("labels", "labels19", "patch_id")
#: On object storage, chunks of one shard less than this apart are fetched in one range (one
#: request: there a request costs more than a megabyte of transfer).
_REMOTE_GAP = 1 << 20


#: Bumped in every forked child (cheaper than comparing ``os.getpid()`` on every read).
_GENERATION = 0


def _forked() -> None:
    global _GENERATION
    _GENERATION += 1


os.register_at_fork(after_in_child=_forked)


class SampleStore:
    """A store's per-pixel arrays and small per-sample tables, read sample by sample or in bulk.

    ``SampleStore.open(path_or_url, storage_options)``; then :meth:`sample` (one sample, the
    arrays of ``takes``) and :meth:`samples` (many, stacked in the order asked). ``requests``
    counts the store requests this process made (index reads included).
    """

    def __init__(
        self,
        location: StoreLocation,
        arrays: dict[str, SampleArray],
        tables: tuple[str, ...],
        size: int,
        attrs: dict[str, Any],
    ) -> None:
        self.location = location
        self.arrays = arrays
        self.tables = tables
        self.size = size
        self.attrs = attrs
        self.complete = attrs.get("complete") is True
        """A shard missing from a complete store is an error; from an unfinished one, fill."""
        self.threads = min(2, os.cpu_count() or 1)
        """Decode threads of bulk reads (1 in DataLoader workers: the processes are parallel)."""
        self._local: Local | None = None

    # --- opening and pickling ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: str | os.PathLike[str] | StoreLocation,
        storage_options: dict[str, Any] | None = None,
    ) -> SampleStore:
        """Read the store's metadata (consolidated: one request) and its band names."""
        location = StoreLocation.of(store, storage_options)
        group = _open_group(location)
        arrays: dict[str, SampleArray] = {}
        tables: list[str] = []
        size: int | None = None
        for name, array in sorted(group.arrays()):
            dims = tuple(str(d) for d in (array.metadata.dimension_names or ()))  # type: ignore[union-attr]
            if not dims or dims[0] != "sample":
                continue
            size = int(array.shape[0]) if size is None else size
            if array.ndim >= 3:
                arrays[name] = _describe(group, name, array, dims)
            elif name in TABLES:
                tables.append(name)
        if size is None or "patch_id" not in tables:
            raise StoreError(f"{location}: no patch_id array (not an ingest store, or unfinished)")
        return cls(location, arrays, tuple(tables), size, dict(group.attrs))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_local"] = None  # files, caches and threads belong to one process
        state["location"] = StoreLocation(self.location.url, dict(self.location.storage_options))
        return state

    def _state(self) -> Local:
        local = self._local
        if local is None or local.generation != _GENERATION:  # first use, or a forked child
            files: Files = (
                LocalFiles(self.location.zarr_url)
                if self.location.is_local
                else RemoteFiles(self.location)
            )
            kept = local.tables if local is not None else {}  # inherited tables are still valid
            local = self._local = Local(_GENERATION, files, tables=kept)
        return local

    @property
    def requests(self) -> int:
        """Store requests made by this process so far (pixel and index reads)."""
        return self._state().files.requests

    def close(self) -> None:
        """Close this process's open files and thread pool (they reopen on next use)."""
        local = self._local
        if local is not None and local.generation == _GENERATION:
            local.files.close()
            if local.pool is not None:
                local.pool.shutdown()
        self._local = None

    # --- small per-sample tables ------------------------------------------------------------------

    def table(self, name: str) -> np.ndarray:
        """A small per-sample array (``labels``, ``labels19``, ``patch_id``), read whole once per
        process; ``patch_id`` as a numpy ``str`` array."""
        local = self._state()
        values = local.tables.get(name)
        if values is None:
            if name not in self.tables:
                raise KeyError(name)
            array = self._group(local)[name]
            assert isinstance(array, zarr.Array)
            values = np.asarray(array[...])
            if values.dtype.kind not in "biuf":  # StringDType / object: fixed-width str
                values = np.array(values.tolist(), dtype=str)
            local.tables[name] = values
        return values

    def _group(self, local: Local) -> zarr.Group:
        if local.group is None:
            local.group = _open_group(self.location)
        return local.group

    # --- pixels -----------------------------------------------------------------------------------

    def sample(self, i: int, takes: Sequence[Take], tables: Sequence[str] = ()) -> dict[str, Any]:
        """Sample ``i`` (store position) of each array in ``takes`` and each of ``tables`` (a
        row copy; ``patch_id`` a ``str``): one range request per array, all in one call on object
        storage, once the shard indexes are cached."""
        local = self._state()
        requests: list[tuple[str, int, int]] = []
        wanted: list[np.ndarray] = []
        out: dict[str, Any] = {}
        for take in takes:
            array = take.array
            length = array.length
            if length is None:
                out[array.name] = self._zarr_rows(local, take, np.array([i]))[0]
                continue
            shard, within = divmod(i, length)
            entries = local.indexes.get((array.name, shard))
            if entries is None:
                self._ensure_indexes(local, [(t.array, i // t.array.length) for t in takes
                                             if t.array.length is not None])  # fmt: skip
                entries = local.indexes[(array.name, shard)]
            offset, nbytes = entries[within].tolist()
            full = np.empty(array.sample_shape, dtype=array.dtype)
            if offset < 0:
                full.fill(array.fill)
            else:
                requests.append((array.keys[shard], offset, offset + nbytes))
                wanted.append(full)
            out[array.name] = full if take.rows is None else (full, take.rows)
        decode = decoder().decode
        files = local.files
        if requests and isinstance(files, LocalFiles):
            for (key, start, stop), full in zip(requests, wanted, strict=True):
                view = local.buffer(stop - start)[: stop - start]
                fd = files.acquire(key)
                if fd is None:
                    raise StoreError(f"{files.where(key)}: shard vanished while reading")
                try:
                    files.read(fd, key, view, start)
                finally:
                    files.release(key)
                try:
                    decode(view, full)
                except (ValueError, RuntimeError) as exc:  # CorruptChunk, blosc's
                    raise corrupt(files.where(key), exc) from None
        elif requests:
            for (key, _, _), data, full in zip(
                requests, files.fetch(requests), wanted, strict=True
            ):
                if data is None:
                    raise StoreError(f"{files.where(key)}: shard vanished while reading")
                try:
                    decode(data, full)
                except (ValueError, RuntimeError) as exc:  # CorruptChunk, blosc's
                    raise corrupt(files.where(key), exc) from None
        for take in takes:
            if take.rows is not None and take.array.length is not None:
                full, rows = out[take.array.name]
                out[take.array.name] = full[list(rows)]
        for name in tables:
            values = local.tables.get(name)
            if values is None:
                values = self.table(name)
            out[name] = str(values[i]) if name == "patch_id" else values[i].copy()
        return out

    def samples(self, positions: np.ndarray, takes: Sequence[Take]) -> dict[str, np.ndarray]:
        """The samples at store ``positions`` (1-D ints, any order, repeats allowed) of each
        array in ``takes``, stacked in that order (:meth:`prepare`, then decoded whole)."""
        prepared = self.prepare(positions, takes)
        try:
            out = prepared.empty(len(prepared))
            prepared.decode_into(0, len(prepared), out, 0)
        finally:
            prepared.close()
        return out

    def prepare(self, positions: np.ndarray, takes: Sequence[Take]) -> Prepared:
        """Plan (and on object storage fetch) the encoded chunks of the samples at store
        ``positions`` for ``takes``; :meth:`Prepared.decode_into` then decodes any run of them
        into arrays the caller owns, and :meth:`Prepared.close` ends it.

        Locally nothing is read yet: each chunk is read right before it is decoded, into a small
        per-thread buffer (the bytes then come from the CPU cache, and no window-sized buffer is
        written and read back: in a fresh process, first-touching such a buffer cost more than
        the decoding); the kernel is asked to read ahead each shard span involved
        (``posix_fadvise(WILLNEED)``, for cold files). On object storage each shard involved is
        read with as few ranges as its wanted chunks allow (chunks less than a megabyte apart
        merged), every range of the call in one batched request.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(positions) and (positions.min() < 0 or positions.max() >= self.size):
            raise IndexError(f"sample positions out of range [0, {self.size})")
        local = self._state()
        is_local = isinstance(local.files, LocalFiles)
        ranges: list[tuple[str, int, int]] = []
        plans: list[Plan] = []
        for take in takes:
            array = take.array
            if array.length is None:
                values = self._zarr_rows(local, take, positions)
                plans.append(Plan(take, values=values))
                continue
            shard_of = positions // array.length
            within = positions % array.length
            shards = np.unique(shard_of)
            self._ensure_indexes(local, ((array, int(s)) for s in shards.tolist()))
            # locally (shard, offset, nbytes) per row; remotely (range number, offset in the
            # range, nbytes); -1 first for an absent chunk
            where = np.full((len(positions), 3), -1, dtype=np.int64)
            for shard in shards.tolist():
                rows = np.flatnonzero(shard_of == shard)
                entries = local.indexes[(array.name, shard)][within[rows]]
                present = entries[:, 0] >= 0
                rows, entries = rows[present], entries[present]
                if not len(rows):
                    continue
                if is_local:
                    where[rows, 0] = shard
                    where[rows, 1:] = entries
                    ranges.append((array.keys[shard], int(entries[:, 0].min()),
                                   int((entries[:, 0] + entries[:, 1]).max())))  # fmt: skip
                    continue
                order = np.argsort(entries[:, 0], kind="stable")
                rows, offsets, sizes = rows[order], entries[order, 0], entries[order, 1]
                ends = np.maximum.accumulate(offsets + sizes)
                new = np.empty(len(rows), dtype=bool)
                new[0] = True
                new[1:] = offsets[1:] - ends[:-1] > _REMOTE_GAP
                number = np.cumsum(new) - 1
                firsts = offsets[new]
                lasts = ends[np.r_[np.flatnonzero(new)[1:] - 1, len(rows) - 1]]
                where[rows, 0] = len(ranges) + number
                where[rows, 1] = offsets - firsts[number]
                where[rows, 2] = sizes
                spans = zip(firsts.tolist(), lasts.tolist(), strict=True)
                ranges.extend((array.keys[shard], a, b) for a, b in spans)
            plans.append(Plan(take, where=where))
        if is_local:
            files = local.files
            assert isinstance(files, LocalFiles)
            return Prepared(self.threads, len(positions), plans, None, local, files.advise(ranges))
        wheres = [local.files.where(key) for key, _, _ in ranges]
        return Prepared(
            self.threads, len(positions), plans, self._fetch(local, ranges), local, wheres=wheres
        )

    def _fetch(self, local: Local, ranges: list[tuple[str, int, int]]) -> list[memoryview]:
        """The ranges, in order, in one batched call (object storage)."""
        results = local.files.fetch(ranges)
        for (key, _, _), data in zip(ranges, results, strict=True):
            if data is None:
                raise StoreError(f"{local.files.where(key)}: shard vanished while reading")
        return [memoryview(data) for data in results if data is not None]

    def _ensure_indexes(self, local: Local, wanted: Iterable[tuple[SampleArray, int]]) -> None:
        """Read (one batched request on object storage) and check the indexes not cached yet."""
        missing = {(a.name, s): a for a, s in wanted if (a.name, s) not in local.indexes}
        if not missing:
            return
        files = local.files
        items = list(missing.items())
        by_size: dict[int, list[int]] = {}  # one batched call per index size (usually one)
        for k, (_, array) in enumerate(items):
            by_size.setdefault(array.layout.index_bytes, []).append(k)
        for size, numbers in by_size.items():
            keys = [items[k][1].keys[items[k][0][1]] for k in numbers]
            for k, key, tail in zip(numbers, keys, files.tails(keys, size), strict=True):
                (name, shard), array = items[k]
                where = files.where(key)
                if tail is None:  # not written: fill while unfinished, an error once complete
                    local.indexes[(name, shard)] = missing_shard(array.layout, where, self.complete)
                else:
                    local.indexes[(name, shard)] = array.layout.entries(tail[0], tail[1], where)

    def _zarr_rows(self, local: Local, take: Take, positions: np.ndarray) -> np.ndarray:
        """Another layout: zarr-python reads the samples (sorted, unique), then reordered."""
        array = self._group(local)[take.array.name]
        assert isinstance(array, zarr.Array)
        unique, inverse = np.unique(positions, return_inverse=True)
        values = np.asarray(array.get_orthogonal_selection(unique))[inverse]
        return values if take.rows is None else values[:, list(take.rows)]


# --- reading helpers ------------------------------------------------------------------------------


def _open_group(location: StoreLocation) -> zarr.Group:
    try:
        return location.open_group(mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            ValueError) as exc:  # fmt: skip
        raise StoreError(f"{location}: not a Zarr v3 store ({exc})") from None


def _describe(
    group: zarr.Group, name: str, array: zarr.Array[Any], dims: tuple[str, ...]
) -> SampleArray:
    length = shard_length(array)
    shards = -(-int(array.shape[0]) // length) if length else 0
    zeros = [0] * (array.ndim - 1)
    keys = tuple(f"{name}/{array.metadata.encode_chunk_key((s, *zeros))}" for s in range(shards))
    bands = None
    if len(dims) > 1 and dims[1].startswith("band") and dims[1] in group:
        names = group[dims[1]]
        assert isinstance(names, zarr.Array)
        bands = tuple(str(b) for b in np.asarray(names[...]).tolist())
    fill = np.asarray(array.fill_value, dtype=array.dtype).item()
    return SampleArray(
        name, tuple(int(n) for n in array.shape), np.dtype(array.dtype).str, dims, fill, length,
        keys, bands,
    )  # fmt: skip
