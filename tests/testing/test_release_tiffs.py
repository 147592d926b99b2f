"""The release TIFF encoder against the real v2 files packaged with the project."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from ingest.testing.release_data import real_v2_files
from ingest.testing.release_tiffs import encode_reference_map, encode_s1_band, encode_v2_band
from ingest.testing.samples import real_patches

S2 = "BigEarthNet-S2/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43_"
S1 = "BigEarthNet-S1/S1A_IW_GRDH_1SDV_20170613T165043/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48_"
MAP = "Reference_Maps/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57/S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57_reference_map.tif"
GSD = {120: 10.0, 60: 20.0, 20: 60.0}


def tags(data: bytes) -> dict[int, tuple[int, int, object]]:
    """tag -> (type, count, value) of the first page."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return {t.code: (int(t.dtype), t.count, t.value) for t in tif.pages[0].tags.values()}


@pytest.mark.parametrize(
    "band", ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
)
def test_v2_band_reproduces_the_real_file_byte_for_byte(band: str) -> None:
    real = real_v2_files()[f"{S2}{band}.tif"]
    pixels = tifffile.imread(io.BytesIO(real))
    made = encode_v2_band(pixels, epsg=32633, x_ul=390000, y_ul=5348400, gsd=GSD[pixels.shape[0]])
    assert made == real
    assert len(real) == {120: 29196, 60: 7572, 20: 1172}[pixels.shape[0]]


def test_v2_is_v1_plus_the_nodata_tag() -> None:
    v1 = real_patches()[0]
    meta = v1.metadata["coordinates"]
    made_of = {}
    for band in ("B02", "B05", "B01"):
        pixels = tifffile.imread(io.BytesIO(v1.bands[band]))
        made = made_of[band] = encode_v2_band(
            pixels, epsg=32629, x_ul=meta["ulx"], y_ul=meta["uly"], gsd=GSD[pixels.shape[0]]
        )
        v1_tags, v2_tags = tags(v1.bands[band]), tags(made)
        assert set(v2_tags) - set(v1_tags) == {42113}
        assert v2_tags[42113] == (2, 2, "0")
        for code in set(v1_tags) - {273, 279}:  # only the strip positions move
            assert v2_tags[code][2] == v1_tags[code][2], code
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(made)), pixels)
    # The real v2 files' tags (and their types) are exactly what the encoder writes.
    for band in made_of:
        real = tags(real_v2_files()[f"{S2}{band}.tif"])
        made_tags = tags(made_of[band])
        assert {code: t[:2] for code, t in real.items()} == {
            code: t[:2] for code, t in made_tags.items()
        }


@pytest.mark.parametrize("polarisation", ["VH", "VV"])
def test_s1_band_reproduces_the_real_file_byte_for_byte(polarisation: str) -> None:
    real = real_v2_files()[f"{S1}{polarisation}.tif"]
    pixels = tifffile.imread(io.BytesIO(real))
    assert pixels.dtype == np.float32 and pixels.shape == (120, 120)
    assert encode_s1_band(pixels, epsg=32633, x_ul=384000, y_ul=5342400) == real
    assert tags(real)[278][2] == 17


def test_reference_map_has_the_real_maps_tags_and_layout() -> None:
    real = real_v2_files()[MAP]
    pixels = tifffile.imread(io.BytesIO(real))
    assert sorted(np.unique(pixels).tolist()) == [211, 231, 311, 313]
    made = encode_reference_map(pixels, epsg=32633, x_ul=331200, y_ul=5331600)
    real_tags, made_tags = tags(real), tags(made)
    assert list(real_tags) == list(made_tags)  # same tags, same order
    for code in set(real_tags) - {273, 279}:  # deflate bytes differ (GDAL used another library)
        assert made_tags[code] == real_tags[code], code
    assert made_tags[259][2] == 8 and made_tags[317][2] == 2 and made_tags[278][2] == 34
    assert made_tags[42113] == (2, 2, "0")
    assert made[:416] != real[:416]  # the strip offsets differ...
    assert made[:200] == real[:200]  # ...but the header and the IFD up to them do not
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(made)), pixels)


def test_encoders_refuse_wrong_pixels() -> None:
    with pytest.raises(ValueError, match="uint16"):
        encode_v2_band(np.zeros((120, 120), np.float32), epsg=32633, x_ul=0, y_ul=0, gsd=10)
    with pytest.raises(ValueError, match="float32"):
        encode_s1_band(np.zeros((120, 120), np.uint16), epsg=32633, x_ul=0, y_ul=0)
