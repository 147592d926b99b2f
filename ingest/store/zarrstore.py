"""The store: creating, writing and finishing the analysis-ready Zarr store of the contract
(``schemas/store-contract-v1.json``, from ``shared/design/store-contract.md``).

Life of a store: :func:`create` pre-sizes the three band arrays for the largest possible number of
samples and marks the store incomplete; workers call :func:`write_shard` with batches of exactly one
shard (never two writers on one shard: zarr-python #3682), and each finished shard leaves a journal
entry (a child group of ``_ingest`` holding its patch ids) so that a resumed run skips it;
:func:`finish` trims the band arrays to the samples written, writes the small label, flag and
coordinate arrays, drops the journal, consolidates the metadata and sets ``complete`` last.
Arrays are written with zarr-python directly, following xarray's conventions
(``dimension_names``, a ``coordinates`` attribute, CF time units), so ``xr.open_zarr`` reads the
store as a Dataset without the ingest ever touching xarray on its hot path.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .. import schemas
from ..errors import StoreError, UsageError
from ..nomenclature import BAND_GROUPS, CLASSES_19, CLASSES_43
from .location import StoreLocation, Where
from .shards import write_block

#: Chunk length along ``sample`` of the small, unsharded arrays (contract: >= 65,536).
LARGE_CHUNK = 65536
#: Pixels compress with zstd after bit-shuffling the uint16 words (see the README for the figures).
BAND_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
SAMPLE_COORDS = ("patch_id", "time", "epsg", "x_ul", "y_ul")
#: The resume journal: a zarr group (so readers and zarr itself see a valid hierarchy), removed
#: when the store is finished.
JOURNAL = "_ingest"
TIME_ATTRS = schemas.load(schemas.STORE_CONTRACT)["coordinates"]["time"]["attributes"]


@dataclass(frozen=True)
class SampleTable:
    """The per-sample small arrays, in sample order (the source archive's)."""

    patch_id: list[str]
    time: np.ndarray
    """int64 seconds since the Unix epoch."""
    labels: np.ndarray | None
    """(n, 43) in v1; None in v2 (19 classes only)."""
    labels19: np.ndarray
    cloud_and_shadow: np.ndarray
    seasonal_snow: np.ndarray
    epsg: np.ndarray | None = None
    """int32; None for a labels-only store, like ``x_ul`` and ``y_ul``."""
    x_ul: np.ndarray | None = None
    y_ul: np.ndarray | None = None
    optional: dict[str, np.ndarray] = field(default_factory=dict)
    """The contract's optional coordinates (``country``, ``season``, ``split``) when known."""

    def __len__(self) -> int:
        return len(self.patch_id)


def prepare_path(store_at: Where, *, overwrite: bool) -> None:
    """Refuse an existing store unless ``overwrite``; then delete it only if it is a store."""
    location = StoreLocation.of(store_at)
    if not location.exists():
        return
    if not overwrite:
        raise UsageError(f"{location} already exists (use --overwrite to replace it)")
    if not location.exists("zarr.json"):
        raise UsageError(f"{location} exists and is not a Zarr store: refusing to delete it")
    location.delete()


def create(
    store_at: Where, *, capacity: int, shard: int, labels_only: bool, attrs: dict[str, Any]
) -> None:
    """Create the group, the dimension coordinates and the pre-sized band arrays."""
    location = StoreLocation.of(store_at)
    if shard < 1:
        raise UsageError(f"--shard-size must be >= 1, got {shard}")
    try:
        group = location.open_group(mode="w-", zarr_format=3)
    except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
        raise StoreError(f"{location}: cannot create store ({exc})") from None
    group.attrs.update({**attrs, "complete": False})
    group.create_group(JOURNAL)
    coords = " ".join(SAMPLE_COORDS if not labels_only else SAMPLE_COORDS[:2])
    _write_names(group, "label", CLASSES_43)
    _write_names(group, "label19", CLASSES_19)
    if labels_only:
        return
    for g in BAND_GROUPS:
        _write_names(group, f"band_{g.resolution}", g.bands)
        inner = (1, len(g.bands), g.size, g.size)
        group.create_array(
            g.array_name,
            shape=(capacity, *inner[1:]),
            chunks=inner,
            shards=(shard, *inner[1:]),
            dtype="uint16",
            fill_value=0,
            compressors=BAND_CODEC,
            dimension_names=list(g.dims),
            attributes={"coordinates": coords, "gsd": g.gsd},
        )


def _write_names(group: zarr.Group, dim: str, names: tuple[str, ...]) -> None:
    array = group.create_array(dim, shape=(len(names),), dtype=str, dimension_names=[dim])
    array[:] = np.array(names, dtype=object)


@cache
def _band_array(location: StoreLocation, name: str) -> zarr.Array[Any]:
    """Each worker process opens each band array once."""
    return zarr.open_array(
        location.zarr_url, path=name, mode="r+", storage_options=location.zarr_options
    )


@dataclass(frozen=True)
class ShardRecord:
    """What the journal keeps of one written shard: which patches it holds, in order."""

    index: int
    patch_ids: tuple[str, ...]


def write_shard(
    store_at: Where, start: int, bands: dict[str, np.ndarray], record: ShardRecord
) -> int:
    """Write one batch (``bands``: array name → (k, bands, y, x) uint16) at sample ``start``,
    then its journal entry.

    ``start`` must be a shard boundary and k at most one shard, so that a batch is exactly one shard
    and no two writers ever touch the same shard. The journal entry is written after all three
    shard files (each written whole by an atomic rename), so an entry means a finished shard.
    Returns k.
    """
    location = StoreLocation.of(store_at)
    k = 0
    for name, block in bands.items():
        array = _band_array(location, name)
        shard = array.shards[0] if array.shards else array.chunks[0]
        k = block.shape[0]
        if start % shard or k > shard or len(record.patch_ids) != k:
            raise StoreError(
                f"{location}/{name}: batch [{start}, {start + k}) is not one whole shard"
            )
        write_block(array, start, block)
    journal = location.open_group(path=JOURNAL, mode="r+")
    journal.create_group(f"shard-{record.index:07d}", attributes=asdict(record), overwrite=True)
    return k


def journal(store_at: Where) -> dict[int, ShardRecord]:
    """The shards a previous run finished, by shard index."""
    location = StoreLocation.of(store_at)
    try:
        group = location.open_group(path=JOURNAL, mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return {}
    records = {}
    for _, child in group.members():
        index, patch_ids = child.attrs.get("index"), child.attrs.get("patch_ids")
        if isinstance(index, int) and isinstance(patch_ids, list):
            records[index] = ShardRecord(index, tuple(str(p) for p in patch_ids))
    return records


def finish(store_at: Where, table: SampleTable, attrs: dict[str, Any]) -> None:
    """Trim, write the small arrays and the final attributes, consolidate (not yet complete)."""
    location = StoreLocation.of(store_at)
    group = location.open_group(mode="r+")
    n = len(table)
    labels_only = table.epsg is None
    if not labels_only:
        for g in BAND_GROUPS:
            array = group[g.array_name]
            assert isinstance(array, zarr.Array)
            array.resize((n, *array.shape[1:]))
    names = [*(SAMPLE_COORDS if not labels_only else SAMPLE_COORDS[:2]), *sorted(table.optional)]
    coords = " ".join(names)
    small: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]] = {
        "labels19": (table.labels19, ("sample", "label19"), {"coordinates": coords}),
        "cloud_and_shadow": (table.cloud_and_shadow, ("sample",), {"coordinates": coords}),
        "seasonal_snow": (table.seasonal_snow, ("sample",), {"coordinates": coords}),
        "patch_id": (np.array(table.patch_id, dtype=object), ("sample",), {}),
        "time": (table.time.astype(np.int64), ("sample",), dict(TIME_ATTRS)),
    }
    if table.labels is not None:
        small["labels"] = (table.labels, ("sample", "label"), {"coordinates": coords})
    if table.epsg is not None and table.x_ul is not None and table.y_ul is not None:
        small["epsg"] = (table.epsg.astype(np.int32), ("sample",), {})
        small["x_ul"] = (table.x_ul.astype(np.float64), ("sample",), {})
        small["y_ul"] = (table.y_ul.astype(np.float64), ("sample",), {})
    for name, values in table.optional.items():
        small[name] = (np.asarray(values, dtype=object), ("sample",), {})
    for name, (values, dims, attributes) in small.items():
        _write_small(group, name, values, dims, attributes)
    group.attrs.update(attrs)
    if JOURNAL in group:
        del group[JOURNAL]
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet part of the v3 spec; xarray reads it.
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(group.store)


def mark_complete(store_at: Where) -> None:
    """The last write of a run: only after the store passed its checks."""
    location = StoreLocation.of(store_at)
    location.open_group(mode="r+").attrs["complete"] = True


def _write_small(
    group: zarr.Group, name: str, values: np.ndarray, dims: tuple[str, ...], attrs: dict[str, Any]
) -> None:
    chunks = (LARGE_CHUNK, *values.shape[1:])
    dtype: Any = str if values.dtype == object else values.dtype
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=chunks,
        dtype=dtype,
        dimension_names=list(dims),
        attributes=attrs,
        overwrite=True,
    )
    if values.size:
        array[...] = values


def root_attrs(store_at: Where) -> dict[str, Any]:
    """The root attributes of an existing store."""
    location = StoreLocation.of(store_at)
    try:
        return dict(location.open_group(mode="r").attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"{location}: not a Zarr store ({exc})") from None
