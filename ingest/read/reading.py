"""Reading the store: :func:`open_store` opens it as an xarray Dataset the fast way.

``xr.open_zarr`` makes one dask chunk per *inner* chunk, i.e. per sample, and a whole-array
reduction pays the task overhead 590,326 times (engineering notes: ≈ 7× slower). Here the
per-pixel arrays (``bands_10m`` … ``bands_s1``, ``reference_map``) get one dask chunk per shard and
everything else (labels, flags, coordinates) one chunk, so selecting on labels and flags reads a
few small objects and never a band shard.

The per-pixel arrays of the store's own layout (inner chunk one sample, bytes + blosc, index at the
end with its CRC32C: what :class:`ingest.store.shards.ShardEncoder` writes, uint16 or float32,
with or without a band dimension) are read by :class:`ShardedBands`: one store request per shard
(or the index plus byte ranges when only a few samples of a shard are wanted), then one blosc call
per sample, with the parts every reader of the store shares: the layout and the rule for shard
indexes (:mod:`ingest.read.shards`: a shard missing from a store marked complete or a bad index
entry is a :class:`~ingest.errors.StoreError`, never zeros), the chunk decoder
(:mod:`ingest.read.decoding`) and the byte-range access (:mod:`ingest.read.files`, here through
the zarr ``Store`` so that any store works). zarr-python's sharding codec does the same work
through an asyncio pipeline that costs ≈ 0.2 ms per inner chunk in Python, which bounds a full
scan at a few hundred samples per second on two cores. Any other layout falls back to xarray's
own zarr backend; the values are the same either way (the tests compare them).

Importing this module registers the ``ds.ben`` accessor (:mod:`ingest.read.accessor`).
"""

from __future__ import annotations

import os
import uuid
import warnings
from typing import Any

import numpy as np
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.abc.store import Store, SuffixByteRequest
from zarr.core.sync import sync

from .. import schemas
from ..errors import StoreError
from . import accessor as _accessor  # registers ``ds.ben``
from .decoding import corrupt, decoder
from .files import Data, StoreFiles
from .shards import ShardLayout, missing_shard

__all__ = ["IncompleteStoreWarning", "ShardedBands", "open_group", "open_store"]

#: The per-pixel arrays of every contract (layout ``sharded``): chunked by shards here.
PIXEL_ARRAYS = frozenset(
    name
    for version in schemas.STORE_CONTRACTS
    for name, spec in schemas.store_contract(version)["data_variables"].items()
    if spec["layout"] == "sharded"
)


class IncompleteStoreWarning(UserWarning):
    """The store's ``complete`` attribute is not true: an unfinished or interrupted ingest."""


def open_store(
    store: str | os.PathLike[str] | Store, *, storage_options: dict[str, Any] | None = None
) -> xr.Dataset:
    """Open an ingest store as a lazy Dataset whose dask chunks follow the shards.

    ``store`` is a local path, any URL fsspec understands (``file://``, ``s3://``, ``https://``
    …, with ``storage_options`` passed to fsspec) or a zarr ``Store``. The per-pixel arrays
    (``bands_10m`` …, ``bands_s1``, ``reference_map`` when the store has them) get dask chunks of
    ``{"sample": S}``, S being the shard length recorded in their metadata; every other variable
    and coordinate is one chunk. Nothing but metadata is read
    until something is computed. Warns :class:`IncompleteStoreWarning` when the store's
    ``complete`` attribute is not true. Raises :class:`~ingest.errors.StoreError` when ``store``
    is not a Zarr group.
    """
    group = open_group(store, storage_options)
    raw = xr.open_dataset(
        group.store,  # type: ignore[arg-type]  # xarray accepts any zarr Store
        engine="zarr",
        group=group.path or None,
        chunks=None,  # lazy backend arrays, chunked per variable below
        cache=False,  # the dask graph must not hold a copy of what it read
        consolidated=group.metadata.consolidated_metadata is not None,
        zarr_format=3,
    )
    token = uuid.uuid4().hex[:16]  # a fresh name per open: two opens never share dask keys
    complete = raw.attrs.get("complete") is True
    where = _describe(store)
    variables: dict[str, xr.Variable] = {}
    for name, variable in raw.variables.items():
        key = str(name)
        if key in raw.indexes:  # label / band names: small, already in memory
            variables[key] = variable
        elif key in PIXEL_ARRAYS and variable.dims[:1] == ("sample",):
            variables[key] = _band_variable(group, key, variable, token, complete, where)
            _accessor.mark_store_rows(variables[key], key, store, storage_options)
        else:
            variables[key] = variable.chunk(dict.fromkeys(variable.dims, -1), name=f"{token}-{key}")
    ds = xr.Dataset(
        {k: v for k, v in variables.items() if k in raw.data_vars},
        coords={k: v for k, v in variables.items() if k in raw.coords},
        attrs=dict(raw.attrs),
    )
    if not complete:
        warnings.warn(
            f"{_describe(store)}: the store is not complete (unfinished or interrupted ingest; "
            "continue it with `ingest run --resume`)",
            IncompleteStoreWarning,
            stacklevel=2,
        )
    return ds


