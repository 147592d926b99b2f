"""``open_store``: shard-aligned dask chunks, the same values as zarr-python, URLs, unfinished
stores, and the shard reader's requests (counted through a wrapping store)."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.abc.store import ByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore, WrapperStore

import ingest
from ingest.errors import StoreError
from ingest.read.reading import IncompleteStoreWarning, ShardedBands, open_store
from ingest.store import zarrstore as store_module

from ..conftest import WrittenStore

BANDS = ("bands_10m", "bands_20m", "bands_60m")
SMALL = ("labels", "labels19", "cloud_and_shadow", "seasonal_snow")


class CountingStore(WrapperStore[Any]):
    """A read-only store that records every read: (key, byte range or None)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, ByteRequest | None]] = []

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        self.reads.append((key, byte_range))
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        self.reads.extend(key_ranges)
        return await self._store.get_partial_values(prototype, key_ranges)

    def band_reads(self) -> list[tuple[str, ByteRequest | None]]:
        return [(k, r) for k, r in self.reads if k.startswith("bands_") and "/c/" in k]


def consolidate(path: Path) -> None:
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 spec yet (the writer does this too)
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(path)


def counting(path: Path) -> CountingStore:
    return CountingStore(LocalStore(path, read_only=True))


def test_band_chunks_are_the_shards_and_small_arrays_one_chunk(small_shards: Path) -> None:
    ds = open_store(small_shards)
    assert ds.sizes["sample"] == 60
    for name in BANDS:
        assert ds[name].chunks is not None and ds[name].chunks[0] == (16, 16, 16, 12)
        assert ds[name].encoding["shards"][0] == 16 and ds[name].dtype == np.uint16
    for name in (*SMALL, "patch_id", "time", "epsg", "x_ul", "y_ul"):
        assert ds[name].chunks is not None and ds[name].chunks[0] == (60,), name
    assert ds["band_10m"].values.tolist() == ["B02", "B03", "B04", "B08"]
    assert ds.attrs["complete"] is True


