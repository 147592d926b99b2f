"""``SampleDataset`` and its epochs: values equal to zarr-python's (and to the original GeoTIFFs
of the real sample), selections equal to ``ds.ben.select``, band subsets and modalities, torch's
DataLoader with 2 worker processes (fork and spawn) seeing every sample exactly once, disjoint
covers by rank, loopback S3, and ``ds.ben.batches`` on the same engine."""

from __future__ import annotations

import io
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import zarr
from torch.utils.data import DataLoader

import ingest
from ingest import SampleDataset
from ingest.errors import UsageError
from ingest.nomenclature import BAND_GROUPS
from ingest.read.epochs import part
from ingest.read.reading import open_store
from ingest.testing.s3 import S3Server

from .conftest import upload

ARRAYS = ("bands_10m", "bands_20m", "bands_60m")


def expected_of(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    names = [n for n, a in group.arrays() if a.ndim >= 3 or n in ("labels", "labels19")]
    out = {n: np.asarray(group[n][...]) for n in names}
    out["patch_id"] = np.array(np.asarray(group["patch_id"][...]).tolist(), dtype=str)
    return out


def assert_sample(sample: dict[str, Any], expected: dict[str, np.ndarray], i: int) -> None:
    assert set(sample) == set(expected)
    for name, values in sample.items():
        if name == "patch_id":
            assert values == expected[name][i]
        else:
            assert values.dtype == expected[name].dtype, name
            assert np.array_equal(values, expected[name][i]), (name, i)


@pytest.mark.parametrize("fixture", ["real_store", "small_shards", "v2_shaped"])
def test_samples_are_the_stores_values(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    data = SampleDataset(path)
    expected = expected_of(path)
    assert len(data) == len(expected["patch_id"])
    for i in range(len(data)):
        assert_sample(data[i], expected, i)
    assert_sample(data[-1], expected, len(data) - 1)
    with pytest.raises(IndexError, match=f"sample {len(data)} out of range"):
        data[len(data)]


def test_v2_keys(v2_shaped: Path) -> None:
    sample = SampleDataset(v2_shaped)[7]
    assert sorted(sample) == [*ARRAYS, "bands_s1", "labels19", "patch_id", "reference_map"]
    assert sample["bands_s1"].dtype == np.float32 and sample["bands_s1"].shape == (2, 120, 120)
    assert sample["reference_map"].shape == (120, 120) and sample["labels19"].shape == (19,)


def test_the_real_samples_are_the_original_geotiffs(
    real_store: Path, real_by_name: dict[str, Any]
) -> None:
    data = SampleDataset(real_store)
    for i in range(len(data)):
        sample = data[i]
        patch = real_by_name[sample["patch_id"]]
        for group in BAND_GROUPS:
            for k, band in enumerate(group.bands):
                with rasterio.open(io.BytesIO(patch.bands[band])) as src:
                    assert np.array_equal(sample[group.array_name][k], src.read(1)), band
        rgb = SampleDataset(real_store, bands=["B04", "B03", "B02"])[i]["bands_10m"]
        for k, band in enumerate(("B04", "B03", "B02")):
            with rasterio.open(io.BytesIO(patch.bands[band])) as src:
                assert np.array_equal(rgb[k], src.read(1))


@pytest.mark.parametrize(
    ("bands", "modalities", "expected"),
    [
        (["B04", "B03", "B02"], None, {"bands_10m": [2, 1, 0]}),
        (["B8A", "B01", "B02"], None, {"bands_10m": [0], "bands_20m": [3], "bands_60m": [0]}),
        (["VH", "B12"], None, {"bands_20m": [5], "bands_s1": [1]}),
        ("B12", ["reference_map", "s2"], {"bands_20m": [5], "reference_map": None}),
        (None, "s1", {"bands_s1": [0, 1]}),
        (None, ["reference_map", "bands_60m"], {"reference_map": None, "bands_60m": [0, 1]}),
        ("VV", ["s1", "s2"], {"bands_s1": [0]}),
    ],
)
def test_band_subsets_and_modalities(
    v2_shaped: Path,
    bands: Any,
    modalities: Any,
    expected: dict[str, list[int] | None],
) -> None:
    data = SampleDataset(v2_shaped, bands=bands, modalities=modalities)
    values = expected_of(v2_shaped)
    for i in (0, 17, 59):
        sample = data[i]
        assert set(sample) == {*expected, "labels19", "patch_id"}
        for name, rows in expected.items():
            want = values[name][i] if rows is None else values[name][i][rows]
            assert np.array_equal(sample[name], want), name
    batch = next(iter(data.batches(8, seed=1)))
    for name, rows in expected.items():
        want = values[name][batch["index"]]
        assert np.array_equal(batch[name], want if rows is None else want[:, rows]), name


def test_unknown_bands_and_modalities(v2_shaped: Path, small_shards: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown band 'B10' \(bands: B02, B03"):
        SampleDataset(v2_shaped, bands=["B04", "B10"])
    with pytest.raises(
        UsageError, match=r"has no bands_s1 .*modalities: bands_10m, bands_20m, bands_60m, s2"
    ):
        SampleDataset(small_shards, modalities="s1")
    with pytest.raises(UsageError, match="unknown band 'VV'"):
        SampleDataset(v2_shaped, modalities="s2", bands="VV")


def test_selections_are_ds_ben_select(small_shards: Path, real_store: Path) -> None:
    for path, options in (
        (small_shards, {"seasonal_snow": False, "cloud_and_shadow": False}),
        (small_shards, {"classes": ["Pastures", "Mixed forest"]}),
        (real_store, {"split": "train"}),
        (real_store, {"split": ["test", "validation"], "classes": "Non-irrigated arable land"}),
        (real_store, {"classes": "Inland waters", "nineteen": True}),
    ):
        data = SampleDataset(path, **options)
        chosen = open_store(path).ben.select(**options)
        ids = chosen["patch_id"].values.tolist()
        assert 0 < len(data) == len(ids) < (60 if path == small_shards else 6), options
        assert [data[i]["patch_id"] for i in range(len(data))] == ids
        assert np.array_equal(data[len(data) - 1]["labels"], chosen["labels"].values[-1])
        assert np.array_equal(data[0]["bands_60m"], chosen["bands_60m"].values[0])
        seen = [p for b in data.batches(3, seed=4) for p in b["patch_id"].tolist()]
        assert sorted(seen) == sorted(ids)


def test_transform(small_shards: Path) -> None:
    data = SampleDataset(small_shards, bands="B02", transform=scale)
    assert data[3] == pytest.approx(
        float(zarr.open_array(small_shards, path="bands_10m")[3, 0].mean()) / 1e4
    )


def scale(sample: dict[str, Any]) -> float:
    """A module-level transform (spawned workers unpickle it by name)."""
    return float(sample["bands_10m"].mean()) / 1e4


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_dataloader_with_two_workers_sees_every_sample_once(
    small_shards: Path, context: str
) -> None:
    data = SampleDataset(small_shards)
    data[5]  # the parent has open files and cached indexes: the workers must not share them
    expected = expected_of(small_shards)
    loader = DataLoader(data, batch_size=8, shuffle=True, num_workers=2,
                        multiprocessing_context=context)  # fmt: skip
    ids: list[str] = []
    for batch in loader:
        assert isinstance(batch["bands_10m"], torch.Tensor)
        rows = [int(np.flatnonzero(expected["patch_id"] == p)[0]) for p in batch["patch_id"]]
        for name in (*ARRAYS, "labels", "labels19"):
            assert np.array_equal(batch[name].numpy(), expected[name][rows]), name
        ids.extend(batch["patch_id"])
    assert sorted(ids) == sorted(expected["patch_id"].tolist())


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_dataloader_over_an_epoch_splits_it_between_workers(
    small_shards: Path, context: str
) -> None:
    data = SampleDataset(small_shards, modalities=["bands_20m"])
    epoch = data.batches(7, seed=3)
    expected = expected_of(small_shards)
    loader = DataLoader(epoch, batch_size=None, num_workers=2, multiprocessing_context=context)
    assert len(loader) == len(epoch) == 9
    batches = list(loader)
    assert len(batches) == 9 and sorted(len(b["index"]) for b in batches) == [4] + [7] * 8
    index = torch.cat([b["index"] for b in batches]).numpy()
    assert sorted(index.tolist()) == list(range(60))
    for batch in batches:
        assert np.array_equal(batch["bands_20m"].numpy(), expected["bands_20m"][batch["index"]])
        assert batch["patch_id"].tolist() == expected["patch_id"][batch["index"]].tolist()
    # the same samples in the same batches as one process, only interleaved between workers
    alone = sorted(tuple(b["index"].tolist()) for b in epoch)
    assert sorted(tuple(b["index"].tolist()) for b in batches) == alone


def test_ranks_get_disjoint_covers(small_shards: Path) -> None:
    data = SampleDataset(small_shards, modalities="bands_60m")
    for world in (1, 2, 3, 4):
        parts = [[int(i) for b in data.batches(5, seed=9, rank=r, world_size=world) for i in b["index"]]
                 for r in range(world)]  # fmt: skip
        assert sorted(i for p in parts for i in p) == list(range(60)), world
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        dropped = [len(data.batches(5, seed=9, rank=r, world_size=world, drop_last=True))
                   for r in range(world)]  # fmt: skip
        assert len(set(dropped)) == 1 and dropped[0] == 60 // world // 5
    assert [b["index"].tolist() for b in data.batches(5, seed=9)] == [
        b["index"].tolist() for b in data.batches(5, seed=9)
    ]
    assert [b["index"].tolist() for b in data.batches(5, seed=9)] != [
        b["index"].tolist() for b in data.batches(5, seed=8)
    ]
    with pytest.raises(ValueError, match="rank 2 of 2"):
        data.batches(5, rank=2, world_size=2)


def test_part_cuts_whole_batches_for_workers() -> None:
    assert part(60, 7) == (0, 60, 9)
    assert [part(60, 7, worker=w, workers=2)[:2] for w in (0, 1)] == [(0, 28), (28, 60)]
    assert [part(10, 2, rank=r, world_size=3) for r in range(3)] == [(0, 3, 2), (3, 6, 2), (6, 10, 2)]  # fmt: skip
    assert [part(10, 2, rank=r, world_size=3, drop_last=True) for r in range(3)] == [
        (0, 2, 1), (2, 4, 1), (4, 6, 1)
    ]  # fmt: skip


def test_epochs_are_shard_aware(small_shards: Path) -> None:
    data = SampleDataset(small_shards, modalities="bands_60m")
    batches = list(data.batches(4, seed=5, window=2))
    order = np.concatenate([b["index"] for b in batches])
    assert sorted(order.tolist()) == list(range(60)) and order.tolist() != list(range(60))
    # shards of 16 (the last 12), windows of two shards: the order is two runs, each exactly the
    # samples of two whole shards
    shards = order // 16
    splits = [k for k in range(1, 60) if len(set(shards[:k].tolist())) == 2
              and k == sum(min(16, 60 - 16 * s) for s in set(shards[:k].tolist()))]  # fmt: skip
    assert len(splits) == 1
    assert len(set(shards[splits[0] :].tolist())) == 2
    plain = np.concatenate([b["index"] for b in data.batches(16, shuffle=False)])
    assert plain.tolist() == list(range(60))


def test_epoch_batches_are_the_stores_values_and_reuse_only_released_arrays(
    v2_shaped: Path,
) -> None:
    data = SampleDataset(v2_shaped)
    expected = expected_of(v2_shaped)
    names = [n for n in expected if n != "patch_id"]

    def check(batch: dict[str, Any]) -> None:
        for name in names:
            assert np.array_equal(batch[name], expected[name][batch["index"]]), name
        assert batch["patch_id"].tolist() == expected["patch_id"][batch["index"]].tolist()

    kept = list(data.batches(4, seed=3))  # every batch kept: all distinct memory, all right
    for batch in kept:
        check(batch)
    pointers = [b["bands_10m"].ctypes.data for b in kept]
    assert len(set(pointers)) == len(pointers)
    # batches let go as the loop moves on: their arrays come back (after the prefetched ones)
    seen, pointers = 0, []
    for batch in data.batches(4, seed=3):
        check(batch)
        seen += len(batch["index"])
        pointers.append(batch["bands_10m"].ctypes.data)
    assert seen == 60 and len(set(pointers)) < len(pointers)
    # anything still referring to a batch's arrays keeps them: views, tensors, the arrays
    views, tensors, arrays = [], [], []
    for k, batch in enumerate(data.batches(4, seed=3)):
        index = batch["index"].copy()
        if k % 3 == 0:
            views.append((index, batch["bands_20m"][1:, ::2]))
        elif k % 3 == 1:
            tensors.append((index, torch.from_numpy(batch["bands_s1"])))
        else:
            arrays.append((index, batch["reference_map"]))
    for index, view in views:
        assert np.array_equal(view, expected["bands_20m"][index][1:, ::2])
    for index, tensor in tensors:
        assert np.array_equal(tensor.numpy(), expected["bands_s1"][index])
    for index, array in arrays:
        assert np.array_equal(array, expected["reference_map"][index])
    subset = SampleDataset(v2_shaped, bands=["VH", "B8A", "B02"], modalities=["s2", "s1"])
    for batch in subset.batches(8, seed=1, prefetch=0):
        assert np.array_equal(batch["bands_s1"], expected["bands_s1"][batch["index"]][:, [1]])
        assert np.array_equal(batch["bands_20m"], expected["bands_20m"][batch["index"]][:, [3]])


def test_epoch_transform_and_early_stop(small_shards: Path) -> None:
    data = SampleDataset(small_shards)
    sizes = list(data.batches(16, transform=lambda b: len(b["index"])))
    assert sizes == [16, 16, 16, 12]
    epoch = iter(data.batches(2, prefetch=1))
    next(epoch)
    epoch.close()  # type: ignore[attr-defined]  # stops the reading thread


def test_the_dataset_pickles_small(small_shards: Path) -> None:
    data = SampleDataset(small_shards, split=None, seasonal_snow=False)
    data[0]
    copy = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < 20_000
    assert len(copy) == len(data) and copy[3]["patch_id"] == data[3]["patch_id"]


def test_a_store_on_s3(v2_shaped: Path, s3: S3Server) -> None:
    url = upload(s3, v2_shaped, "dataset.zarr")
    data = SampleDataset(url, storage_options=s3.storage_options)
    expected = expected_of(v2_shaped)
    for i in (0, 31, 59):
        assert_sample(data[i], expected, i)
    for i, sample in zip([3, 40, 3, 17], data.__getitems__([3, 40, 3, 17]), strict=True):
        assert_sample(sample, expected, i)
    seen = Counter()
    for batch in data.batches(16, seed=2):
        seen.update(batch["index"].tolist())
        for name in ("bands_s1", "reference_map", "labels19"):
            assert np.array_equal(batch[name], expected[name][batch["index"]])
    assert seen == Counter(range(60))


def test_ds_ben_batches_reads_the_store_unless_the_arrays_changed(small_shards: Path) -> None:
    ds = open_store(small_shards)
    b60 = zarr.open_array(small_shards, path="bands_60m")[...]
    fast = list(ds.ben.batches(8, seed=1, resolution="60m"))
    for batch in fast:
        assert np.array_equal(batch.bands["bands_60m"], b60[batch.index])
    changed = ds.assign(bands_60m=ds["bands_60m"] + 1)
    for batch in changed.ben.batches(8, seed=1, resolution="60m"):
        assert np.array_equal(batch.bands["bands_60m"], b60[batch.index] + 1)
    flipped = ds.isel(x_60m=slice(None, None, -1))
    for batch in flipped.ben.batches(8, seed=1, resolution="60m"):
        assert np.array_equal(batch.bands["bands_60m"], b60[batch.index][..., ::-1])
    chosen = ds.ben.select(cloud_and_shadow=False).isel(sample=slice(2, None))
    rows = np.flatnonzero(~zarr.open_array(small_shards, path="cloud_and_shadow")[...])[2:]
    for batch in chosen.ben.batches(8, seed=1, resolution="60m"):
        assert np.array_equal(batch.bands["bands_60m"], b60[rows[batch.index]])


def test_sample_dataset_is_exported_lazily() -> None:
    assert ingest.SampleDataset is SampleDataset


def test_a_written_v2_store(v2_store: Any) -> None:
    data = SampleDataset(v2_store.path)
    assert len(data) == len(v2_store.table)
    for i in range(len(data)):
        sample = data[i]
        assert sample["patch_id"] == v2_store.table.patch_id[i]
        assert np.array_equal(sample["labels19"], v2_store.table.labels19[i])
        for name, values in v2_store.pixels.items():
            assert np.array_equal(sample[name], values[i]), name
    seen = [i for b in data.batches(3, seed=1) for i in b["index"].tolist()]
    assert sorted(seen) == list(range(len(data)))