def _describe(store: str | os.PathLike[str] | Store) -> str:
    return os.fspath(store) if isinstance(store, str | os.PathLike) else str(store)


def open_group(
    store: str | os.PathLike[str] | Store, storage_options: dict[str, Any] | None = None
) -> zarr.Group:
    """The store's root group, read-only; :class:`~ingest.errors.StoreError` when it is none."""
    target: str | Store = os.fspath(store) if isinstance(store, str | os.PathLike) else store
    # zarr refuses storage_options for a plain local path: pass them only when given.
    extra: dict[str, Any] = {"storage_options": storage_options} if storage_options else {}
    try:
        return zarr.open_group(target, mode="r", zarr_format=3, **extra)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
            ValueError) as exc:  # fmt: skip
        raise StoreError(f"{_describe(store)}: not a Zarr v3 store ({exc})") from None


def _band_variable(
    group: zarr.Group, name: str, variable: xr.Variable, token: str, complete: bool, where: str
) -> xr.Variable:
    """A per-pixel array chunked by shards, read by :class:`ShardedBands` when the layout
    allows."""
    array = group[name]
    assert isinstance(array, zarr.Array)
    shard = array.shards[0] if array.shards else array.chunks[0]
    if ShardLayout.of(array) is not None:
        variable = xr.Variable(
            variable.dims,
            indexing.LazilyIndexedArray(ShardedBands(array, complete=complete, where=where)),
            attrs=variable.attrs,
            encoding=variable.encoding,
        )
    return variable.chunk({"sample": shard}, name=f"{token}-{name}")


