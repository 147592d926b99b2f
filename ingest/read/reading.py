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
per sample. zarr-python's sharding codec does the same work through an asyncio pipeline that costs
≈ 0.2 ms per inner chunk in Python, which bounds a full scan at a few hundred samples per second on
two cores. Any other layout falls back
to xarray's own zarr backend; the values are the same either way (the tests compare them).

Importing this module registers the ``ds.ben`` accessor (:mod:`ingest.read.accessor`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from typing import Any

import google_crc32c
import numpy as np
import xarray as xr
import zarr
from numcodecs import Blosc
from xarray.backends import BackendArray
from xarray.core import indexing
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .. import schemas
from ..errors import StoreError
from ..store.shards import ShardEncoder
from . import accessor as _accessor  # registers ``ds.ben``

__all__ = ["IncompleteStoreWarning", "ShardedBands", "open_group", "open_store"]

#: Marks an absent inner chunk in a shard index (offset and length both 2**64 - 1).
_ABSENT = np.iinfo(np.uint64).max
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
    variables: dict[str, xr.Variable] = {}
    for name, variable in raw.variables.items():
        key = str(name)
        if key in raw.indexes:  # label / band names: small, already in memory
            variables[key] = variable
        elif key in PIXEL_ARRAYS and variable.dims[:1] == ("sample",):
            variables[key] = _band_variable(group, key, variable, token)
            _accessor.mark_store_rows(variables[key], key, store, storage_options)
        else:
            variables[key] = variable.chunk(dict.fromkeys(variable.dims, -1), name=f"{token}-{key}")
    ds = xr.Dataset(
        {k: v for k, v in variables.items() if k in raw.data_vars},
        coords={k: v for k, v in variables.items() if k in raw.coords},
        attrs=dict(raw.attrs),
    )
    if ds.attrs.get("complete") is not True:
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


def _band_variable(group: zarr.Group, name: str, variable: xr.Variable, token: str) -> xr.Variable:
    """A per-pixel array chunked by shards, read by :class:`ShardedBands` when the layout
    allows."""
    array = group[name]
    assert isinstance(array, zarr.Array)
    shard = array.shards[0] if array.shards else array.chunks[0]
    encoder = ShardEncoder.for_array(array)
    if encoder is not None:
        variable = xr.Variable(
            variable.dims,
            indexing.LazilyIndexedArray(ShardedBands(array, encoder)),
            attrs=variable.attrs,
            encoding=variable.encoding,
        )
    return variable.chunk({"sample": shard}, name=f"{token}-{name}")


class ShardedBands(BackendArray):
    """A per-pixel array of the store's layout (uint16 bands and maps, float32 S1), read shard by
    shard (see the module docstring).

    Supports outer indexing; every sample wanted from one shard is served by one store request
    when they are at least half the shard (the usual case: dask asks for whole shards), else by
    the shard index plus one byte-range request per run of adjacent samples.
    """

    def __init__(self, array: zarr.Array[Any], encoder: ShardEncoder) -> None:
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = encoder.dtype
        self._store = array.store
        self._keys = [
            f"{array.path}/{array.metadata.encode_chunk_key((s, *[0] * (array.ndim - 1)))}"
            for s in range(-(-self.shape[0] // encoder.length))
        ]
        self._length = encoder.length
        self._blosc: Blosc = encoder.blosc
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
        shard_of = wanted // self._length
        shards = np.unique(shard_of)
        plans = [(int(s), np.flatnonzero(shard_of == s)) for s in shards]
        fetched = sync(self._fetch_all([(s, wanted[pos] - s * self._length) for s, pos in plans]))
        for (_, positions), parts in zip(plans, fetched, strict=True):
            for position, data in zip(positions, parts, strict=True):
                if data is None:
                    out[position] = self._fill
                else:
                    self._blosc.decode(data, out=out[position])
        return out

    async def _fetch_all(
        self, plans: list[tuple[int, np.ndarray]]
    ) -> list[list[memoryview | None]]:
        # Shards are fetched concurrently on zarr's event loop; decoding happens in the caller.
        return list(await asyncio.gather(*(self._fetch(s, within) for s, within in plans)))

    async def _fetch(self, shard: int, within: np.ndarray) -> list[memoryview | None]:
        """The encoded inner chunk (None when absent) of each sample ``within`` the shard."""
        key = self._keys[shard]
        prototype = default_buffer_prototype()
        index_size = 16 * self._length + 4
        present = min(self._length, self.shape[0] - shard * self._length)
        if 2 * len(np.unique(within)) >= present:
            whole = await self._store.get(key, prototype)
            if whole is None:
                return [None] * len(within)
            data = whole.as_numpy_array().data
            index = self._index(data[-index_size:], key)
            return [_slice(data, index[i], 0) for i in within]
        tail = await self._store.get(key, prototype, SuffixByteRequest(index_size))
        if tail is None:
            return [None] * len(within)
        index = self._index(tail.as_numpy_array().data, key)
        runs = _runs(index, np.unique(within))
        bodies = await asyncio.gather(
            *(self._store.get(key, prototype, RangeByteRequest(a, b)) for a, b, _ in runs)
        )
        start_of = {}
        for (a, _, members), body in zip(runs, bodies, strict=True):
            if body is None:
                raise StoreError(f"{key}: shard changed while reading it")
            chunk = body.as_numpy_array().data
            start_of.update(dict.fromkeys(members, (chunk, a)))
        return [
            None if i not in start_of else _slice(start_of[i][0], index[i], start_of[i][1])
            for i in within
        ]

    def _index(self, raw: memoryview, key: str) -> np.ndarray:
        """The (offset, nbytes) table of a shard, its CRC32C checked."""
        table = bytes(raw[:-4])
        if google_crc32c.value(table) != int.from_bytes(raw[-4:], "little"):
            raise StoreError(f"{key}: shard index checksum mismatch (corrupt shard)")
        return np.frombuffer(table, dtype="<u8").reshape(self._length, 2)


def _slice(data: memoryview, entry: np.ndarray, base: int) -> memoryview | None:
    offset, nbytes = int(entry[0]), int(entry[1])
    if offset == _ABSENT:
        return None
    return data[offset - base : offset - base + nbytes]


def _runs(index: np.ndarray, within: np.ndarray) -> list[tuple[int, int, list[int]]]:
    """Byte ranges ``[a, b)`` covering the present chunks of ``within`` (sorted, unique), adjacent
    chunks merged into one range (the encoder writes them back to back in sample order)."""
    starts: list[int] = []
    ends: list[int] = []
    members: list[list[int]] = []
    for i in (int(i) for i in within):
        offset, nbytes = int(index[i, 0]), int(index[i, 1])
        if offset == _ABSENT:
            continue
        if ends and ends[-1] == offset:
            ends[-1] = offset + nbytes
            members[-1].append(i)
        else:
            starts.append(offset)
            ends.append(offset + nbytes)
            members.append([i])
    return list(zip(starts, ends, members, strict=True))
