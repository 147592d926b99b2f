"""The real data packaged with the project and the MGRS geography of patch names."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow.compute as pc
import pytest
import tifffile

from ingest.testing.release_data import (
    data_root,
    example_s1_patches,
    metadata_resources,
    mgrs_tile,
    official_s1_of,
    read_metadata,
    real_v2_files,
    tile_origin,
)


def test_real_v2_files_are_packaged_and_read_through_importlib_resources() -> None:
    files = real_v2_files()
    assert len(files) == 15  # 12 S2 bands, VH and VV, one reference map
    assert sum(p.startswith("BigEarthNet-S2/") for p in files) == 12
    assert sum(p.startswith("BigEarthNet-S1/") for p in files) == 2
    assert sum(p.startswith("Reference_Maps/") for p in files) == 1
    assert "ingest/testing/data/bigearthnet-v2" in str(data_root()).replace("\\", "/")
    sources = (data_root() / "SOURCES.md").read_text(encoding="utf-8")
    assert "CDLA-Permissive-1.0" in sources and "rico-hdl" in sources


def test_metadata_is_the_official_one() -> None:
    digests = [hashlib.md5(r.read_bytes()).hexdigest() for r in metadata_resources()]
    assert digests == ["55687065e77b6d0b0f1ff604a6e7b49c", "fe31856f4986d446c9468b59d6387c91"]
    table = read_metadata(["patch_id", "contains_seasonal_snow", "contains_cloud_or_shadow"])
    assert table.num_rows == 549_488
    snow = pc.sum(table["contains_seasonal_snow"]).as_py()
    cloud = pc.sum(table["contains_cloud_or_shadow"]).as_py()
    assert (snow, cloud) == (60_773, 8_677)


def test_example_s1_patches_pair_as_the_official_table_says() -> None:
    patches = example_s1_patches()
    assert len(patches) == 6
    pairs = {p.s2_name: p.name for p in patches}
    assert official_s1_of(pairs) == pairs
    for patch in patches:
        assert set(patch.files) == {"VV", "VH", "labels_metadata"}
        assert "lly" in json.loads(patch.files["labels_metadata"])["coordinates"]


@pytest.mark.parametrize(
    ("tile", "origin"),
    [
        ("T33UUP", (32633, 300000, 5400000)),
        ("T29UPU", (32629, 600000, 5900000)),
        ("T35VPK", (32635, 600000, 7000000)),
        ("T29SND", (32629, 499980, 4400000)),
    ],
)
def test_tile_origin_of_the_real_patches_tiles(tile: str, origin: tuple[int, int, int]) -> None:
    assert tile_origin(tile) == origin
    assert mgrs_tile(*origin) == tile[1:]


def test_tile_origin_places_the_real_v2_files_on_their_grid() -> None:
    epsg, x0, y0 = tile_origin("T33UUP")
    for path, data in real_v2_files().items():
        h, v = (int(n) for n in path.split("/")[2].split("_")[-2:])  # the patch folder's h, v
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            tiepoint = tif.pages[0].tags[33922].value
            keys = tif.pages[0].tags[34735].value
        assert tiepoint[3:5] == (x0 + 1200 * h, y0 - 1200 * v), path
        assert keys[-5] == epsg


def test_every_tile_of_the_metadata_round_trips() -> None:
    tiles = {p.split("_")[5] for p in read_metadata(["patch_id"])["patch_id"].to_pylist()}
    assert len(tiles) == 54  # MGRS tiles (115 tile folders: some tiles on several dates)
    assert {t for t in tiles if mgrs_tile(*tile_origin(t)) != t[1:]} == set()
