"""The sample archive builder against the real data it imitates.

The real example patches of the ``bigearthnet-common`` wheel, the official snow/cloud lists and the
recorded MLHub item in ``/work/shared/reference/mlhub-recorded/`` are read independently here; the
synthetic sample must be structurally indistinguishable from the real one (members, TIFF layout,
JSON shapes), and an independent reader (rasterio) must find the georeferencing the items promise.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.resources
import io
import json
import posixpath
import re
import struct
import tarfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile

from ingest.nomenclature import BAND_SLOT, CLASSES_43, PATCH_NAME
from ingest.testing.archive_writer import (
    ARCHIVE_MTIME,
    Member,
    iter_members,
)
from ingest.testing.geotiff import Layout
from ingest.testing.sample_stac import PatchFacts, bbox_of, buggy_footprint
from ingest.testing.samples import (
    LabelOrder,
    SampleArchives,
    SampleOptions,
    real_patches,
    synthetic_facts,
    write_real_sample,
    write_synthetic_sample,
)

RECORDED = Path("/work/shared/reference/mlhub-recorded")
SNOWY_REAL_PATCH = "S2B_MSIL2A_20180204T94161_57_38"
SOURCE, LABELS = "bigearthnet_v1_source", "bigearthnet_v1_labels"
REAL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A")
SOURCE_FILES = [f"{b}.tif" for b in REAL_BANDS] + ["stac.json"]
LABEL_FILES = ["labels.geojson", "stac.json"]
FILE_BYTES = {120: 29192, 60: 7560, 20: 1160}
SYNTHETIC_PATCHES = 40
SYNTHETIC_SEED = 4

needs_recordings = pytest.mark.skipif(not RECORDED.is_dir(), reason="reference recordings absent")


# --- helpers: independent readings ----------------------------------------------------------


def members(archive: Path) -> list[Member]:
    return list(iter_members(archive))


def files(archive: Path) -> dict[str, bytes]:
    return {info.name: data for info, data in iter_members(archive) if data is not None}


def items(archive: Path) -> list[dict[str, Any]]:
    """Item documents in archive order."""
    return [
        json.loads(data)
        for name, data in files(archive).items()
        if name.count("/") == 2 and name.endswith("/stac.json")
    ]


def patch_of(item: dict[str, Any]) -> str:
    return str(item["id"]).split("_", 3)[3]  # bigearthnet_v1_{labels|source}_<patch>


def wheel_example() -> dict[str, dict[str, bytes]]:
    """patch -> {file suffix -> bytes} straight from the wheel's tarball."""
    out: dict[str, dict[str, bytes]] = {}
    resource = importlib.resources.files("bigearthnet_common") / "BigEarthNet-S2-Example.tar.bz2"
    with resource.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:bz2") as tar:
        for info in tar.getmembers():
            if info.isfile():
                patch, file = info.name.split("/")[1:]
                extracted = tar.extractfile(info)
                assert extracted is not None
                out.setdefault(patch, {})[file.removeprefix(patch + "_")] = extracted.read()
    return out


def official_list(name: str) -> set[str]:
    data = (importlib.resources.files("bigearthnet_common") / name).read_bytes()
    return set(bz2.decompress(data).decode().split("\r\n")) - {""}


