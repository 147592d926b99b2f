"""The store: creating, writing and finishing the analysis-ready Zarr store of the contract
(``schemas/store-contract-v2.json``, from ``shared/design/store-contract.md``).

Life of a store: :func:`create` pre-sizes the per-pixel arrays (the three S2 band arrays, and
``bands_s1`` / ``reference_map`` when asked) for the largest possible number of samples and marks
the store incomplete; workers call :func:`write_shard` with batches of exactly one shard (never two
writers on one shard: zarr-python #3682), and each finished shard leaves a journal entry (a child
group of ``_ingest`` holding its patch ids) so that a resumed run skips it; :func:`finish` trims
the per-pixel arrays to the samples written, writes the small label, flag and coordinate arrays,
drops the journal, consolidates the metadata and sets ``complete`` last.
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
from zarr.core.sync import sync
from zarr.errors import ZarrUserWarning

from .. import schemas
from ..errors import StoreError, UsageError
from .location import StoreLocation, Where
from .shards import write_block, write_chunks
from .staging import Staged

#: Chunk length along ``sample`` of the small, unsharded arrays (contract: >= 65,536).
LARGE_CHUNK = 65536
#: Pixels compress with zstd after bit-shuffling the words (see the README for the figures); the
#: same codec serves the uint16 bands and maps and the float32 S1 backscatter.
BAND_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
SAMPLE_COORDS = ("patch_id", "time", "epsg", "x_ul", "y_ul")
#: The resume journal: a zarr group (so readers and zarr itself see a valid hierarchy), removed
#: when the store is finished.
JOURNAL = "_ingest"
CONTRACT: dict[str, Any] = schemas.store_contract(2)
CONTRACT_VERSION: int = CONTRACT["contract_version"]
TIME_ATTRS = CONTRACT["coordinates"]["time"]["attributes"]
#: The ``dataset`` root attribute of each release.
DATASET_V1 = "bigearthnet-v1"
DATASET_V2 = "bigearthnet-v2"
#: dataset -> the distributions (``layout`` root attribute) it may come from.
LAYOUTS: dict[str, tuple[str, ...]] = {
    name: tuple(spec["layouts"]) for name, spec in CONTRACT["datasets"].items()
}
#: The optional string coordinates :attr:`SampleTable.optional` may carry.
OPTIONAL_COORDS: tuple[str, ...] = ("patch_id_v1", *CONTRACT["optional_coordinates"])


@dataclass(frozen=True)
class PixelArray:
    """One per-pixel array of the contract (layout ``sharded``): ``(sample, *inner)``."""

    name: str
    dims: tuple[str, ...]
    inner: tuple[int, ...]
    """The shape of one sample."""
    dtype: str
    band_dim: str | None
    """The dimension naming its bands (``band_10m`` …), None for ``reference_map``."""


def _pixel_arrays() -> dict[str, PixelArray]:
    arrays = {}
    for name, spec in CONTRACT["data_variables"].items():
        if spec["layout"] != "sharded":
            continue
        dims = tuple(spec["dims"])
        band = next((d for d in dims if d in CONTRACT["dimension_coordinates"]), None)
        inner = tuple(int(CONTRACT["dimensions"][d]) for d in dims[1:])
        arrays[name] = PixelArray(name, dims, inner, spec["dtype"], band)
    return arrays


#: The per-pixel arrays by name, in contract order: bands_10m, bands_20m, bands_60m, bands_s1,
#: reference_map (all of them 10 m pixels except the 20 m and 60 m S2 bands).
PIXEL_ARRAYS: dict[str, PixelArray] = _pixel_arrays()
S2_ARRAYS = ("bands_10m", "bands_20m", "bands_60m")
_GSD = {"10m": 10.0, "20m": 20.0, "60m": 60.0}


@dataclass(frozen=True)
class SampleTable:
    """The per-sample small arrays, in sample order (the S2 archive's)."""

    patch_id: list[str]
    time: np.ndarray
    """int64 seconds since the Unix epoch."""
    labels19: np.ndarray
    """(n, 19) bool: v1 derived from ``labels`` by the official mapping, v2 the metadata's."""
    cloud_and_shadow: np.ndarray
    seasonal_snow: np.ndarray
    labels: np.ndarray | None = None
    """(n, 43) bool for a ``bigearthnet-v1`` store; None for ``bigearthnet-v2`` (19 classes)."""
    epsg: np.ndarray | None = None
    """int32; None for a labels-only store, like ``x_ul`` and ``y_ul``."""
    x_ul: np.ndarray | None = None
    y_ul: np.ndarray | None = None
    optional: dict[str, np.ndarray] = field(default_factory=dict)
    """The contract's optional string coordinates when known: ``split``, ``country``, ``season``
    (v1), ``patch_id_v1`` (v2: required there), ``s1_patch_id`` (with ``bands_s1``)."""

    def __len__(self) -> int:
        return len(self.patch_id)


def create(
    store_at: Where,
    *,
    capacity: int,
    shard: int,
    dataset: str,
    layout: str,
    attrs: dict[str, Any],
    labels_only: bool = False,
    s1: bool = False,
    reference_maps: bool = False,
) -> None:
    """Create the group, the dimension coordinates and the pre-sized per-pixel arrays.

    ``dataset`` (``bigearthnet-v1`` / ``bigearthnet-v2``) and ``layout`` (its distribution:
    ``mlhub``, ``zenodo-v1``, ``reben-v2``) go into the root attributes with ``contract_version``
    2, over anything ``attrs`` says. The ``label`` dimension (43 classes) exists for v1 only.
    The S2 band arrays are created unless ``labels_only``; ``bands_s1`` with ``s1`` and
    ``reference_map`` with ``reference_maps`` (v2 only), all with the same shard length, fill 0.
    """
    location = StoreLocation.of(store_at)
    if shard < 1:
        raise UsageError(f"--shard-size must be >= 1, got {shard}")
    if dataset not in LAYOUTS:
        raise UsageError(f"unknown dataset {dataset!r}: one of {', '.join(LAYOUTS)}")
    if layout not in LAYOUTS[dataset]:
        raise UsageError(
            f"layout {layout!r} is not a distribution of {dataset} ({', '.join(LAYOUTS[dataset])})"
        )
    if reference_maps and dataset != DATASET_V2:
        raise UsageError(f"reference maps belong to {DATASET_V2}, not {dataset}")
    if labels_only and (s1 or reference_maps):
        raise UsageError("a labels-only store has no per-pixel arrays (S1, reference maps)")
    try:
        group = location.open_group(mode="w-", zarr_format=3)
    except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
        raise StoreError(f"{location}: cannot create store ({exc})") from None
    group.attrs.update(
        {
            **attrs,
            "contract_version": CONTRACT_VERSION,
            "dataset": dataset,
            "layout": layout,
            "complete": False,
        }
    )
    group.create_group(JOURNAL)
    if dataset == DATASET_V1:
        _write_names(group, "label", tuple(CONTRACT["dimension_coordinates"]["label"]))
    _write_names(group, "label19", tuple(CONTRACT["dimension_coordinates"]["label19"]))
    if labels_only:
        return
    wanted = [
        *S2_ARRAYS,
        *(["bands_s1"] if s1 else []),
        *(["reference_map"] if reference_maps else []),
    ]
    coords = " ".join(SAMPLE_COORDS)
    for name in wanted:
        pixels = PIXEL_ARRAYS[name]
        if pixels.band_dim is not None:
            _write_names(
                group, pixels.band_dim, tuple(CONTRACT["dimension_coordinates"][pixels.band_dim])
            )
        group.create_array(
            name,
            shape=(capacity, *pixels.inner),
            chunks=(1, *pixels.inner),
            shards=(shard, *pixels.inner),
            dtype=pixels.dtype,
            fill_value=0,
            compressors=BAND_CODEC,
            dimension_names=list(pixels.dims),
            attributes={"coordinates": coords, "gsd": _GSD[pixels.dims[-1].split("_")[1]]},
        )


def _write_names(group: zarr.Group, dim: str, names: tuple[str, ...]) -> None:
    array = group.create_array(dim, shape=(len(names),), dtype=str, dimension_names=[dim])
    array[:] = np.array(names, dtype=object)


def pixel_array(location: StoreLocation, name: str) -> zarr.Array[Any]:
    """The per-pixel array ``name`` of the store, opened for writing (once per process)."""
    return _band_array(location, name)


@cache
def _band_array(location: StoreLocation, name: str) -> zarr.Array[Any]:
    """Each worker process opens each per-pixel array once."""
    return zarr.open_array(
        location.zarr_url, path=name, mode="r+", storage_options=location.zarr_options
    )


@dataclass(frozen=True)
class ShardRecord:
    """What the journal keeps of one written shard: which patches it holds, in order."""

    index: int
    patch_ids: tuple[str, ...]


def write_shard(
    store_at: Where,
    start: int,
    bands: dict[str, np.ndarray],
    record: ShardRecord,
    staged: Staged | None = None,
    *,
    journal: bool = True,
) -> int:
    """Write one batch at sample ``start``, then its journal entry (unless ``journal`` is
    False: the shard's partner arrays are written later, with the entry).

    ``bands`` maps per-pixel array names to blocks of k samples, each of its array's dtype and
    sample shape: ``bands_10m`` (k, 4, 120, 120) uint16 …, ``bands_s1`` (k, 2, 120, 120)
    float32, ``reference_map`` (k, 120, 120) uint16. ``start`` must be a shard boundary and k at
    most one shard, so that a batch is exactly one shard and no two writers ever touch the same
    shard. The journal entry is written after every shard file of the batch (each written whole
    by an atomic rename), so an entry means a finished shard. ``staged`` gives the partner
    arrays' shards (``bands_s1``, ``reference_map``) as their samples' encoded chunks
    (:mod:`ingest.store.staging`). Returns k.
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
        if block.dtype != array.dtype or block.shape[1:] != array.shape[1:]:
            raise StoreError(
                f"{location}/{name}: batch of {block.dtype} {block.shape[1:]} per sample, the "
                f"array holds {array.dtype} {array.shape[1:]}"
            )
        write_block(array, start, block)
    for name, chunks in (staged or {}).items():
        if len(chunks.sizes) != len(record.patch_ids):
            raise StoreError(f"{location}/{name}: {len(chunks.sizes)} staged chunks for a shard "
                             f"of {len(record.patch_ids)} samples")  # fmt: skip
        if chunks.raw is not None:
            write_block(_band_array(location, name), start, chunks.block())
        else:
            write_chunks(_band_array(location, name), start, chunks.parts())
    if journal:
        entries = location.open_group(path=JOURNAL, mode="r+")
        entries.create_group(f"shard-{record.index:07d}", attributes=asdict(record), overwrite=True)
    return k


def drop_shards(store_at: Where, names: tuple[str, ...], shards: list[int]) -> None:
    """Delete the shard objects ``shards`` of the per-pixel arrays ``names`` (written by a pass
    that was started again and wrote fewer samples: :func:`finish` trims metadata only)."""
    location = StoreLocation.of(store_at)
    for name in names:
        array = _band_array(location, name)
        for index in shards:
            key = array.metadata.encode_chunk_key((index, *([0] * (array.ndim - 1))))
            sync(array.store.delete(f"{array.path}/{key}"))


def journal(store_at: Where) -> dict[int, ShardRecord]:
    """The shards a previous run finished, by shard index."""
    location = StoreLocation.of(store_at)
    try:
        group = location.open_group(path=JOURNAL, mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return {}
    records = {}
    with warnings.catch_warnings():
        # An entry whose zarr.json is not there yet (a run writing it, or killed between the
        # entry's folder and its document) is no finished shard: zarr warns and leaves it out.
        warnings.filterwarnings("ignore", "Object at .* is not recognized", ZarrUserWarning)
        members = list(group.members())
    for _, child in members:
        index, patch_ids = child.attrs.get("index"), child.attrs.get("patch_ids")
        if isinstance(index, int) and isinstance(patch_ids, list):
            records[index] = ShardRecord(index, tuple(str(p) for p in patch_ids))
    return records


def finish(store_at: Where, table: SampleTable, attrs: dict[str, Any]) -> None:
    """Trim, write the small arrays and the final attributes, consolidate (not yet complete).

    Every per-pixel array present is trimmed to ``len(table)`` samples. ``table.labels`` must be
    given exactly when the store has the 43-class ``label`` dimension (``bigearthnet-v1``), and
    ``table.optional`` may hold only the contract's optional coordinates, ``s1_patch_id`` exactly
    when the store has ``bands_s1``; ``attrs`` may repeat but not change ``contract_version``,
    ``dataset`` and ``layout``. Anything else is a :class:`StoreError` before any write.
    """
    location = StoreLocation.of(store_at)
    group = location.open_group(mode="r+")
    n = len(table)
    _check_table(location, group, table)
    for key in ("contract_version", "dataset", "layout"):
        if key in attrs and key in group.attrs and attrs[key] != group.attrs[key]:
            raise StoreError(
                f"{location}: {key} is {group.attrs[key]!r} since create, not {attrs[key]!r}"
            )
    for name in PIXEL_ARRAYS:
        if name in group:
            array = group[name]
            assert isinstance(array, zarr.Array)
            # Only metadata changes: no shard past sample n was ever written (a resumed run
            # checks its journal against the input). zarr's default would first try to delete
            # every shard key of the old shape — 274,744 of them for reBEN's 549,488 pre-sized
            # samples at S = 2, minutes of work for nothing.
            sync(array._async_array.resize((n, *array.shape[1:]), delete_outside_chunks=False))
    labels_only = table.epsg is None
    names = [*(SAMPLE_COORDS if not labels_only else SAMPLE_COORDS[:2]), *sorted(table.optional)]
    coords = " ".join(names)
    small: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]] = {}
    if table.labels is not None:
        small["labels"] = (table.labels, ("sample", "label"), {"coordinates": coords})
    small |= {
        "labels19": (table.labels19, ("sample", "label19"), {"coordinates": coords}),
        "cloud_and_shadow": (table.cloud_and_shadow, ("sample",), {"coordinates": coords}),
        "seasonal_snow": (table.seasonal_snow, ("sample",), {"coordinates": coords}),
        "patch_id": (np.array(table.patch_id, dtype=object), ("sample",), {}),
        "time": (table.time.astype(np.int64), ("sample",), dict(TIME_ATTRS)),
    }
    if table.epsg is not None and table.x_ul is not None and table.y_ul is not None:
        small["epsg"] = (table.epsg.astype(np.int32), ("sample",), {})
        small["x_ul"] = (table.x_ul.astype(np.float64), ("sample",), {})
        small["y_ul"] = (table.y_ul.astype(np.float64), ("sample",), {})
    for name, values in sorted(table.optional.items()):
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


def _check_table(location: StoreLocation, group: zarr.Group, table: SampleTable) -> None:
    """The table fits the store ``create`` made: see :func:`finish`."""
    n = len(table)
    if (table.labels is None) == ("label" in group):
        wanted = "needs" if table.labels is None else "has no place for"
        raise StoreError(f"{location}: this store {wanted} the 43-class labels (dimension label)")
    unknown = sorted(set(table.optional) - set(OPTIONAL_COORDS))
    if unknown:
        raise StoreError(
            f"{location}: {unknown[0]!r} is not an optional coordinate of the contract "
            f"({', '.join(OPTIONAL_COORDS)})"
        )
    if ("s1_patch_id" in table.optional) != ("bands_s1" in group):
        raise StoreError(
            f"{location}: s1_patch_id must be given exactly when the store has bands_s1"
        )
    arrays: dict[str, Any] = {"labels": table.labels, "labels19": table.labels19,
                              "cloud_and_shadow": table.cloud_and_shadow,
                              "seasonal_snow": table.seasonal_snow, "time": table.time,
                              "epsg": table.epsg, "x_ul": table.x_ul, "y_ul": table.y_ul,
                              **table.optional}  # fmt: skip
    for name, values in arrays.items():
        if values is not None and len(values) != n:
            raise StoreError(f"{location}: {name} has {len(values)} values for {n} samples")


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
