"""The test kit's GeoTIFF writer: byte-identical to the real BigEarthNet files, and other layouts."""

from __future__ import annotations

import functools
import io
import tarfile
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile

from ingest.testing.geotiff import encode_band

EXAMPLE = "BigEarthNet-S2-Example.tar.bz2"


@functools.cache
def real_bands() -> dict[str, bytes]:
    """Every band file of the six real example patches, by file name."""
    archive = files("bigearthnet_common").joinpath(EXAMPLE).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:bz2") as tar:
        return {
            PurePosixPath(member.name).name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.name.endswith(".tif")
        }


def read_with_tifffile(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels and the encode_band keywords, read independently of the project's decoder."""
    page = tifffile.TiffFile(io.BytesIO(data)).pages.first
    scale, tiepoint = page.tags[33550].value, page.tags[33922].value
    geokeys = page.tags[34735].value
    epsg = geokeys[4 + 4 * [geokeys[i] for i in range(4, len(geokeys), 4)].index(3072) + 3]
    georef = {"epsg": epsg, "x_ul": tiepoint[3], "y_ul": tiepoint[4], "gsd": scale[0]}
    return page.asarray(), georef


def geo_tags(data: bytes) -> dict[int, Any]:
    page = tifffile.TiffFile(io.BytesIO(data)).pages.first
    return {code: page.tags[code].value for code in (33550, 33922, 34735, 34737)}


def test_example_has_72_band_files() -> None:
    assert len(real_bands()) == 72
    assert {len(data) for data in real_bands().values()} == {29_192, 7_560, 1_160}


@pytest.mark.parametrize("member", sorted(real_bands()))
def test_stripped_is_byte_identical_to_the_real_file(member: str) -> None:
    real = real_bands()[member]
    pixels, georef = read_with_tifffile(real)
    assert encode_band(pixels, **georef, layout="stripped") == real


def one_patch() -> list[str]:
    """One real band file per size: 120×120, 60×60, 20×20."""
    return sorted(m for m in real_bands() if m.startswith("S2B_MSIL2A_20170924T93020_69_24_"))[:3]


@pytest.mark.parametrize("member", one_patch())
def test_cog_is_tiled_deflate_little_endian_with_the_same_geo_tags(member: str) -> None:
    real = real_bands()[member]
    pixels, georef = read_with_tifffile(real)
    data = encode_band(pixels, **georef, layout="cog")
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        assert tif.byteorder == "<"
        assert page.is_tiled
        assert (page.tilelength, page.tilewidth) == (16, 16)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        np.testing.assert_array_equal(page.asarray(), pixels)
    assert geo_tags(data) == geo_tags(real)


@pytest.mark.parametrize("member", one_patch())
def test_bigendian_is_stripped_uncompressed_with_the_same_geo_tags(member: str) -> None:
    real = real_bands()[member]
    pixels, georef = read_with_tifffile(real)
    data = encode_band(pixels, **georef, layout="bigendian")
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        assert tif.byteorder == ">"
        assert not page.is_tiled
        assert page.compression == tifffile.COMPRESSION.NONE
        np.testing.assert_array_equal(page.asarray(), pixels)
    assert geo_tags(data) == geo_tags(real)


@pytest.mark.parametrize("layout", ["stripped", "cog", "bigendian"])
def test_southern_single_digit_zone_reads_back_with_rasterio(layout: Any, tmp_path: Path) -> None:
    pixels = np.arange(400, dtype=np.uint16).reshape(20, 20)
    data = encode_band(pixels, epsg=32709, x_ul=500_040.0, y_ul=9_000_000.0, gsd=60, layout=layout)
    tags = geo_tags(data)
    assert tags[34737] == "WGS 84 / UTM zone 9S|WGS 84|"
    assert tags[34735][12:20] == (1026, 34737, 21, 0, 2049, 34737, 7, 21)
    path = tmp_path / "band.tif"
    path.write_bytes(data)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32709
        assert tuple(src.transform)[:6] == (60.0, 0.0, 500_040.0, 0.0, -60.0, 9_000_000.0)
        np.testing.assert_array_equal(src.read(1), pixels)


def test_stripped_keeps_strips_word_aligned_for_an_odd_length_citation() -> None:
    data = encode_band(np.zeros((20, 20), np.uint16), epsg=32609, x_ul=0, y_ul=0, gsd=60)
    page = tifffile.TiffFile(io.BytesIO(data)).pages.first
    assert page.dataoffsets[0] % 2 == 0
    assert len(data) == page.dataoffsets[0] + 800


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((20, 20), np.uint8),
        np.zeros((20, 20), np.int16),
        np.zeros((20, 20), np.float32),
        np.zeros((20, 20, 1), np.uint16),
        np.zeros(400, np.uint16),
        np.zeros((0, 20), np.uint16),
        [[1, 2], [3, 4]],
    ],
    ids=["uint8", "int16", "float32", "3-D", "1-D", "empty", "list"],
)
def test_rejects_anything_but_2d_uint16(pixels: Any) -> None:
    with pytest.raises(ValueError, match="pixels must"):
        encode_band(pixels, epsg=32633, x_ul=0, y_ul=0, gsd=60)


@pytest.mark.parametrize("epsg", [4326, 32600, 32661, 32700, 3035])
def test_rejects_a_crs_other_than_wgs84_utm(epsg: int) -> None:
    with pytest.raises(ValueError, match="epsg must be WGS 84 / UTM"):
        encode_band(np.zeros((20, 20), np.uint16), epsg=epsg, x_ul=0, y_ul=0, gsd=60)


def test_rejects_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="unknown layout 'lzw'"):
        encode_band(np.zeros((20, 20), np.uint16), epsg=32633, x_ul=0, y_ul=0, gsd=60, layout="lzw")  # type: ignore[arg-type]