def shape(value: Any) -> Any:
    """Keys and value types, recursively; a list is the set of its elements' shapes."""
    if isinstance(value, dict):
        return {key: shape(v) for key, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return type(value).__name__


def expected_names(collection: str, item_ids: Iterable[str], item_files: list[str]) -> list[str]:
    names = [collection, f"{collection}/collection.json"]
    for item_id in item_ids:
        names += [f"{collection}/{item_id}"] + [f"{collection}/{item_id}/{f}" for f in item_files]
    return names


def tiff_structure(data: bytes) -> tuple[Any, ...]:
    """What must not differ between two BigEarthNet band files of one size: file size, tags with
    their types and counts, the image layout tags' values, strip offsets and byte order."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        tags = tuple((t.code, int(t.dtype), t.count) for t in page.tags.values())
        layout = tuple(
            (t.name, t.value if isinstance(t.value, int) else tuple(t.value))
            for t in page.tags.values()
            if t.code in (256, 257, 258, 259, 277, 278, 279, 284, 339)
        )
        return len(data), tags, layout, tuple(page.dataoffsets), tif.byteorder


def gzip_ratio(archive: Path) -> float:
    data = archive.read_bytes()
    tar_bytes: int = struct.unpack("<I", data[-4:])[0]  # gzip's ISIZE: fine below 4 GiB
    return len(data) / tar_bytes


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(
        tmp_path_factory.mktemp("synthetic-sample"), SYNTHETIC_PATCHES, SYNTHETIC_SEED
    )


@pytest.fixture(scope="module")
def facts() -> dict[str, PatchFacts]:
    return {f.name: f for f in synthetic_facts(SYNTHETIC_PATCHES, SYNTHETIC_SEED)}


# --- the real sample ------------------------------------------------------------------------


def test_real_sample_holds_the_six_wheel_patches(real: SampleArchives) -> None:
    assert real.patches == tuple(wheel_example())  # the wheel's (unsorted) order
    assert [patch_of(i) for i in items(real.source)] == list(real.patches)
    assert [patch_of(i) for i in items(real.labels)] == list(real.patches)
    assert [p.name for p in real_patches()] == list(real.patches)


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_member_names_types_and_owners(kind: str, request: pytest.FixtureRequest) -> None:
    archives: SampleArchives = request.getfixturevalue(kind)
    for archive, collection, item_files in (
        (archives.source, SOURCE, SOURCE_FILES),
        (archives.labels, LABELS, LABEL_FILES),
    ):
        listed = members(archive)
        ids = [f"{collection}_{p}" for p in archives.patches]
        assert [info.name for info, _ in listed] == expected_names(collection, ids, item_files)
        for info, data in listed:
            is_dir = info.name.count("/") < 2 and not info.name.endswith(".json")
            assert (info.type, info.mode) == (
                (tarfile.DIRTYPE, 0o755) if is_dir else (tarfile.REGTYPE, 0o644)
            )
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root")
            assert info.mtime == ARCHIVE_MTIME
            assert (data is None) == is_dir


def test_archives_are_gnu_tar_in_a_plain_gzip(real: SampleArchives) -> None:
    raw = real.source.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # deflate, FLG 0: no file name, as the real archives
    assert raw[9] == 3  # OS: Unix, as recorded
    assert struct.unpack("<I", raw[4:8])[0] == ARCHIVE_MTIME
    tar = gzip.decompress(raw)
    assert tar[257:265] == b"ustar  \0"  # GNU magic
    assert len(tar) % tarfile.RECORDSIZE == 0


def test_real_band_files_are_the_wheels_bytes(real: SampleArchives) -> None:
    wheel = wheel_example()
    archived = files(real.source)
    for patch, wheel_files in wheel.items():
        for band in REAL_BANDS:
            assert archived[f"{SOURCE}/{SOURCE}_{patch}/{band}.tif"] == wheel_files[f"{band}.tif"]


def test_real_flags_follow_the_official_lists(real: SampleArchives) -> None:
    snowy, cloudy = (
        official_list("patches_with_seasonal_snow.csv.bz2"),
        official_list("patches_with_cloud_and_shadow.csv.bz2"),
    )
    flags = {patch_of(i): i["properties"] for i in items(real.labels)}
    for patch, props in flags.items():
        assert props["seasonal_snow"] == ("true" if patch in snowy else "false")
        assert props["cloud_and_shadow"] == ("true" if patch in cloudy else "false")
    assert [p for p, props in flags.items() if props["seasonal_snow"] == "true"] == [
        SNOWY_REAL_PATCH
    ]
    assert {p.name: (p.snow, p.cloud) for p in real_patches()} == {
        p: (p in snowy, p in cloudy) for p in flags
    }


def test_real_labels_and_time_come_from_the_metadata(real: SampleArchives) -> None:
    wheel = wheel_example()
    for item in items(real.labels):
        meta = json.loads(wheel[patch_of(item)]["labels_metadata.json"])
        assert item["properties"]["labels"] == meta["labels"]
        assert item["properties"]["datetime"] == meta["acquisition_date"].replace(" ", "T") + "Z"
    # The name says T94161 (09:41:61); the metadata's 09:41:56 wins.
    by_patch = {patch_of(i): i for i in items(real.source)}
    assert by_patch[SNOWY_REAL_PATCH]["properties"]["datetime"] == "2018-02-04T09:41:56Z"


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_each_label_item_links_one_existing_source_item(
    kind: str, request: pytest.FixtureRequest
) -> None:
    archives: SampleArchives = request.getfixturevalue(kind)
    source_names = set(files(archives.source))
    for item in items(archives.labels):
        links = [link for link in item["links"] if link["rel"] == "source"]
        assert len(links) == 1
        here = f"{LABELS}/{item['id']}"
        target = posixpath.normpath(posixpath.join(LABELS, item["id"], links[0]["href"]))
        assert links[0]["href"] == f"../../{SOURCE}/{SOURCE}_{patch_of(item)}/stac.json", here
        assert target.removeprefix("../") in source_names, here


@needs_recordings
def test_source_item_has_the_recorded_item_shape(tmp_path: Path) -> None:
    recorded = json.loads((RECORDED / "bigearthnet_v1_source_item.json").read_text())
    with_b10 = items(write_real_sample(tmp_path, SampleOptions(extra_b10=True)).source)[0]
    # Inside an archive links are relative {rel, href} (as in the recorded real archive), the API
    # served {rel, href, title, type}: everything else must match key for key, type for type.
    assert {link["rel"] for link in with_b10["links"]} == {"collection", "parent"}
    for document in (recorded, with_b10):
        document.pop("links")
    assert shape(with_b10) == shape(recorded)
    assert with_b10["properties"]["eo:bands"] == recorded["properties"]["eo:bands"]
    for band, asset in recorded["assets"].items():
        assert with_b10["assets"][band]["eo:bands"] == asset["eo:bands"]
        assert with_b10["assets"][band]["type"] == asset["type"]
        assert with_b10["assets"][band]["href"] == f"{band}.tif"
    plain = items(write_real_sample(tmp_path / "plain").source)[0]
    assert set(plain["assets"]) == set(recorded["assets"]) - {"B10"}


@needs_recordings
def test_geometry_bug_reproduces_the_recorded_items() -> None:
    """Patch 57_6 of the recorded page shares its tile with the real example patch 57_38."""
    page = json.loads((RECORDED / "bigearthnet_v1_source_items_page.json").read_text())
    recorded = next(f for f in page["features"] if f["id"].endswith("T94161_57_6"))
    # 57_38's corner is (668400, 6954420); v = 6 is 32 patches further north.
    ring = buggy_footprint(
        PatchFacts("57_6", 32635, 668400.0, 6954420.0 + 32 * 1200, "", (), False, False)
    )
    assert np.allclose(ring, recorded["geometry"]["coordinates"][0], rtol=1e-12, atol=0)
    assert np.allclose(bbox_of(ring), recorded["bbox"], rtol=1e-12, atol=0)


# --- synthetic against real -----------------------------------------------------------------


def test_synthetic_tiffs_have_the_real_layout(
    real: SampleArchives, synthetic: SampleArchives
) -> None:
    def structures(archive: Path) -> dict[str, set[tuple[Any, ...]]]:
        found: dict[str, set[tuple[Any, ...]]] = {}
        for name, data in files(archive).items():
            if name.endswith(".tif"):
                found.setdefault(name.rsplit("/", 1)[1], set()).add(tiff_structure(data))
        return found

    real_structures, synthetic_structures = structures(real.source), structures(synthetic.source)
    assert synthetic_structures == real_structures
    for band, (one,) in real_structures.items():
        size, _, layout, _, byteorder = one
        width = dict(layout)["ImageWidth"]
        assert size == FILE_BYTES[width], band
        assert byteorder == "<", band
        assert dict(layout)["RowsPerStrip"] == (34 if width == 120 else width)


def test_synthetic_json_has_the_real_shapes(
    real: SampleArchives, synthetic: SampleArchives
) -> None:
    def shapes(archive: Path, suffix: str) -> set[str]:
        found = files(archive).items()
        return {json.dumps(shape(json.loads(d))) for n, d in found if n.endswith(suffix)}

    for suffix in ("/stac.json", "/collection.json"):
        assert shapes(synthetic.source, suffix) == shapes(real.source, suffix), suffix
    for suffix in ("/stac.json", "/collection.json", "/labels.geojson"):
        assert shapes(synthetic.labels, suffix) == shapes(real.labels, suffix), suffix
    for sample in (real, synthetic):
        for collection_file in (sample.source, sample.labels):
            document = json.loads(next(iter(files(collection_file).values())))
            assert [link["rel"] for link in document["links"]] == ["item"] * len(sample.patches)
            assert "title" not in document


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_collection_extent_spans_the_items(kind: str, request: pytest.FixtureRequest) -> None:
    archives: SampleArchives = request.getfixturevalue(kind)
    for archive, collection in ((archives.source, SOURCE), (archives.labels, LABELS)):
        document = json.loads(files(archive)[f"{collection}/collection.json"])
        boxes = np.array([item["bbox"] for item in items(archive)])
        times = sorted(item["properties"]["datetime"] for item in items(archive))
        expected = [*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)]
        assert document["extent"]["spatial"]["bbox"] == [expected]
        assert document["extent"]["temporal"]["interval"] == [[times[0], times[-1]]]


def test_synthetic_gzip_ratio_is_close_to_the_real_one(
    real: SampleArchives, synthetic: SampleArchives
) -> None:
    assert abs(gzip_ratio(synthetic.source) - gzip_ratio(real.source)) < 0.03


def _rasterio_corners(archive: Path, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """patch -> [(band, shape, dtype, epsg, ulx, uly) per band file], read by rasterio."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name, data in files(archive).items():
        if name.endswith(".tif"):
            path = tmp_path / "band.tif"
            path.write_bytes(data)
            with rasterio.open(path) as band:
                patch = name.split("/")[1].removeprefix(f"{SOURCE}_")
                found.setdefault(patch, []).append(
                    (
                        name[-7:-4],
                        band.shape,
                        band.dtypes[0],
                        band.crs.to_epsg(),
                        band.transform.c,
                        band.transform.f,
                    )
                )
    return found


def test_rasterio_reads_the_real_georeferencing(real: SampleArchives, tmp_path: Path) -> None:
    metadata = {p.name: p.metadata for p in real_patches()}
    for patch, bands in _rasterio_corners(real.source, tmp_path).items():
        corner = metadata[patch]["coordinates"]
        epsg = int(re.findall(r"\d+", metadata[patch]["projection"])[-1])
        assert len(bands) == 12
        for band, shape_, dtype, crs, ulx, uly in bands:
            size = BAND_SLOT[band][0].size
            assert (shape_, dtype) == ((size, size), "uint16"), band
            assert (crs, ulx, uly) == (epsg, corner["ulx"], corner["uly"]), (patch, band)


def test_rasterio_reads_the_synthetic_georeferencing(
    synthetic: SampleArchives, facts: dict[str, PatchFacts], tmp_path: Path
) -> None:
    # The tile origin is the same for every patch of an acquisition: corner = origin + 1200·(h, −v).
    origins: dict[str, set[tuple[float, float]]] = {}
    for patch, bands in _rasterio_corners(synthetic.source, tmp_path).items():
        h, v = (int(x) for x in patch.rsplit("_", 2)[1:])
        assert len(bands) == 12
        for band, shape_, dtype, crs, ulx, uly in bands:
            size = BAND_SLOT[band][0].size
            assert (shape_, dtype) == ((size, size), "uint16"), band
            assert (crs, ulx, uly) == (facts[patch].epsg, facts[patch].ulx, facts[patch].uly)
        origins.setdefault(patch.rsplit("_", 2)[0], set()).add((ulx - 1200 * h, uly + 1200 * v))
    assert all(len(o) == 1 for o in origins.values())
    assert len(origins) > 1
    for ((x0, y0),) in origins.values():
        assert 300000 <= x0 <= 600000
        assert 4_000_000 <= y0 <= 7_700_000
        assert x0 % 60 == y0 % 60 == 0  # 60 m pixels stay on one grid


# --- synthetic content ----------------------------------------------------------------------


def test_synthetic_names_labels_and_flags_look_real() -> None:
    planned = synthetic_facts(2000, seed=1)
    names = [f.name for f in planned]
    assert len(set(names)) == len(names)
    times = [match["time"] for match in map(PATCH_NAME.match, names) if match]
    assert len(times) == len(names)
    five_digit = sum(len(t) == 5 for t in times) / len(names)
    assert 0.08 <= five_digit <= 0.16
    assert 25 <= len({n.rsplit("_", 2)[0] for n in names}) <= 48  # a few dozen acquisitions
    assert all("2017-06-01" <= f.datetime[:10] <= "2018-05-31" for f in planned)
    assert {f.epsg for f in planned} <= set(range(32629, 32637))
    assert all(
        1 <= len(f.labels) <= 5 and list(f.labels) == sorted(f.labels, key=CLASSES_43.index)
        for f in planned
    )
    counts = Counter(label for f in planned for label in f.labels)
    assert counts["Mixed forest"] > 10 * counts["Port areas"]
    assert not any(f.snow and f.cloud for f in planned)
    assert 0.07 <= sum(f.snow for f in planned) / len(planned) <= 0.14
    assert 0.005 <= sum(f.cloud for f in planned) / len(planned) <= 0.03


def test_synthetic_pixels_are_plausible_reflectances(
    synthetic: SampleArchives, facts: dict[str, PatchFacts]
) -> None:
    clear = []
    for name, data in files(synthetic.source).items():
        if name.endswith(".tif"):
            pixels = tifffile.imread(io.BytesIO(data))
            assert pixels.dtype == np.uint16
            assert pixels.min() >= 1
            patch = facts[name.split("/")[1].removeprefix(f"{SOURCE}_")]
            if not (patch.snow or patch.cloud):
                clear.append(pixels.ravel())
    values = np.concatenate(clear)
    assert np.percentile(values, 95) < 5000 < values.max()


def test_same_inputs_give_the_same_bytes(
    tmp_path: Path, real: SampleArchives, synthetic: SampleArchives
) -> None:
    again = write_real_sample(tmp_path / "real")
    assert again.source.read_bytes() == real.source.read_bytes()
    assert again.labels.read_bytes() == real.labels.read_bytes()
    twice = write_synthetic_sample(tmp_path / "synthetic", SYNTHETIC_PATCHES, SYNTHETIC_SEED)
    assert twice.source.read_bytes() == synthetic.source.read_bytes()
    assert twice.labels.read_bytes() == synthetic.labels.read_bytes()
    other = write_synthetic_sample(tmp_path / "other", SYNTHETIC_PATCHES, SYNTHETIC_SEED + 1)
    assert set(other.patches).isdisjoint(synthetic.patches)


# --- options --------------------------------------------------------------------------------


def test_bool_flags(tmp_path: Path) -> None:
    archives = write_synthetic_sample(tmp_path, 30, options=SampleOptions(flags="bool"))
    for item in items(archives.labels):
        assert isinstance(item["properties"]["seasonal_snow"], bool)
        assert isinstance(item["properties"]["cloud_and_shadow"], bool)
    for name, data in files(archives.labels).items():
        if name.endswith(".geojson"):
            assert isinstance(json.loads(data)["features"][0]["properties"]["seasonal_snow"], bool)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_label_order(order: LabelOrder, tmp_path: Path) -> None:
    archives = write_real_sample(tmp_path, SampleOptions(label_order=order))
    in_labels = [patch_of(i) for i in items(archives.labels)]
    assert [patch_of(i) for i in items(archives.source)] == list(archives.patches)
    assert sorted(in_labels) == sorted(archives.patches)
    assert in_labels != list(archives.patches)
    if order == "reversed":
        assert in_labels == list(archives.patches)[::-1]
    collection = json.loads(files(archives.labels)[f"{LABELS}/collection.json"])
    assert [link["href"] for link in collection["links"]] == [
        f"{LABELS}_{p}/stac.json" for p in in_labels
    ]


@pytest.mark.parametrize("layout", ["cog", "bigendian"])
def test_band_layouts(layout: Layout, tmp_path: Path) -> None:
    real = {
        f"{b}.tif": d
        for p in real_patches()
        for b, d in p.bands.items()
        if p.name == SNOWY_REAL_PATCH
    }
    for kind, archives in (
        ("real", write_real_sample(tmp_path / "r", SampleOptions(band_layout=layout))),
        (
            "synthetic",
            write_synthetic_sample(tmp_path / "s", 3, options=SampleOptions(band_layout=layout)),
        ),
    ):
        for name, data in files(archives.source).items():
            if name.endswith(".tif"):
                with tifffile.TiffFile(io.BytesIO(data)) as tif:
                    page = tif.pages.first
                    if layout == "cog":
                        assert page.is_tiled, name
                        assert page.compression != 1, name
                    else:
                        assert tif.byteorder == ">", name
                        assert not page.is_tiled, name
                    if kind == "real" and SNOWY_REAL_PATCH in name:
                        assert np.array_equal(
                            page.asarray(), tifffile.imread(io.BytesIO(real[name[-7:]]))
                        )


def test_extra_b10(tmp_path: Path) -> None:
    archives = write_synthetic_sample(tmp_path, 5, options=SampleOptions(extra_b10=True))
    archived = files(archives.source)
    for item in items(archives.source):
        assert item["assets"]["B10"]["href"] == "B10.tif"
        b10 = archived[f"{SOURCE}/{item['id']}/B10.tif"]
        assert tifffile.imread(io.BytesIO(b10)).shape == (20, 20)
        assert len(b10) == FILE_BYTES[20]
    ids = [f"{SOURCE}_{p}" for p in archives.patches]
    assert list(archived) == [
        n for n in expected_names(SOURCE, ids, sorted([*SOURCE_FILES, "B10.tif"])) if n in archived
    ]
