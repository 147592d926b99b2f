"""``ingest.store.zarrstore``: creating contract v2 stores of both releases with their optional
per-pixel arrays, writing shards of each, finishing (trimming) and refusing what does not fit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from ingest.errors import StoreError, UsageError
from ingest.nomenclature import CLASSES_19, CLASSES_43
from ingest.store import zarrstore as store

from ..conftest import WrittenStore, write_v2_store


def test_a_v2_store_holds_what_was_written(v2_store: WrittenStore) -> None:
    group = zarr.open_group(str(v2_store.path), mode="r")
    for name, values in v2_store.pixels.items():  # trimmed from 14 to 10 samples
        array = group[name]
        assert isinstance(array, zarr.Array)
        assert array.shape == values.shape and array.dtype == values.dtype, name
        assert array.chunks == (1, *values.shape[1:]) and array.shards == (4, *values.shape[1:])
        np.testing.assert_array_equal(array[...], values, err_msg=name)
    assert group["bands_s1"].metadata.dimension_names == ("sample", "band_s1", "y_10m", "x_10m")
    assert group["reference_map"].metadata.dimension_names == ("sample", "y_10m", "x_10m")
    assert group["band_s1"][...].tolist() == ["VV", "VH"]
    assert group["label19"][...].tolist() == list(CLASSES_19)
    np.testing.assert_array_equal(group["labels19"][...], v2_store.table.labels19)
    for name in ("split", "country", "patch_id_v1", "s1_patch_id"):
        assert group[name][...].tolist() == v2_store.table.optional[name].tolist(), name
    assert group["reference_map"].attrs["coordinates"] == "patch_id time epsg x_ul y_ul"
    assert group["labels19"].attrs["coordinates"] == (
        "patch_id time epsg x_ul y_ul country patch_id_v1 s1_patch_id split"
    )
    assert "labels" not in group and "label" not in group and "_ingest" not in group


def test_create_a_v1_store_with_s1(tmp_path: Path) -> None:
    """bigearthnet-v1 (e.g. Zenodo with its S1 archive): label and label19, bands_s1, no map."""
    path = tmp_path / "v1.zarr"
    store.create(path, capacity=8, shard=4, dataset="bigearthnet-v1", layout="zenodo-v1", s1=True, attrs={})  # fmt: skip
    group = zarr.open_group(str(path), mode="r")
    assert group["label"][...].tolist() == list(CLASSES_43)
    assert sorted(k for k in group.array_keys() if k.startswith("bands")) == [
        "bands_10m", "bands_20m", "bands_60m", "bands_s1",
    ]  # fmt: skip
    assert "reference_map" not in group and group["bands_s1"].fill_value == 0.0
    assert group.attrs["layout"] == "zenodo-v1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dataset": "bigearthnet"}, "unknown dataset 'bigearthnet': one of bigearthnet-v1, bigearthnet-v2"),
        ({"layout": "reben-v2"}, "layout 'reben-v2' is not a distribution of bigearthnet-v1 (mlhub, zenodo-v1)"),
        ({"reference_maps": True}, "reference maps belong to bigearthnet-v2, not bigearthnet-v1"),
        ({"labels_only": True, "s1": True}, "a labels-only store has no per-pixel arrays"),
    ],
)  # fmt: skip
def test_create_refuses(tmp_path: Path, options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"dataset": "bigearthnet-v1", "layout": "mlhub", **options}
    with pytest.raises(UsageError) as caught:
        store.create(tmp_path / "s.zarr", capacity=4, shard=2, attrs={}, **arguments)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert not (tmp_path / "s.zarr").exists()


def test_write_shard_refuses_a_block_of_the_wrong_dtype_or_shape(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store.create(path, capacity=4, shard=2, dataset="bigearthnet-v2", layout="reben-v2", s1=True, reference_maps=True, attrs={})  # fmt: skip
    record = store.ShardRecord(0, ("a", "b"))
    with pytest.raises(
        StoreError,
        match=r"bands_s1: batch of float64 \(2, 120, 120\) per sample, the array holds float32 \(2, 120, 120\)",
    ):
        store.write_shard(path, 0, {"bands_s1": np.zeros((2, 2, 120, 120))}, record)
    with pytest.raises(StoreError, match=r"reference_map: batch of uint16 \(1, 120, 120\)"):
        store.write_shard(path, 0, {"reference_map": np.zeros((2, 1, 120, 120), np.uint16)}, record)
    assert store.journal(path) == {}
    # a map alone is one whole shard too: its journal entry follows it
    maps = np.full((2, 120, 120), 311, np.uint16)
    assert (
        store.write_shard(path, 2, {"reference_map": maps}, store.ShardRecord(1, ("c", "d"))) == 2
    )
    assert store.journal(path) == {1: store.ShardRecord(1, ("c", "d"))}
    np.testing.assert_array_equal(zarr.open_array(str(path), path="reference_map")[2:4], maps)


def test_a_journal_entry_not_yet_written_is_no_finished_shard(tmp_path: Path) -> None:
    """Read while a run writes it (a test polling for the first shard), or after a run killed
    between an entry's folder and its document: zarr warned, which the tests take as an error
    (CI failed once on it)."""
    path = tmp_path / "s.zarr"
    store.create(path, capacity=4, shard=2, dataset="bigearthnet-v2", layout="reben-v2", attrs={})
    store.write_shard(path, 2, {}, store.ShardRecord(1, ("c", "d")))
    (path / store.JOURNAL / "shard-0000000").mkdir()  # its zarr.json not there (yet)
    assert store.journal(path) == {1: store.ShardRecord(1, ("c", "d"))}


def test_finish_refuses_a_table_that_does_not_fit(v2_store: WrittenStore, tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store.create(path, capacity=10, shard=4, dataset="bigearthnet-v2", layout="reben-v2", s1=True, attrs={})  # fmt: skip
    table = v2_store.table
    cases = [
        (replace(table, labels=np.zeros((10, 43), bool)), "this store has no place for the 43-class labels"),
        (replace(table, optional={**table.optional, "season": table.optional["split"], "tile": table.optional["split"]}),
         "'tile' is not an optional coordinate of the contract"),
        (replace(table, optional={k: v for k, v in table.optional.items() if k != "s1_patch_id"}),
         "s1_patch_id must be given exactly when the store has bands_s1"),
        (replace(table, optional={**table.optional, "country": table.optional["country"][:9]}),
         "country has 9 values for 10 samples"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(StoreError, match=message):
            store.finish(path, bad, {})
    with pytest.raises(
        StoreError, match="dataset is 'bigearthnet-v2' since create, not 'bigearthnet-v1'"
    ):
        store.finish(path, table, {"dataset": "bigearthnet-v1"})
    assert zarr.open_group(str(path), mode="r")["bands_10m"].shape[0] == 10  # nothing written
    v1 = tmp_path / "v1.zarr"
    store.create(v1, capacity=10, shard=4, dataset="bigearthnet-v1", layout="mlhub", attrs={})
    no_s1 = {k: v for k, v in table.optional.items() if k not in ("s1_patch_id", "patch_id_v1")}
    with pytest.raises(StoreError, match="this store needs the 43-class labels"):
        store.finish(v1, replace(table, optional=no_s1), {})


def test_finish_trims_every_per_pixel_array(tmp_path: Path) -> None:
    """Capacity 14, 10 written: all five per-pixel arrays end at 10 samples."""
    written = write_v2_store(tmp_path / "s.zarr", n=10, shard=4)
    group = zarr.open_group(str(written.path), mode="r")
    assert {name: group[name].shape[0] for name in store.PIXEL_ARRAYS} == dict.fromkeys(
        store.PIXEL_ARRAYS, 10
    )
    assert list(store.PIXEL_ARRAYS) == [
        "bands_10m",
        "bands_20m",
        "bands_60m",
        "bands_s1",
        "reference_map",
    ]
