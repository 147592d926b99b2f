"""The main job on local archives: the store holds exactly what the archives hold."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr

from ingest.errors import StoreError
from ingest.layouts.mlhub import as_flag, parse_time
from ingest.nomenclature import BAND_SLOT, CLASS_43_TO_19, CLASSES_43
from ingest.store.verify import check
from ingest.testing.archive_writer import Member, rewrite_archive
from ingest.testing.compare import store_differences
from ingest.testing.samples import SampleArchives, SampleOptions

from .conftest import ingest_local, item_documents, sample_with

NOT_SOURCES = frozenset({"created", "sources"})


@pytest.fixture(scope="module")
def real_store(real_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("stores") / "real.zarr"
    ingest_local(real_sample, store)
    return store


def test_real_store_is_valid(real_store: Path) -> None:
    assert check(real_store) == []
    attrs = zarr.open_group(str(real_store), mode="r").attrs
    assert attrs["complete"] is True
    assert attrs["counts"] == {
        "samples": 6,
        "labels_without_source": 0,
        "source_without_labels": 0,
        "skipped": 0,
    }
    assert attrs["license"] == "CDLA-Permissive-1.0"
    assert attrs["citation"].startswith("G. Sumbul")


def test_every_pixel_matches_rasterio(
    real_store: Path, real_by_name: dict[str, Any], tmp_path: Path
) -> None:
    group = zarr.open_group(str(real_store), mode="r")
    patch_ids = np.asarray(group["patch_id"][:]).tolist()
    assert sorted(patch_ids) == sorted(real_by_name)
    for i, patch_id in enumerate(patch_ids):
        for band, data in real_by_name[patch_id].bands.items():
            path = tmp_path / f"{patch_id}_{band}.tif"
            path.write_bytes(data)
            group_of, slot = BAND_SLOT[band]
            with rasterio.open(path) as src:
                stored = np.asarray(group[group_of.array_name][i, slot])
                np.testing.assert_array_equal(stored, src.read(1), err_msg=f"{patch_id} {band}")
                assert int(group["epsg"][i]) == src.crs.to_epsg()
                assert float(group["x_ul"][i]) == src.transform.c
                assert float(group["y_ul"][i]) == src.transform.f


def test_labels_flags_and_time_match_the_items(
    real_store: Path, real_sample: SampleArchives, real_by_name: dict[str, Any]
) -> None:
    group = zarr.open_group(str(real_store), mode="r")
    items = {
        doc["id"].removeprefix("bigearthnet_v1_labels_"): doc
        for doc in item_documents(real_sample.labels)
    }
    labels = np.asarray(group["labels"][:])
    labels19 = np.asarray(group["labels19"][:])
    for i, patch_id in enumerate(np.asarray(group["patch_id"][:]).tolist()):
        props = items[patch_id]["properties"]
        assert [CLASSES_43[j] for j in np.flatnonzero(labels[i])] == sorted(
            props["labels"], key=CLASSES_43.index
        )
        assert set(props["labels"]) == set(real_by_name[patch_id].metadata["labels"])
        expected19 = {CLASS_43_TO_19[CLASSES_43.index(c)] for c in props["labels"]} - {-1}
        assert set(np.flatnonzero(labels19[i])) == expected19
        assert bool(group["cloud_and_shadow"][i]) is as_flag(props["cloud_and_shadow"])
        assert bool(group["seasonal_snow"][i]) is real_by_name[patch_id].snow
        assert int(group["time"][i]) == parse_time(props["datetime"], "test")
    assert int(np.asarray(group["seasonal_snow"][:]).sum()) == 1


def test_sample_order_is_the_source_archive_order(
    real_store: Path, real_sample: SampleArchives
) -> None:
    group = zarr.open_group(str(real_store), mode="r")
    assert tuple(np.asarray(group["patch_id"][:]).tolist()) == real_sample.patches


@pytest.mark.parametrize(
    "options",
    [
        SampleOptions(label_order="reversed"),
        SampleOptions(label_order="shuffled"),
        SampleOptions(flags="bool"),
        SampleOptions(band_layout="cog"),
        SampleOptions(band_layout="bigendian"),
    ],
    ids=["labels-reversed", "labels-shuffled", "flags-bool", "cog-bands", "big-endian-bands"],
)
def test_archive_variants_give_the_same_store(
    options: SampleOptions, real_store: Path, tmp_path: Path
) -> None:
    archives = sample_with(tmp_path / "archives", options)
    ingest_local(archives, tmp_path / "s.zarr")
    assert store_differences(real_store, tmp_path / "s.zarr", ignore_attrs=NOT_SOURCES) == []


def test_extra_b10_is_ignored_and_reported(real_store: Path, tmp_path: Path) -> None:
    archives = sample_with(tmp_path / "archives", SampleOptions(extra_b10=True))
    report = ingest_local(archives, tmp_path / "s.zarr")
    assert report.ignored_files == {"B10.tif": 6}
    assert (
        store_differences(real_store, tmp_path / "s.zarr", ignore_attrs=NOT_SOURCES | {"report"})
        == []
    )
    assert zarr.open_group(str(tmp_path / "s.zarr")).attrs["report"]["ignored_files"] == {
        "B10.tif": 6
    }


def _drop_item(patch: str) -> Any:
    def edit(info: tarfile.TarInfo, data: bytes | None) -> list[Member]:
        return [] if patch in info.name else [(info, data)]

    return edit


def test_items_without_partner_are_counted_not_fatal(
    real_sample: SampleArchives, tmp_path: Path
) -> None:
    no_label, no_source = real_sample.patches[1], real_sample.patches[4]
    labels = rewrite_archive(
        real_sample.labels, tmp_path / "bigearthnet_v1_labels.tar.gz", _drop_item(no_label)
    )
    source = rewrite_archive(
        real_sample.source, tmp_path / "bigearthnet_v1_source.tar.gz", _drop_item(no_source)
    )
    archives = SampleArchives(labels, source, real_sample.patches)
    report = ingest_local(archives, tmp_path / "s.zarr")
    assert (report.samples, report.labels_without_source, report.source_without_labels) == (4, 1, 1)
    assert report.examples == {
        "labels_without_source": [no_source],
        "source_without_labels": [f"bigearthnet_v1_source_{no_label}"],
    }
    assert check(tmp_path / "s.zarr") == []
    stored = np.asarray(zarr.open_group(str(tmp_path / "s.zarr"))["patch_id"][:]).tolist()
    assert stored == [p for p in real_sample.patches if p not in (no_label, no_source)]


def test_partial_last_shard(real_store: Path, real_sample: SampleArchives, tmp_path: Path) -> None:
    ingest_local(real_sample, tmp_path / "s.zarr", shard_size=4)
    assert check(tmp_path / "s.zarr") == []
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["bands_10m"].shards == (4, 4, 120, 120)
    assert sorted(p.name for p in (tmp_path / "s.zarr" / "bands_10m" / "c").iterdir()) == ["0", "1"]
    reference = zarr.open_group(str(real_store), mode="r")
    for name in ("bands_10m", "bands_20m", "bands_60m"):
        np.testing.assert_array_equal(group[name][...], reference[name][...])


def test_labels_only(real_sample: SampleArchives, tmp_path: Path) -> None:
    report = ingest_local(real_sample, tmp_path / "s.zarr", labels_only=True)
    assert report.samples == 6
    assert check(tmp_path / "s.zarr") == []
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    names = {n for n, _ in group.members()}
    assert not names & {"bands_10m", "bands_20m", "bands_60m", "epsg", "x_ul", "y_ul"}
    assert {"labels", "labels19", "cloud_and_shadow", "seasonal_snow", "patch_id", "time"} <= names
    label_order = [
        d["id"].removeprefix("bigearthnet_v1_labels_") for d in item_documents(real_sample.labels)
    ]
    assert np.asarray(group["patch_id"][:]).tolist() == label_order


def _reference_selection(
    archives: SampleArchives,
    classes: tuple[str, ...],
    cloud: bool | None,
    snow: bool | None,
    limit: int | None,
) -> list[str]:
    """The notebook's filter_item, applied independently to the label items, in source order."""
    kept = set()
    for doc in item_documents(archives.labels):
        props = doc["properties"]
        if classes and not any(c in props["labels"] for c in classes):
            continue
        if cloud is not None and as_flag(props["cloud_and_shadow"]) != cloud:
            continue
        if snow is not None and as_flag(props["seasonal_snow"]) != snow:
            continue
        kept.add(doc["id"].removeprefix("bigearthnet_v1_labels_"))
    return [p for p in archives.patches if p in kept][:limit]


