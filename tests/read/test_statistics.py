"""``ingest stats``: per-band mean and std from the store, against numpy over the whole array
(resampled by torch itself), recorded, shown by ``ingest info`` and used by ``normalize="store"``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr
from click.testing import CliRunner

import ingest
from ingest.cli import main
from ingest.errors import UsageError
from ingest.read.statistics import compute, merge, partials, record
from ingest.store.verify import check

GROUPS = {
    "bands_10m": ("B02", "B03", "B04", "B08"),
    "bands_20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "bands_60m": ("B01", "B09"),
    "bands_s1": ("VV", "VH"),
}


def expected(
    pixels: dict[str, np.ndarray], rows: np.ndarray, size: int, mode: str
) -> dict[str, tuple[float, float]]:
    """numpy over the whole selected array, each band resampled by torch's interpolate."""
    out = {}
    for name, bands in GROUPS.items():
        values = torch.from_numpy(pixels[name][rows].astype(np.float32))
        if values.shape[-1] != size:
            corners = True if mode in ("bilinear", "bicubic") else None
            values = F.interpolate(values, (size, size), mode=mode, align_corners=corners)
        array = values.numpy().astype(np.float64)
        for k, band in enumerate(bands):
            out[band] = (float(array[:, k].mean()), float(array[:, k].std()))
    return out


@pytest.fixture
def store(v2_store: Any, tmp_path: Path) -> Path:
    path = tmp_path / "copy.zarr"
    shutil.copytree(v2_store.path, path)
    return path


@pytest.mark.parametrize(("split", "size", "mode"), [("train", 120, "bilinear"), (None, 128, "bicubic"),
                                                     ("test", 60, "nearest")])  # fmt: skip
def test_equal_numpy_over_the_whole_array(
    v2_store: Any, split: str | None, size: int, mode: str
) -> None:
    splits = v2_store.table.optional["split"]
    rows = np.flatnonzero(splits == split) if split else np.arange(len(splits))
    result = compute(str(v2_store.path), split=split, size=size, interpolation=mode)
    assert result.samples == len(rows)
    reference = expected(v2_store.pixels, rows, size, mode)
    assert list(result.mean) == [b for bands in GROUPS.values() for b in bands]
    for band, (mean, std) in reference.items():
        assert result.mean[band] == pytest.approx(mean, rel=1e-9, abs=1e-9), band
        # where torch rounds the odd border value differently (bicubic, < 1e-3) std moves by less
        assert result.std[band] == pytest.approx(std, rel=1e-7), band


def test_partials_merge_like_one_pass() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(0, 10_000, (9, 2, 20, 20), dtype=np.uint16)
    whole = partials(values, 20, "nearest")
    merged = merge(
        [partials(values[a:b], 20, "nearest") for a, b in ((0, 1), (1, 1), (1, 5), (5, 9))]
    )
    np.testing.assert_allclose(merged, whole, rtol=1e-12)


def test_cli_records_shows_and_normalizes(store: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["stats", str(store), "--split", "train", "--interpolation", "nearest"]
    )
    assert result.exit_code == 0, result.output
    assert "statistics of 5 samples (train, 120 x 120, nearest) recorded" in result.output
    assert check(store) == []
    info = runner.invoke(main, ["info", str(store)])
    assert "statistics (train, 5 samples, 120 x 120, nearest):" in info.output
    assert "  B01   mean" in info.output
    data = ingest.SampleDataset(store, convention="configilm", bands="RGB", normalize="store")
    plain = ingest.SampleDataset(store, convention="configilm", bands="RGB")
    stats = ingest.open_store(store).attrs["statistics"][0]["bands"]
    mean = np.array([stats[b]["mean"] for b in ("B04", "B03", "B02")], np.float32)[:, None, None]
    std = np.array([stats[b]["std"] for b in ("B04", "B03", "B02")], np.float32)[:, None, None]
    np.testing.assert_array_equal(data[2]["image"], (plain[2]["image"] - mean) / std)
    # computed again: replaced, not appended; another size is another entry
    assert runner.invoke(main, ["stats", str(store), "--interpolation", "nearest"]).exit_code == 0
    assert runner.invoke(main, ["stats", str(store), "--size", "60", "--interpolation", "nearest",
                                "--split", "all"]).exit_code == 0  # fmt: skip
    entries = ingest.open_store(store).attrs["statistics"]
    assert [(e["split"], e["size"]) for e in entries] == [("train", 120), (None, 60)]


def test_cli_on_a_local_cluster(store: Path) -> None:
    result = CliRunner().invoke(main, ["stats", str(store), "--cluster", "local:1"])
    assert result.exit_code == 0, result.output
    local = compute(str(store))
    entry = ingest.open_store(store).attrs["statistics"][0]
    assert {b: v["mean"] for b, v in entry["bands"].items()} == pytest.approx(local.mean, rel=1e-12)


def test_bad_requests(store: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["stats", str(store), "--split", "validatoin"])
    assert (result.exit_code, result.stderr.strip()) == (
        2, "error: unknown split 'validatoin' (one of train, validation, test, or all)")  # fmt: skip
    result = runner.invoke(main, ["stats", str(store), "--cluster", "local:0"])
    assert (result.exit_code, result.stderr.strip()) == (
        2, "error: --cluster local:0: local:N needs N >= 1 worker processes")  # fmt: skip
    with pytest.raises(
        UsageError, match="has no statistics for size 128, bilinear: run `ingest stats"
    ):
        ingest.SampleDataset(store, convention="configilm", interpolation="bilinear", size=128,
                             normalize="store")  # fmt: skip


def test_unfinished_and_locked_stores_are_refused(store: Path) -> None:
    from ingest.store.location import StoreLocation
    from ingest.store.lock import hold

    with hold(StoreLocation.of(store), note=lambda _: None):  # as a running ingest holds it
        result = CliRunner().invoke(main, ["stats", str(store)])
    assert result.exit_code == 5
    assert f"{store} is being written by another run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    del group.attrs["complete"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec yet
        zarr.consolidate_metadata(store)
    result = CliRunner().invoke(main, ["stats", str(store)])
    assert (result.exit_code, result.stderr.strip()) == (
        5, f"error: {store}: the store is not complete (finish it with `ingest run --resume`); "
        "statistics of part of it would be wrong")  # fmt: skip


def test_record_keeps_the_store_valid(store: Path) -> None:
    record(str(store), compute(str(store), split=None, interpolation="gdal"))
    assert check(store) == []
    data = ingest.SampleDataset(store, convention="torchgeo", bands="all", normalize="store")
    assert data[0]["image_s1"].dtype == np.float32
