"""The resampling kernels against torch's ``interpolate`` and GDAL (rasterio) themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

from ingest.read.resample import gdal_axis, resize_into, torch_axis


def interpolate(values: np.ndarray, size: int, mode: str) -> np.ndarray:
    """ConfigILM's call: float32, one band at a time, align_corners for bilinear and bicubic."""
    tensor = torch.from_numpy(values.astype(np.float32))[None, None]
    corners = True if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(tensor, (size, size), mode=mode, align_corners=corners)
    return out[0, 0].numpy()


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize(("size_in", "size_out"), [(60, 120), (20, 120), (60, 128), (20, 128),
                                                   (120, 128), (120, 120), (60, 200), (7, 65)])  # fmt: skip
def test_torch_modes_bit_for_bit(mode: str, size_in: int, size_out: int) -> None:
    """Outputs over 64 x 64 take torch's general kernel: the same float32 values, except, for
    bicubic, where a row or column reads a border pixel twice (its taps clamped): there torch
    rounds differently: within 4 ulps, or 1e-3 where the taps cancel (values of up to 20,000)."""
    rng = np.random.default_rng(size_in * 1000 + size_out)
    values = rng.integers(0, 20_000, (3, 2, size_in, size_in), dtype=np.uint16)
    out = np.full((3, 2, size_out, size_out), np.nan, np.float32)
    axis = torch_axis(size_in, size_out, mode)
    resize_into(values, out, axis, axis)
    expected = np.stack([[interpolate(band, size_out, mode) for band in s] for s in values])
    clamped = np.array([mode == "bicubic" and len(set(taps)) < 4 for taps in axis.index.tolist()])
    border = clamped[:, None] | clamped[None, :]
    np.testing.assert_array_equal(out[..., ~border], expected[..., ~border])
    np.testing.assert_allclose(out[..., border], expected[..., border], rtol=5e-7, atol=1e-3)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize(("size_in", "size_out"), [(20, 60), (120, 60), (60, 40)])
def test_torch_small_outputs_within_two_ulps(mode: str, size_in: int, size_out: int) -> None:
    """Outputs of 64 x 64 or less: torch's separable kernel rounds differently (4 ulps)."""
    rng = np.random.default_rng(size_in + size_out)
    values = rng.integers(0, 20_000, (2, 1, size_in, size_in), dtype=np.uint16)
    out = np.empty((2, 1, size_out, size_out), np.float32)
    axis = torch_axis(size_in, size_out, mode)
    resize_into(values, out, axis, axis)
    expected = np.stack([[interpolate(s[0], size_out, mode)] for s in values])
    np.testing.assert_allclose(out, expected, rtol=5e-7, atol=0)


def test_float_input_and_normalization_into_chosen_channels() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(-15, 5, (4, 2, 120, 120)).astype(np.float32)
    out = np.zeros((4, 5, 60, 60), np.float32)
    axis = torch_axis(120, 60, "bilinear")
    mean, std = np.array([-12.5, -19.0], np.float32), np.array([5.0, 5.5], np.float32)
    resize_into(values, out, axis, axis, mean, std, rows=[1, 0], channels=[4, 2])
    plain = np.empty((4, 2, 60, 60), np.float32)
    resize_into(values, plain, axis, axis)
    np.testing.assert_array_equal(out[:, 4], (plain[:, 1] - mean[0]) / std[0])
    np.testing.assert_array_equal(out[:, 2], (plain[:, 0] - mean[1]) / std[1])
    assert not out[:, [0, 1, 3]].any()  # other channels untouched


def gdal_read(values: np.ndarray, size: int) -> np.ndarray:
    """rasterio's ``read(out_shape=..., resampling=bilinear, out_dtype="int32")`` of a GeoTIFF
    holding ``values`` (torchgeo's read)."""
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1,
               "dtype": values.dtype.name, "crs": "EPSG:32633",
               "transform": Affine(10, 0, 400_000, 0, -10, 5_000_000)}  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(values, 1)
        with memory.open() as src:
            return src.read(1, out_shape=(size, size), out_dtype="int32",
                            resampling=Resampling.bilinear)  # fmt: skip


@pytest.mark.parametrize("size_in", [60, 20, 120])
def test_gdal_bilinear_within_one(size_in: int) -> None:
    rng = np.random.default_rng(size_in)
    values = rng.integers(0, 20_000, (3, 1, size_in, size_in), dtype=np.uint16)
    out = np.empty((3, 1, 120, 120), np.float32)
    axis = gdal_axis(size_in, 120)
    resize_into(values, out, axis, axis)
    for k in range(3):
        expected = gdal_read(values[k, 0], 120)
        diff = np.abs(out[k, 0] - expected)
        assert diff.max() <= 1
        assert (diff == 0).mean() > 0.9  # mostly identical; only roundings of near-halves differ
        if size_in == 120:
            np.testing.assert_array_equal(out[k, 0], expected)


def test_gdal_rounds_float_like_rasterio() -> None:
    values = np.array([[-12.5, -12.49, 12.5, 0.49, -0.5, 3.7]] * 6, np.float32)
    out = np.empty((1, 1, 6, 6), np.float32)
    axis = gdal_axis(6, 6)
    resize_into(values[None, None], out, axis, axis)
    np.testing.assert_array_equal(out[0, 0], gdal_read(values, 6))
    np.testing.assert_array_equal(out[0, 0, 0], [-13, -12, 13, 0, -1, 4])


def test_shapes_are_checked() -> None:
    axis = torch_axis(60, 120, "bilinear")
    with pytest.raises(ValueError, match="axes for 60x60 -> 120x120"):
        resize_into(np.zeros((1, 1, 20, 20), np.uint16), np.zeros((1, 1, 120, 120), np.float32),
                    axis, axis)  # fmt: skip
    with pytest.raises(ValueError, match="float32, not float64"):
        resize_into(np.zeros((1, 1, 60, 60), np.uint16), np.zeros((1, 1, 120, 120)), axis, axis)
    with pytest.raises(ValueError, match="unknown interpolation 'area'"):
        torch_axis(60, 120, "area")