@pytest.mark.parametrize(
    ("classes", "cloud", "snow", "limit"),
    [
        (("Coniferous forest",), None, None, None),
        (("Pastures", "Peatbogs", "Mixed forest"), None, None, None),
        ((), None, True, None),
        ((), None, False, None),
        ((), True, None, None),
        ((), False, False, 7),
        (("Non-irrigated arable land",), None, False, 3),
        ((), None, None, 0),
    ],
)
def test_selection_matches_the_notebook_filter(
    synthetic_sample: SampleArchives,
    tmp_path: Path,
    classes: tuple[str, ...],
    cloud: bool | None,
    snow: bool | None,
    limit: int | None,
) -> None:
    from ingest.layouts.labels import Selection

    selection = Selection(classes, cloud, snow, limit)
    report = ingest_local(synthetic_sample, tmp_path / "s.zarr", selection=selection, shard_size=8)
    expected = _reference_selection(synthetic_sample, classes, cloud, snow, limit)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert np.asarray(group["patch_id"][:]).tolist() == expected
    assert report.samples == len(expected)
    assert check(tmp_path / "s.zarr") == []


def test_synthetic_sample_selection_reference_is_not_trivial(
    synthetic_sample: SampleArchives,
) -> None:
    """Guards the selection test: its filters really keep some and drop some patches."""
    snowy = _reference_selection(synthetic_sample, (), None, True, None)
    assert 0 < len(snowy) < len(synthetic_sample.patches)