@pytest.mark.parametrize("fixture", ["real_store", "small_shards"])
def test_every_value_matches_zarr_python(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    ds = open_store(path)
    group = zarr.open_group(path, mode="r")
    for name in BANDS:
        expected = np.asarray(group[name][...])
        assert np.array_equal(ds[name].values, expected), name
        assert int(ds[name].sum()) == int(expected.sum(dtype=np.int64))
    for name in (*SMALL, "epsg", "x_ul", "y_ul"):
        assert np.array_equal(ds[name].values, np.asarray(group[name][...])), name
    assert ds["patch_id"].values.tolist() == np.asarray(group["patch_id"][:]).tolist()


def test_indexing_matches_numpy(small_shards: Path) -> None:
    ds = open_store(small_shards)
    full = np.asarray(zarr.open_array(small_shards, path="bands_20m", mode="r")[...])
    picks = [59, 3, 17, 17, 40, 0]  # unsorted, repeated, across all four shards
    bands = ds["bands_20m"]
    assert np.array_equal(bands.isel(sample=picks).values, full[picks])
    assert np.array_equal(bands.isel(sample=5, band_20m=[4, 1]).values, full[5][[4, 1]])
    assert np.array_equal(bands[20:35, 2, 10:13, ::7].values, full[20:35, 2, 10:13, ::7])
    assert np.array_equal(bands.isel(sample=-1).values, full[-1])


def test_path_url_and_store_objects_give_the_same_dataset(real_store: Path) -> None:
    by_path = open_store(real_store)
    for other in (
        open_store(str(real_store)),
        open_store(real_store.as_uri()),  # file://… through fsspec
        open_store(real_store.as_uri(), storage_options={"auto_mkdir": False}),
        open_store(LocalStore(real_store, read_only=True)),
    ):
        xr.testing.assert_identical(by_path.compute(), other.compute())


def test_not_a_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing\.zarr: not a Zarr v3 store"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="folder: not a Zarr v3 store"):
        open_store(tmp_path / "folder")


def test_an_incomplete_store_warns(real_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(real_store, copy)
    zarr.open_group(copy, mode="r+").attrs["complete"] = (
        False  # as the writer sets it: no reconsolidation
    )
    with pytest.warns(IncompleteStoreWarning, match="not complete"):
        ds = open_store(copy)
    assert ds.sizes["sample"] == 6


def test_a_store_interrupted_before_its_first_shard(tmp_path: Path) -> None:
    """Band arrays pre-sized, nothing written: the arrays read as the fill value (0)."""
    path = tmp_path / "new.zarr"
    store_module.create(
        path, capacity=40, shard=16, dataset="bigearthnet-v1", layout="mlhub", attrs={}
    )
    with pytest.warns(IncompleteStoreWarning):
        ds = open_store(path)
    assert ds["bands_10m"].shape == (40, 4, 120, 120)
    assert ds["bands_10m"].chunks is not None and ds["bands_10m"].chunks[0] == (16, 16, 8)
    assert int(ds["bands_60m"].max()) == 0 and "labels" not in ds


def test_opening_reads_no_band_chunk(small_shards: Path) -> None:
    store = counting(small_shards)
    ds = open_store(store)
    assert store.reads and store.band_reads() == []
    assert ds["bands_10m"].mean().compute() > 0
    # a whole-array reduction reads each shard object exactly once, in one request
    keys = [k for k, r in store.band_reads() if k.startswith("bands_10m/")]
    assert sorted(keys) == [f"bands_10m/c/{s}/0/0/0" for s in range(4)]


def test_one_sample_reads_the_index_and_one_byte_range(small_shards: Path) -> None:
    store = counting(small_shards)
    ds = open_store(store)
    values = ds["bands_10m"].isel(sample=21).values
    reads = store.band_reads()
    assert [k for k, _ in reads] == ["bands_10m/c/1/0/0/0"] * 2
    assert isinstance(reads[0][1], SuffixByteRequest) and reads[0][1].suffix == 16 * 16 + 4
    assert isinstance(reads[1][1], RangeByteRequest)
    assert np.array_equal(values, zarr.open_array(small_shards, path="bands_10m")[21])


def test_a_few_samples_of_a_shard_are_read_by_byte_ranges(small_shards: Path) -> None:
    store = counting(small_shards)
    expected = np.asarray(zarr.open_array(small_shards, path="bands_20m")[...])
    values = open_store(store)["bands_20m"].isel(sample=slice(33, 36)).values
    assert np.array_equal(values, expected[33:36])
    assert [type(r) for _, r in store.band_reads()] == [SuffixByteRequest, RangeByteRequest]
    # adjacent samples share one request: 33-35 and 40 are two
    array = zarr.open_array(store, path="bands_20m", mode="r")
    store.reads.clear()
    picked = ShardedBands(array).samples(np.array([40, 33, 34, 35]))
    assert np.array_equal(picked, expected[[40, 33, 34, 35]])
    assert [type(r) for _, r in store.band_reads()] == [SuffixByteRequest] + [RangeByteRequest] * 2


def test_a_corrupt_shard_index_is_a_store_error(real_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(real_store, copy)
    shard = copy / "bands_60m" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index, before its CRC32C
    shard.write_bytes(bytes(data))
    ds = open_store(copy)
    with pytest.raises(StoreError, match="checksum mismatch"):
        ds["bands_60m"].load()
    assert np.array_equal(ds["bands_10m"].values, open_store(real_store)["bands_10m"].values)


def test_another_layout_is_read_by_xarray(real_store: Path, tmp_path: Path) -> None:
    """An unsharded band array (not the writer's layout): chunks follow its chunks, same values."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(real_store, copy)
    group = zarr.open_group(copy, mode="r+")
    original = group["bands_20m"]
    assert isinstance(original, zarr.Array)
    values, attrs = np.asarray(original[...]), dict(original.attrs)
    del group["bands_20m"]
    plain = group.create_array(
        "bands_20m", shape=values.shape, chunks=(4, 6, 60, 60), dtype="uint16",
        dimension_names=["sample", "band_20m", "y_20m", "x_20m"], attributes=attrs,
    )  # fmt: skip
    plain[...] = values
    consolidate(copy)
    ds = open_store(copy)
    assert ds["bands_20m"].chunks is not None and ds["bands_20m"].chunks[0] == (4, 2)
    assert np.array_equal(ds["bands_20m"].values, values)


def test_the_dataset_pickles_for_distributed_workers(small_shards: Path) -> None:
    ds = open_store(small_shards)
    again = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(again["bands_60m"].values, ds["bands_60m"].values)


def test_ingest_exports_open_store_lazily() -> None:
    assert ingest.open_store is open_store and "open_store" in ingest.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ingest.nope  # noqa: B018
    code = "import sys, ingest; print('xarray' in sys.modules, 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- contract v2: bands_s1 (float32) and reference_map (no band dimension) ----------------------


def test_a_v2_store_opens_with_s1_and_maps_chunked_by_shards(v2_store: WrittenStore) -> None:
    store = counting(v2_store.path)
    ds = open_store(store)
    pixel_reads = [k for k, _ in store.reads if k.startswith(("bands_", "reference_map/c"))]
    assert store.reads and pixel_reads == []  # no pixels read to open
    assert ds["bands_s1"].dims == ("sample", "band_s1", "y_10m", "x_10m")
    assert ds["reference_map"].dims == ("sample", "y_10m", "x_10m")
    for name, values in v2_store.pixels.items():
        variable = ds[name]
        assert variable.chunks is not None and variable.chunks[0] == (4, 4, 2), name
        assert variable.dtype == values.dtype, name  # float32 stays float32: no fill masking
        assert np.array_equal(variable.values, values), name
    assert ds["band_s1"].values.tolist() == ["VV", "VH"]
    assert "labels" not in ds and "label" not in ds.dims
    assert ds["s1_patch_id"].values.tolist() == v2_store.table.optional["s1_patch_id"].tolist()
    # each shard of each array was one request, by the shard reader
    reads = sorted(k for k, _ in store.reads if k.startswith(("bands_s1/c", "reference_map/c")))
    assert reads == [f"bands_s1/c/{s}/0/0/0" for s in range(3)] + [
        f"reference_map/c/{s}/0/0" for s in range(3)
    ]


def test_the_shard_reader_serves_float32_and_3d_arrays(v2_store: WrittenStore) -> None:
    for name in ("bands_s1", "reference_map"):
        array = zarr.open_array(v2_store.path, path=name, mode="r")
        reader = ShardedBands(array)
        assert reader.dtype == v2_store.pixels[name].dtype
        picks = np.array([9, 0, 5, 5, 3])
        assert np.array_equal(reader.samples(picks), v2_store.pixels[name][picks]), name
    ds = open_store(v2_store.path)
    expected = v2_store.pixels["reference_map"]
    assert np.array_equal(ds["reference_map"][6, 10:20, ::9].values, expected[6, 10:20, ::9])
    s1 = v2_store.pixels["bands_s1"]
    assert float(ds["bands_s1"].sel(band_s1="VH").mean()) == pytest.approx(
        float(s1[:, 1].mean(dtype=np.float64)), rel=1e-5
    )


def test_unwritten_s1_and_map_shards_read_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "new.zarr"
    store_module.create(path, capacity=6, shard=4, dataset="bigearthnet-v2", layout="reben-v2", s1=True, reference_maps=True, attrs={})  # fmt: skip
    with pytest.warns(IncompleteStoreWarning):
        ds = open_store(path)
    assert ds["bands_s1"].chunks is not None and ds["bands_s1"].chunks[0] == (4, 2)
    assert ds["bands_s1"].dtype == np.float32 and float(abs(ds["bands_s1"]).max()) == 0.0
    assert ds["reference_map"].shape == (6, 120, 120) and int(ds["reference_map"].max()) == 0