class ShardedBands(BackendArray):
    """A per-pixel array of the store's layout (uint16 bands and maps, float32 S1), read shard by
    shard (see the module docstring).

    Supports outer indexing; every sample wanted from one shard is served by one store request
    when they are at least half the shard (the usual case: dask asks for whole shards), else by
    the shard index plus one byte-range request per run of adjacent samples; the requests of all
    shards of a read go concurrently. ``complete``: the store is marked complete (a missing shard
    is then an error); ``where`` names the store in messages.
    """

    def __init__(self, array: zarr.Array[Any], *, complete: bool = True, where: str = "") -> None:
        layout = ShardLayout.of(array)
        if layout is None:
            raise ValueError(f"{array.path}: not the store's shard layout")
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self._files = StoreFiles(array.store, where)
        self._keys = [
            f"{array.path}/{array.metadata.encode_chunk_key((s, *[0] * (array.ndim - 1)))}"
            for s in range(-(-self.shape[0] // layout.length))
        ]
        self._layout = layout
        self._complete = complete
        self._fill = np.asarray(array.fill_value, dtype=self.dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(  # type: ignore[no-any-return]
            key, self.shape, indexing.IndexingSupport.OUTER, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        wanted = np.arange(self.shape[0])[key[0]]
        block = self.samples(np.atleast_1d(wanted))
        if np.ndim(wanted) == 0:
            block = block[0]
        # The other axes are small and whole in memory: index them one at a time, last first, so
        # that an integer dropping an axis does not shift the axes still to be indexed.
        offset = block.ndim - (len(key) - 1)
        for axis in range(len(key) - 1, 0, -1):
            block = block[(slice(None),) * (offset + axis - 1) + (key[axis],)]
        return block

    def samples(self, wanted: np.ndarray) -> np.ndarray:
        """The samples at positions ``wanted`` (1-D ints), stacked in that order."""
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        length = self._layout.length
        shard_of = wanted // length
        plans = []  # (shard, positions in ``wanted``, samples within the shard, whole shard?)
        for s in np.unique(shard_of).tolist():
            positions = np.flatnonzero(shard_of == s)
            within = wanted[positions] - s * length
            present = min(length, self.shape[0] - s * length)
            plans.append((s, positions, within, 2 * len(np.unique(within)) >= present))
        decode = decoder().decode
        for s, positions, entries, data, base in sync(self._fetch(plans)):
            if data is None:  # a shard not written yet (the store is unfinished)
                out[positions] = self._fill
                continue
            for position, (offset, nbytes) in zip(
                positions.tolist(), entries.tolist(), strict=True
            ):
                if offset < 0:
                    out[position] = self._fill
                    continue
                try:
                    decode(data[offset - base : offset - base + nbytes], out[position])
                except (ValueError, RuntimeError) as exc:  # CorruptChunk, blosc's
                    raise corrupt(self._files.where(self._keys[s]), exc) from None
        return out

    async def _fetch(
        self, plans: list[tuple[int, np.ndarray, np.ndarray, bool]]
    ) -> list[tuple[int, np.ndarray, np.ndarray, Data | None, int]]:
        """``(shard, positions, their index entries, bytes, the offset of those bytes in the
        shard)`` covering every position of ``plans``: the whole shards and the other shards'
        indexes fetched concurrently, each index checked, then the byte ranges of the chunks
        wanted from the other shards concurrently (on zarr's loop: one trip from the caller)."""
        layout, files, keys = self._layout, self._files, self._keys
        tail = SuffixByteRequest(layout.index_bytes)
        found = await files.aget([(keys[s], None if whole else tail) for s, _, _, whole in plans])
        pieces: list[tuple[int, np.ndarray, np.ndarray, Data | None, int]] = []
        ranges: list[tuple[str, int, int]] = []
        ranged: list[int] = []  # the pieces whose bytes are the ranges, in order
        for (s, positions, within, whole), data in zip(plans, found, strict=True):
            where = files.where(keys[s])
            if data is None:
                index = missing_shard(layout, where, self._complete)  # an error once complete
                pieces.append((s, positions, index[within], None, 0))
                continue
            index = layout.entries(data[-layout.index_bytes :], len(data) if whole else None, where)
            if whole:
                pieces.append((s, positions, index[within], data, 0))
                continue
            absent = index[within, 0] < 0
            if absent.any():
                pieces.append((s, positions[absent], index[within[absent]], None, 0))
            for a, b, members in _runs(index, np.unique(within)):
                mine = np.isin(within, members)
                ranged.append(len(pieces))
                pieces.append((s, positions[mine], index[within[mine]], None, a))
                ranges.append((keys[s], a, b))
        for k, body in zip(ranged, await files.afetch(ranges), strict=True):
            s, positions, entries, _, a = pieces[k]
            if body is None:
                raise StoreError(f"{files.where(keys[s])}: shard vanished while reading")
            pieces[k] = (s, positions, entries, body, a)
        return pieces


def _runs(index: np.ndarray, within: np.ndarray) -> list[tuple[int, int, list[int]]]:
    """Byte ranges ``[a, b)`` covering the present chunks of ``within`` (sorted, unique), adjacent
    chunks merged into one range (the encoder writes them back to back in sample order)."""
    starts: list[int] = []
    ends: list[int] = []
    members: list[list[int]] = []
    for i in (int(i) for i in within):
        offset, nbytes = int(index[i, 0]), int(index[i, 1])
        if offset < 0:
            continue
        if ends and ends[-1] == offset:
            ends[-1] = offset + nbytes
            members[-1].append(i)
        else:
            starts.append(offset)
            ends.append(offset + nbytes)
            members.append([i])
    return list(zip(starts, ends, members, strict=True))