def test_existing_store_needs_overwrite(real_sample: SampleArchives, tmp_path: Path) -> None:
    ingest_local(real_sample, tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="already exists and is complete: use --overwrite"):
        ingest_local(real_sample, tmp_path / "s.zarr")
    ingest_local(real_sample, tmp_path / "s.zarr", overwrite=True)
    assert check(tmp_path / "s.zarr") == []


def test_overwrite_refuses_to_delete_a_non_store(
    real_sample: SampleArchives, tmp_path: Path
) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("keep me")
    with pytest.raises(StoreError, match="not a Zarr store"):
        ingest_local(real_sample, precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "keep me"


def test_a_few_thousand_synthetic_patches_through_a_worker_pool(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """2,000 synthetic patches: a 2-process pool and the in-process writer give the same store,
    and stored pixels equal an independent decoding (tifffile) of the archive's band files."""
    import tifffile

    from ingest.testing.archive_writer import iter_members
    from ingest.testing.samples import write_synthetic_sample

    tmp = tmp_path_factory.mktemp("few-thousand")
    archives = write_synthetic_sample(tmp / "archives", 2000, seed=11)
    pooled = ingest_local(archives, tmp / "pool.zarr", workers=2)
    inline = ingest_local(archives, tmp / "inline.zarr", workers=0)
    assert pooled.samples == inline.samples == 2000
    assert check(tmp / "pool.zarr") == []
    assert store_differences(tmp / "pool.zarr", tmp / "inline.zarr", same_location=True) == []
    group = zarr.open_group(str(tmp / "pool.zarr"), mode="r")
    index = {p: i for i, p in enumerate(np.asarray(group["patch_id"][:]).tolist())}
    wanted = set(archives.patches[::97])
    checked = 0
    for info, data in iter_members(archives.source):
        folder, _, file = info.name.rpartition("/")
        patch = folder.removeprefix("bigearthnet_v1_source/bigearthnet_v1_source_")
        if data is None or patch not in wanted or not file.endswith(".tif"):
            continue
        group_of, slot = BAND_SLOT[file.removesuffix(".tif")]
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            expected = tif.pages[0].asarray()
        np.testing.assert_array_equal(group[group_of.array_name][index[patch], slot], expected)
        checked += 1
    assert checked == 12 * len(wanted)
