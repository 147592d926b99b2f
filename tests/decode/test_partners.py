"""Sentinel-1 and reference-map decoding: the fast paths (float32 stripped; Deflate + predictor)
against tifffile on the real files and on built ones, and the dtype a caller asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from ingest.archive.members import ArchiveItem
from ingest.decode import geotiff
from ingest.decode.geotiff import decode_geotiff
from ingest.decode.partners import decode_reference_map, decode_s1
from ingest.errors import InputDataError
from ingest.testing.release_tiffs import encode_reference_map, encode_s1_band

DATA = Path(geotiff.__file__).parents[1] / "testing" / "data" / "bigearthnet-v2"
S1 = sorted((DATA / "BigEarthNet-S1").rglob("*.tif"))
MAP = next((DATA / "Reference_Maps").rglob("*.tif"))


@pytest.mark.parametrize("path", S1, ids=lambda p: p.name)
def test_real_s1_bands_on_the_fast_path_equal_tifffile(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = path.read_bytes()
    monkeypatch.setattr(geotiff, "decode_with_tifffile", None)  # the fast path or nothing
    raster = decode_geotiff(data, path.name, np.float32)
    assert raster.pixels.dtype == np.float32
    np.testing.assert_array_equal(raster.pixels, tifffile.imread(path))
    with tifffile.TiffFile(path) as tif:
        assert raster.x_ul == tif.pages.first.tags["ModelTiepointTag"].value[3]


def test_the_real_map_on_the_fast_path_equals_tifffile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geotiff, "decode_with_tifffile", None)
    raster = decode_geotiff(MAP.read_bytes(), MAP.name)
    np.testing.assert_array_equal(raster.pixels, tifffile.imread(MAP))


def test_built_maps_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        pixels = rng.choice(np.array([0, 211, 231, 311, 999, 65535], np.uint16), (120, 120))
        data = encode_reference_map(pixels, epsg=32633, x_ul=1.0, y_ul=2.0)
        np.testing.assert_array_equal(decode_geotiff(data, "m").pixels, pixels)


def test_the_dtype_asked_for_is_checked_even_after_a_cached_parse() -> None:
    s1 = S1[0].read_bytes()
    decode_geotiff(s1, "vv", np.float32)  # remembered
    with pytest.raises(InputDataError, match="dtype float32, expected uint16"):
        decode_geotiff(s1, "vv", np.uint16)
    zeros = encode_s1_band(np.zeros((120, 120), np.float32), epsg=32633, x_ul=0.0, y_ul=0.0)
    assert decode_geotiff(zeros, "x", np.float32).pixels.dtype == np.float32


def test_decode_s1_and_map_items() -> None:
    vv, vh = (p for b in ("VV", "VH") for p in S1 if p.name.endswith(f"_{b}.tif"))
    item = ArchiveItem(
        "BigEarthNet-S1", "s1", {"VV.tif": vv.read_bytes(), "VH.tif": vh.read_bytes()}
    )
    out = np.empty((2, 120, 120), np.float32)
    georef = decode_s1(item, out)
    np.testing.assert_array_equal(out[0], tifffile.imread(vv))
    np.testing.assert_array_equal(out[1], tifffile.imread(vh))
    assert georef[0] == 32633
    bad = ArchiveItem("BigEarthNet-S1", "s1", {"VV.tif": vv.read_bytes()})
    with pytest.raises(InputDataError, match="missing S1 band VH"):
        decode_s1(bad, out)
    maps = ArchiveItem("Reference_Maps", "p", {"reference_map.tif": MAP.read_bytes()})
    grid = np.empty((120, 120), np.uint16)
    decode_reference_map(maps, grid)
    np.testing.assert_array_equal(grid, tifffile.imread(MAP))
