"""``ingest verify`` accepts good stores (contract v1 and v2, both releases) and names what is
wrong with bad ones."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from ingest.store import zarrstore as store_module
from ingest.store.verify import check
from ingest.testing.samples import SampleArchives

from ..conftest import WrittenStore, ingest_local, write_v2_store


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


def test_the_mlhub_route_writes_contract_v2_of_bigearthnet_v1(good_store: Path) -> None:
    attrs = zarr.open_group(str(good_store), mode="r").attrs
    assert (attrs["contract_version"], attrs["dataset"], attrs["layout"]) == (
        2, "bigearthnet-v1", "mlhub",
    )  # fmt: skip
    assert [s["role"] for s in attrs["sources"]] == ["labels", "s2"]


def _reconsolidate(store: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(str(store))


def _set_attrs(store: Path, **attrs: object) -> None:
    group = zarr.open_group(str(store), mode="r+")
    for key, value in attrs.items():
        if value is None:
            del group.attrs[key]
        else:
            group.attrs[key] = value


def test_a_contract_v1_store_stays_valid(store: Path) -> None:
    """A store written before contract v2: contract_version 1, no dataset or layout, sources
    without roles."""
    sources = [{k: v for k, v in s.items() if k != "role"} for s in zarr.open_group(str(store)).attrs["sources"]]  # fmt: skip
    _set_attrs(store, contract_version=1, dataset=None, layout=None, sources=sources)
    assert check(store) == []
    shutil.rmtree(store / "labels")  # still checked as v1: labels are required there
    _reconsolidate(store)
    assert check(store) == ["labels: missing"]


def test_a_v1_store_needs_its_labels(store: Path) -> None:
    shutil.rmtree(store / "labels")
    _reconsolidate(store)
    assert check(store) == ["labels: missing"]


@pytest.fixture
def v2_copy(v2_store: WrittenStore, tmp_path: Path) -> Path:
    copy = tmp_path / "reben.zarr"
    shutil.copytree(v2_store.path, copy)
    return copy


def test_good_v2_store_passes(v2_store: WrittenStore) -> None:
    assert check(v2_store.path) == []
    group = zarr.open_group(str(v2_store.path), mode="r")
    assert "labels" not in group and "label" not in group
    assert group["bands_s1"].dtype == np.float32 and group["reference_map"].shape == (10, 120, 120)


def test_v2_store_without_s1_and_maps_passes(tmp_path: Path) -> None:
    written = write_v2_store(tmp_path / "s2.zarr", n=5, shard=2, s1=False, reference_maps=False)
    assert check(written.path) == []


def test_v2_store_with_43_class_labels_fails(v2_copy: Path) -> None:
    group = zarr.open_group(str(v2_copy), mode="r+")
    group.create_array("label", shape=(43,), dtype=str, dimension_names=["label"])
    group.create_array(
        "labels",
        shape=(10, 43),
        chunks=(65536, 43),
        dtype=bool,
        dimension_names=["sample", "label"],
    )
    _reconsolidate(v2_copy)
    assert check(v2_copy) == [
        "label: not part of a bigearthnet-v2 store",
        "labels: not part of a bigearthnet-v2 store",
    ]


def test_v2_store_needs_patch_id_v1(v2_copy: Path) -> None:
    shutil.rmtree(v2_copy / "patch_id_v1")
    _reconsolidate(v2_copy)
    assert check(v2_copy) == ["patch_id_v1: missing"]


def test_s1_patch_id_comes_with_bands_s1(v2_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(v2_copy / "s1_patch_id")
    _reconsolidate(v2_copy)
    assert check(v2_copy) == ["s1_patch_id: missing (bands_s1 is present)"]
    written = write_v2_store(tmp_path / "no-s1.zarr", n=3, shard=4, s1=False)
    group = zarr.open_group(str(written.path), mode="r+")
    group.create_array(
        "s1_patch_id", shape=(3,), chunks=(65536,), dtype=str, dimension_names=["sample"]
    )
    group.create_array("band_s1", shape=(2,), dtype=str, dimension_names=["band_s1"])[:] = np.array(["VV", "VH"], dtype=object)  # fmt: skip
    _reconsolidate(written.path)
    assert check(written.path) == [
        "s1_patch_id: present without bands_s1",
        "band_s1: dimension coordinate without an array along it",
    ]


def test_bands_s1_must_be_float32(v2_copy: Path) -> None:
    group = zarr.open_group(str(v2_copy), mode="r+")
    group.create_array(
        "bands_s1", shape=(10, 2, 120, 120), chunks=(1, 2, 120, 120), shards=(4, 2, 120, 120),
        dtype="uint16", dimension_names=["sample", "band_s1", "y_10m", "x_10m"], overwrite=True,
    )  # fmt: skip
    _reconsolidate(v2_copy)
    problems = check(v2_copy)
    assert problems[0] == "bands_s1: dtype uint16, expected float32"


def test_reference_map_layout_is_checked(v2_copy: Path) -> None:
    group = zarr.open_group(str(v2_copy), mode="r+")
    group.create_array(
        "reference_map", shape=(10, 120, 120), chunks=(2, 120, 120), shards=(2, 120, 120),
        dtype="uint16", dimension_names=["sample", "y_10m", "x_10m"], overwrite=True,
    )  # fmt: skip
    _reconsolidate(v2_copy)
    problems = check(v2_copy)
    assert problems[:2] == [
        "reference_map: inner chunk (2, 120, 120), expected (1, 120, 120)",
        "per-pixel arrays use different shard lengths [2, 4]",
    ]
    _edit_metadata(v2_copy, "reference_map", "dimension_names", ["sample", "y", "x_10m"])
    assert (
        "reference_map: dimensions ['sample', 'y', 'x_10m'], expected ['sample', 'y_10m', 'x_10m']"
        in check(v2_copy)
    )


def test_missing_reference_map_shard_fails(v2_copy: Path) -> None:
    (v2_copy / "reference_map" / "c" / "1" / "0" / "0").unlink()
    assert check(v2_copy) == ["reference_map: 1 of 3 shards missing, first shard 1"]


def test_reference_map_is_not_part_of_v1(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r+")
    group.create_array(
        "reference_map", shape=(6, 120, 120), chunks=(1, 120, 120), shards=(4, 120, 120),
        dtype="uint16", dimension_names=["sample", "y_10m", "x_10m"],
    )  # fmt: skip
    _reconsolidate(store)
    assert check(store) == ["reference_map: not part of a bigearthnet-v1 store"]


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({"dataset": "bigearthnet-v3"}, "attribute 'dataset' is 'bigearthnet-v3', expected one of bigearthnet-v1, bigearthnet-v2"),
        ({"dataset": None}, "attribute 'dataset' is None, expected one of bigearthnet-v1, bigearthnet-v2"),
        ({"layout": "mlhub"}, "attribute 'layout' is 'mlhub', not a distribution of bigearthnet-v2 (reben-v2)"),
        ({"layout": None}, "attribute 'layout' missing"),
        ({"contract_version": 3}, "contract_version 3 is not one of 1, 2"),
        ({"sources": [{"role": "s3", "bytes": 1, "sha256": "0"}]}, "sources[0]: role 's3' is not one of labels, s2, s1, reference_maps, metadata"),
        ({"sources": [{"role": "s2", "bytes": 1, "sha256": "0"}, {"location": "x"}]}, "sources[1]: role, bytes, sha256 missing"),
        ({"sources": "s2.tar"}, "attribute 'sources' is a str, expected a list"),
    ],
)  # fmt: skip
def test_v2_root_attributes(v2_copy: Path, attrs: dict[str, object], problem: str) -> None:
    _set_attrs(v2_copy, **attrs)
    assert check(v2_copy) == [problem]


def test_a_v1_layout_on_a_v1_store(store: Path) -> None:
    _set_attrs(store, layout="zenodo-v1")
    assert check(store) == []
    _set_attrs(store, layout="reben-v2")
    assert check(store) == [
        "attribute 'layout' is 'reben-v2', not a distribution of bigearthnet-v1 (mlhub, zenodo-v1)"
    ]


def test_labels_only_v1_store_passes(real_sample: SampleArchives, tmp_path: Path) -> None:
    ingest_local(real_sample, tmp_path / "labels.zarr", labels_only=True)
    assert check(tmp_path / "labels.zarr") == []
    assert "bands_10m" not in zarr.open_group(str(tmp_path / "labels.zarr"), mode="r")


def test_create_records_dataset_and_layout(tmp_path: Path) -> None:
    store_module.create(tmp_path / "a.zarr", capacity=4, shard=2, dataset="bigearthnet-v2", layout="reben-v2", attrs={"contract_version": 1})  # fmt: skip
    attrs = zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs
    assert (attrs["contract_version"], attrs["dataset"], attrs["layout"], attrs["complete"]) == (
        2, "bigearthnet-v2", "reben-v2", False,
    )  # fmt: skip
