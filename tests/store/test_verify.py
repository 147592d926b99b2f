"""``ingest verify`` accepts good stores and names what is wrong with bad ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from ingest.store.verify import check
from ingest.testing.samples import SampleArchives

from ..conftest import ingest_local


@pytest.fixture(scope="module")
def good_store(real_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("verify") / "good.zarr"
    ingest_local(real_sample, store, shard_size=4)
    return store


@pytest.fixture
def store(good_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(good_store, copy)
    return copy


def _edit_metadata(store: Path, array: str, key: str, value: object) -> None:
    path = store / array / "zarr.json"
    meta = json.loads(path.read_text())
    meta[key] = value
    path.write_text(json.dumps(meta))
    # the consolidated copy in the root must say the same, as a real tampering would
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"][array][key] = value
    (store / "zarr.json").write_text(json.dumps(root))


def test_good_store_passes(good_store: Path) -> None:
    assert check(good_store) == []


def test_missing_complete_fails(store: Path) -> None:
    zarr.open_group(str(store), mode="r+").attrs["complete"] = False
    assert check(store) == ["store is not complete (attribute 'complete' is not true)"]


def test_tampered_dimension_fails(store: Path) -> None:
    _edit_metadata(store, "bands_20m", "dimension_names", ["sample", "band_20m", "y", "x_20m"])
    problems = check(store)
    assert problems and problems[0].startswith("bands_20m: dimensions")


def test_wrong_band_size_fails(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    group.create_array(
        "bands_60m", shape=(6, 2, 21, 21), chunks=(1, 2, 21, 21), shards=(4, 2, 21, 21),
        dtype="uint16", dimension_names=["sample", "band_60m", "y_60m", "x_60m"], overwrite=True,
    )  # fmt: skip
    assert "bands_60m: dimension y_60m has size 21, expected 20" in check(store)


def test_sample_count_mismatch_fails(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    counts = dict(group.attrs["counts"])
    counts["samples"] = 7
    group.attrs["counts"] = counts
    assert check(store) == ["counts.samples is 7, the arrays hold 6"]


def test_inconsistent_labels19_fails(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    labels19 = np.asarray(group["labels19"][:])
    labels19[0] = ~labels19[0]
    group["labels19"][:] = labels19
    assert check(store) == ["labels19 is not the official 19-class mapping of labels"]


def test_missing_array_and_not_a_store(store: Path, tmp_path: Path) -> None:
    shutil.rmtree(store / "x_ul")
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]["metadata"]["x_ul"]
    (store / "zarr.json").write_text(json.dumps(root))
    assert "x_ul: missing" in check(store)
    assert check(tmp_path / "nothing") == [
        f"{tmp_path / 'nothing'}: not a Zarr v3 store (no zarr.json)"
    ]


def test_missing_shard_file_fails(store: Path) -> None:
    """A missing shard would silently read as zeros: the store is not valid."""
    (store / "bands_20m" / "c" / "1" / "0" / "0" / "0").unlink()
    assert check(store) == ["bands_20m: 1 of 2 shards missing, first shard 1"]
