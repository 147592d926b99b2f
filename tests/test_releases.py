"""The archives users hold today, end to end: Zenodo v1.0 and reBEN v2.0, their real samples ingested
from files, URLs (the emulator's Zenodo route), in every wrapping (gzip, zstd, plain, split parts),
every pixel compared with rasterio's reading of the original files and every label, flag, split, id
and corner with the JSON / parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import zarr

from ingest.config import RunConfig, RunReport
from ingest.layouts.labels import Selection
from ingest.nomenclature import BAND_SLOT, CLASSES_19, CLASSES_43
from ingest.pipeline import run
from ingest.testing.emulator import Emulator
from ingest.testing.releases import ReleaseSample, write_release_sample
from tests.conftest import ingest_local


def ingest_release(sample: ReleaseSample, store: Path, **options: Any) -> RunReport:
    options.setdefault("workers", 0)
    config = RunConfig(
        store=store,
        source_archive=tuple(str(p) for p in sample.s2),
        metadata=tuple(str(p) for p in sample.metadata),
        **options,
    )
    return run(config)


@pytest.fixture(scope="module")
def v1_sample(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v1"), layout="zenodo-v1", real=True)


@pytest.fixture(scope="module")
def v2_sample(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", real=True)


@pytest.fixture(scope="module")
def v1_store(v1_sample: ReleaseSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "v1.zarr"
    ingest_release(v1_sample, path)
    return path


@pytest.fixture(scope="module")
def v2_store(v2_sample: ReleaseSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "v2.zarr"
    ingest_release(v2_sample, path)
    return path


def band_files(originals: Path, patch: str) -> dict[str, Path]:
    """The original band files of a patch: band name -> path."""
    found = {}
    for path in originals.rglob(f"{patch}_B*.tif"):
        found[path.stem.removeprefix(f"{patch}_")] = path
    return found


def assert_pixels_match_rasterio(store: Path, originals: Path, real_only: bool = False) -> int:
    group = zarr.open_group(str(store), mode="r")
    compared = 0
    for i, patch in enumerate(np.asarray(group["patch_id"][:]).tolist()):
        files = band_files(originals, patch)
        if real_only and not files:
            continue
        assert sorted(files) == sorted(BAND_SLOT), patch
        for band, path in files.items():
            array_of, slot = BAND_SLOT[band]
            with rasterio.open(path) as src:
                np.testing.assert_array_equal(
                    np.asarray(group[array_of.array_name][i, slot]), src.read(1),
                    err_msg=f"{patch} {band}",
                )  # fmt: skip
                assert int(group["epsg"][i]) == src.crs.to_epsg()
                assert float(group["x_ul"][i]) == src.transform.c
                assert float(group["y_ul"][i]) == src.transform.f
                compared += 1
    return compared


def test_zenodo_v1_pixels_match_rasterio(v1_store: Path, v1_sample: ReleaseSample) -> None:
    assert v1_sample.originals is not None
    assert assert_pixels_match_rasterio(v1_store, v1_sample.originals) == 6 * 12


def test_zenodo_v1_labels_time_flags_and_attrs(v1_store: Path, v1_sample: ReleaseSample) -> None:
    assert v1_sample.originals is not None
    group = zarr.open_group(str(v1_store), mode="r")
    attrs = dict(group.attrs)
    assert (attrs["dataset"], attrs["layout"], attrs["complete"]) == (
        "bigearthnet-v1", "zenodo-v1", True,
    )  # fmt: skip
    assert [s["role"] for s in attrs["sources"]] == ["s2"]
    assert attrs["sources"][0]["location"] == str(v1_sample.s2[0].resolve())
    assert attrs["counts"]["samples"] == 6
    patch_ids = np.asarray(group["patch_id"][:]).tolist()
    assert patch_ids == list(v1_sample.patches)
    labels = np.asarray(group["labels"][:])
    times = np.asarray(group["time"][:]).astype("datetime64[s]")
    for i, patch in enumerate(patch_ids):
        (path,) = v1_sample.originals.rglob(f"{patch}_labels_metadata.json")
        doc = json.loads(path.read_text())
        assert [CLASSES_43[j] for j in np.flatnonzero(labels[i])] == sorted(
            doc["labels"], key=CLASSES_43.index
        )
        assert str(times[i]).replace("T", " ") == doc["acquisition_date"]
    snow = np.asarray(group["seasonal_snow"][:])
    assert snow.sum() == 1  # one of the six real patches is in the official snow list
    assert set(np.asarray(group["split"][:]).tolist()) <= {"train", "validation", "test", ""}


def test_the_same_patches_through_mlhub_and_zenodo_v1_are_the_same(
    v1_store: Path, real_store: Path
) -> None:
    zenodo = zarr.open_group(str(v1_store), mode="r")
    mlhub = zarr.open_group(str(real_store), mode="r")
    order_z = np.asarray(zenodo["patch_id"][:]).tolist()
    order_m = np.asarray(mlhub["patch_id"][:]).tolist()
    assert sorted(order_z) == sorted(order_m)
    take = [order_z.index(p) for p in order_m]
    for name in ("bands_10m", "bands_20m", "bands_60m", "labels", "labels19", "seasonal_snow",
                 "cloud_and_shadow", "epsg", "x_ul", "y_ul", "time", "split", "country"):  # fmt: skip
        np.testing.assert_array_equal(
            np.asarray(zenodo[name][:])[take], np.asarray(mlhub[name][:]), err_msg=name
        )


def test_reben_v2_pixels_match_rasterio(v2_store: Path, v2_sample: ReleaseSample) -> None:
    assert v2_sample.originals is not None
    assert assert_pixels_match_rasterio(v2_store, v2_sample.originals, real_only=True) >= 7 * 12


def test_reben_v2_labels_and_metadata_match_the_parquet(
    v2_store: Path, v2_sample: ReleaseSample
) -> None:
    rows = {}
    for path in v2_sample.metadata:
        for row in pq.read_table(path).to_pylist():
            rows[row["patch_id"]] = row
    group = zarr.open_group(str(v2_store), mode="r")
    attrs = dict(group.attrs)
    assert (attrs["dataset"], attrs["layout"], attrs["complete"]) == (
        "bigearthnet-v2", "reben-v2", True,
    )  # fmt: skip
    assert [s["role"] for s in attrs["sources"]] == ["metadata"] * len(v2_sample.metadata) + ["s2"]
    assert "labels" not in group and "label" not in group
    patch_ids = np.asarray(group["patch_id"][:]).tolist()
    assert patch_ids == list(v2_sample.patches)
    labels19 = np.asarray(group["labels19"][:])
    for i, patch in enumerate(patch_ids):
        row = rows[patch]
        assert sorted(CLASSES_19[j] for j in np.flatnonzero(labels19[i])) == sorted(row["labels"])
        assert group["split"][i] == row["split"]
        assert group["country"][i] == row["country"]
        assert group["patch_id_v1"][i] == row["s2v1_name"]
        assert bool(group["seasonal_snow"][i]) == row["contains_seasonal_snow"]
        assert bool(group["cloud_and_shadow"][i]) == row["contains_cloud_or_shadow"]
        stamp = str(np.asarray(group["time"][i]).astype("datetime64[s]"))
        assert stamp.replace("-", "").replace(":", "") == patch.split("_")[2]


@pytest.mark.parametrize(("compression", "parts"), [("gzip", 1), ("none", 1), ("gzip", 3)])
def test_reben_v2_in_other_wrappings_gives_the_same_store(
    compression: str, parts: int, v2_store: Path, tmp_path: Path
) -> None:
    sample = write_release_sample(
        tmp_path,
        layout="reben-v2",
        real=True,
        compression=compression,
        parts=parts,  # type: ignore[arg-type]
    )
    assert len(sample.s2) == parts
    store = tmp_path / "w.zarr"
    ingest_release(sample, store)
    a, b = zarr.open_group(str(store), mode="r"), zarr.open_group(str(v2_store), mode="r")
    for name in ("patch_id", "bands_10m", "bands_20m", "bands_60m", "labels19", "split"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]), name)
    assert [s["role"] for s in dict(a.attrs)["sources"]].count("s2") == parts


def test_official_files_by_name_through_the_emulator(
    v2_sample: ReleaseSample, v2_store: Path, tmp_path: Path
) -> None:
    from ingest.sources.official import read_md5sums

    with Emulator(v2_sample.s2[0].parent) as emulator:
        store, base = tmp_path / "official.zarr", emulator.base_url
        run(RunConfig(store=store, dataset="bigearthnet-v2", zenodo_url=base,
                      md5sums=read_md5sums(v2_sample.md5sums), workers=0))  # fmt: skip
    a, b = zarr.open_group(str(store), mode="r"), zarr.open_group(str(v2_store), mode="r")
    np.testing.assert_array_equal(np.asarray(a["bands_10m"][:]), np.asarray(b["bands_10m"][:]))
    sources = dict(a.attrs)["sources"]
    assert all(s["location"].startswith(base) for s in sources)
    assert all(s.get("md5") for s in sources if s["role"] == "s2")


def test_selection_split_and_19_class_names_on_v2(v2_sample: ReleaseSample, tmp_path: Path) -> None:
    store = tmp_path / "sel.zarr"
    report = ingest_release(v2_sample, store, selection=Selection(split="validation"))
    group = zarr.open_group(str(store), mode="r")
    assert set(np.asarray(group["split"][:]).tolist()) == {"validation"}
    assert report.samples == group["patch_id"].shape[0] > 0
    store2 = tmp_path / "sel2.zarr"
    ingest_release(v2_sample, store2, selection=Selection(classes=("Arable land",), limit=2))
    g2 = zarr.open_group(str(store2), mode="r")
    assert 0 < g2["patch_id"].shape[0] <= 2
    assert np.asarray(g2["labels19"][:])[:, CLASSES_19.index("Arable land")].all()


def test_mlhub_route_unchanged_writes_dataset_and_layout(real_store: Path) -> None:
    attrs = dict(zarr.open_group(str(real_store), mode="r").attrs)
    assert (attrs["dataset"], attrs["layout"]) == ("bigearthnet-v1", "mlhub")
    assert [s["role"] for s in attrs["sources"]] == ["labels", "s2"]


def test_zenodo_v1_reads_no_labels_archive_and_needs_no_key(
    v1_sample: ReleaseSample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLHUB_API_KEY", raising=False)
    report = ingest_release(v1_sample, tmp_path / "k.zarr")
    assert report.samples == 6 and report.ignored_members == {}


__all__ = ["ingest_local"]
