"""Stores for the reading tests: a contract-v2-shaped store (Sentinel-1 and reference maps,
no 43-class labels) made from the synthetic one with zarr-python, and stores on loopback S3."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

from ingest.store.zarrstore import BAND_CODEC
from ingest.testing.s3 import S3Server


def consolidate(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)  # not in the v3 spec yet
        zarr.consolidate_metadata(path)


@pytest.fixture(scope="module")
def v2_shaped(small_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 60 synthetic samples plus ``bands_s1`` (float32) and ``reference_map`` (uint16) in
    the contract's layout (shards of 16, inner chunk one sample, blosc), written by zarr-python
    itself, and without ``labels`` (v2 stores have ``labels19`` only)."""
    path = tmp_path_factory.mktemp("v2") / "v2.zarr"
    shutil.copytree(small_shards, path)
    group = zarr.open_group(path, mode="r+")
    names = group.create_array("band_s1", shape=(2,), dtype=str, dimension_names=["band_s1"])
    names[:] = np.array(["VV", "VH"], dtype=object)
    rng = np.random.default_rng(15)
    s1 = group.create_array(
        "bands_s1", shape=(60, 2, 120, 120), chunks=(1, 2, 120, 120), shards=(16, 2, 120, 120),
        dtype="float32", fill_value=0.0, compressors=BAND_CODEC,
        dimension_names=["sample", "band_s1", "y_10m", "x_10m"],
    )  # fmt: skip
    s1[...] = rng.normal(-15.0, 5.0, size=(60, 2, 120, 120)).astype(np.float32)
    maps = group.create_array(
        "reference_map", shape=(60, 120, 120), chunks=(1, 120, 120), shards=(16, 120, 120),
        dtype="uint16", fill_value=0, compressors=BAND_CODEC,
        dimension_names=["sample", "y_10m", "x_10m"],
    )  # fmt: skip
    maps[...] = rng.choice(np.array([0, 112, 211, 231, 311, 512], dtype=np.uint16), (60, 120, 120))
    del group["labels"]
    consolidate(path)
    return path


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def upload(s3: S3Server, local: Path, name: str) -> str:
    """Copy a store to the loopback S3; its URL."""
    fs = fsspec.filesystem("s3", **s3.storage_options)
    url = s3.location(name).url
    fs.put(str(local), url.removeprefix("s3://"), recursive=True)
    return url
