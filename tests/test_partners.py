"""Sentinel-1 and reference maps, end to end: aligned sample for sample with Sentinel-2 whatever
order their archives come in, every pixel equal to rasterio's reading of the original files, every
``s1_patch_id`` the official pairing; bad input refused with one line; a run killed during the S1
phase or while the shards are written resumes to the same store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.config import RunConfig, RunReport
from ingest.pipeline import run
from ingest.store.verify import check
from ingest.testing.archive_writer import rewrite_archive
from ingest.testing.compare import store_differences
from ingest.testing.release_tiffs import encode_reference_map
from ingest.testing.releases import ReleaseSample, write_release_sample


def ingest_release(sample: ReleaseSample, store: Path, **options: Any) -> RunReport:
    options.setdefault("workers", 0)
    return run(RunConfig(
        store=store,
        source_archive=tuple(str(p) for p in sample.s2),
        metadata=tuple(str(p) for p in sample.metadata),
        s1_archive=tuple(str(p) for p in sample.s1) or None,
        reference_maps=tuple(str(p) for p in sample.reference_maps) or None,
        **options,
    ))  # fmt: skip


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", real=True,
                                s1=True, reference_maps=True)  # fmt: skip


@pytest.fixture(scope="module")
def v2_store(v2: ReleaseSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "v2.zarr"
    ingest_release(v2, path)
    return path


def originals(sample: ReleaseSample, name: str, suffix: str) -> Path | None:
    assert sample.originals is not None
    found = list(sample.originals.rglob(f"{name}_{suffix}"))
    return found[0] if found else None


def assert_partners_match(store: Path, sample: ReleaseSample, maps: bool) -> int:
    group = zarr.open_group(str(store), mode="r")
    assert check(store) == []
    compared = 0
    s1_ids = np.asarray(group["s1_patch_id"][:]).tolist()
    for i, patch in enumerate(np.asarray(group["patch_id"][:]).tolist()):
        assert s1_ids[i] == sample.s1_of[patch], patch  # the official pairing
        for slot, band in enumerate(("VV", "VH")):
            path = originals(sample, s1_ids[i], f"{band}.tif")
            if path is None:
                continue
            with rasterio.open(path) as src:
                np.testing.assert_array_equal(group["bands_s1"][i, slot], src.read(1), patch)
                assert src.transform.c == float(group["x_ul"][i])
                assert src.transform.f == float(group["y_ul"][i])
            compared += 1
        path = originals(sample, patch, "reference_map.tif") if maps else None
        if path is not None:
            with rasterio.open(path) as src:
                np.testing.assert_array_equal(group["reference_map"][i], src.read(1), patch)
            compared += 1
    return compared


def test_v2_s1_and_maps_match_rasterio_and_the_official_pairing(
    v2_store: Path, v2: ReleaseSample
) -> None:
    # Real files: the real S1 patch …_70_48 and the 6 wheel S1 patches (2 bands each), the real
    # map …_26_57.
    assert assert_partners_match(v2_store, v2, maps=True) >= 7 * 2 + 1
    group = zarr.open_group(str(v2_store), mode="r")
    assert group["bands_s1"].dtype == np.float32 and group["reference_map"].dtype == np.uint16
    partners = group.attrs["report"]["partners"]
    assert partners["s1"]["written"] == partners["reference_maps"]["written"] == len(v2.patches)
    assert [s["role"] for s in group.attrs["sources"]][-3:] == ["s1", "reference_maps", "s2"]


@pytest.mark.parametrize(("s1_order", "maps_order"), [("reversed", "shuffled"),
                                                      ("shuffled", "reversed")])  # fmt: skip
def test_any_archive_order_gives_the_same_store(
    s1_order: str, maps_order: str, v2_store: Path, tmp_path: Path
) -> None:
    sample = write_release_sample(tmp_path, layout="reben-v2", real=True, s1=True,
                                  reference_maps=True, s1_order=s1_order,  # type: ignore[arg-type]
                                  maps_order=maps_order, seed=3)  # type: ignore[arg-type]  # fmt: skip
    ingest_release(sample, tmp_path / "o.zarr", workers=1, shard_size=2)
    a, b = (
        zarr.open_group(str(tmp_path / "o.zarr"), mode="r"),
        zarr.open_group(str(v2_store), mode="r"),
    )
    for name in ("patch_id", "s1_patch_id", "bands_s1", "reference_map", "bands_10m"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]), name)


def test_v1_s1_from_zenodo(tmp_path: Path) -> None:
    sample = write_release_sample(
        tmp_path, layout="zenodo-v1", real=True, s1=True, s1_order="reversed"
    )
    ingest_release(sample, tmp_path / "v1.zarr")
    assert assert_partners_match(tmp_path / "v1.zarr", sample, maps=False) == 6 * 2


def test_selection_and_limit_write_only_the_selected_partners(
    v2: ReleaseSample, v2_store: Path, tmp_path: Path
) -> None:
    from ingest.layouts.labels import Selection

    report = ingest_release(v2, tmp_path / "l.zarr", selection=Selection(limit=3), shard_size=2)
    group = zarr.open_group(str(tmp_path / "l.zarr"), mode="r")
    full = zarr.open_group(str(v2_store), mode="r")
    assert group["bands_s1"].shape[0] == 3 and report.partners["s1"]["written"] == 3
    np.testing.assert_array_equal(group["bands_s1"][:], full["bands_s1"][:3])
    np.testing.assert_array_equal(group["reference_map"][:], full["reference_map"][:3])


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--workers", "0"])
    return result.exit_code, result.output


def v2_args(store: Path, sample: ReleaseSample, s1: Path | None, maps: Path | None) -> list[str]:
    out = [str(store), "--source-archive", str(sample.s2[0])]
    for m in sample.metadata:
        out += ["--metadata", str(m)]
    if s1 is not None:
        out += ["--s1-archive", str(s1)]
    if maps is not None:
        out += ["--reference-maps", str(maps)]
    return out


def without(src: Path, dst: Path, fragment: str) -> Path:
    """``src`` (a v2 archive, gzip) less the members whose name contains ``fragment``."""
    return rewrite_archive(
        src, dst, lambda info, data: [] if fragment in info.name else [(info, data)]
    )


@pytest.fixture(scope="module")
def v2_gz(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("gz"), layout="reben-v2", real=True,
                                s1=True, reference_maps=True, compression="gzip")  # fmt: skip


def test_an_s2_patch_without_its_s1_partner(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.patches[3]
    s1 = without(v2_gz.s1[0], tmp_path / "s1.tar.gz", v2_gz.s1_of[victim])
    code, out = cli(*v2_args(tmp_path / "a.zarr", v2_gz, s1, v2_gz.reference_maps[0]))
    assert code == 3 and f"no Sentinel-1 patch of {victim}" in out, out
    assert zarr.open_group(str(tmp_path / "a.zarr")).attrs["complete"] is False
    code, out = cli(*v2_args(tmp_path / "b.zarr", v2_gz, s1, v2_gz.reference_maps[0]),
                    "--on-error", "skip")  # fmt: skip
    assert code == 0, out
    group = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert victim not in group["patch_id"][:].tolist()
    assert [s["item"] for s in group.attrs["skipped"]] == [victim]
    assert check(tmp_path / "b.zarr") == []


def test_an_s2_patch_without_its_reference_map(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.patches[0]
    maps = without(v2_gz.reference_maps[0], tmp_path / "m.tar.gz", f"{victim}_reference_map")
    code, out = cli(*v2_args(tmp_path / "a.zarr", v2_gz, None, maps))
    assert code == 3 and f"no reference map of {victim}" in out, out


def test_an_s1_patch_with_no_s2_partner_is_counted(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.patches[2]
    s2 = without(v2_gz.s2[0], tmp_path / "s2.tar.gz", victim)
    args = v2_args(tmp_path / "a.zarr", v2_gz, v2_gz.s1[0], None)
    args[2] = str(s2)
    code, out = cli(*args)
    assert code == 0, out
    partners = zarr.open_group(str(tmp_path / "a.zarr")).attrs["report"]["partners"]["s1"]
    assert partners["without_s2"] == 0 and partners["written"] == len(v2_gz.patches) - 1
    # A patch whose S2 id is in no metadata row: counted as without an S2 patch.
    import pyarrow.parquet as pq

    table = pq.read_table(v2_gz.metadata[0])
    keep = [p != victim for p in table["patch_id"].to_pylist()]
    thin = tmp_path / "m.parquet"
    pq.write_table(table.filter(keep), thin)
    args = [str(tmp_path / "b.zarr"), "--source-archive", str(s2), "--metadata", str(thin)]
    for other in v2_gz.metadata[1:]:
        args += ["--metadata", str(other)]
    code, out = cli(*args, "--s1-archive", str(v2_gz.s1[0]))
    assert code == 0, out
    partners = zarr.open_group(str(tmp_path / "b.zarr")).attrs["report"]["partners"]["s1"]
    assert partners["without_s2"] == 1 and partners["examples"] == [v2_gz.s1_of[victim]]


def test_an_s1_band_that_is_not_float32(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.s1_of[v2_gz.patches[1]]
    from ingest.testing.geotiff import encode_band

    def edit(info: Any, data: bytes | None) -> list[Any]:
        if data is not None and info.name.endswith(f"{victim}_VV.tif"):
            pixels = np.zeros((120, 120), np.uint16)
            return [(info, encode_band(pixels, epsg=32633, x_ul=0.0, y_ul=0.0, gsd=10.0))]
        return [(info, data)]

    s1 = rewrite_archive(v2_gz.s1[0], tmp_path / "s1.tar.gz", edit)
    code, out = cli(*v2_args(tmp_path / "a.zarr", v2_gz, s1, None))
    assert code == 3 and f"{victim}_VV.tif" in out and "expected float32" in out, out


def test_a_reference_map_on_another_grid(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.patches[4]

    def edit(info: Any, data: bytes | None) -> list[Any]:
        if data is not None and info.name.endswith(f"{victim}_reference_map.tif"):
            pixels = np.full((120, 120), 211, np.uint16)
            return [(info, encode_reference_map(pixels, epsg=32633, x_ul=5e5, y_ul=5.5e6))]
        return [(info, data)]

    maps = rewrite_archive(v2_gz.reference_maps[0], tmp_path / "m.tar.gz", edit)
    code, out = cli(*v2_args(tmp_path / "a.zarr", v2_gz, None, maps))
    assert code == 3 and "reference map on the grid" in out and victim in out, out


def test_the_same_partner_twice(v2_gz: ReleaseSample, tmp_path: Path) -> None:
    victim = v2_gz.patches[0]
    again: list[Any] = []

    def keep(info: Any, data: bytes | None) -> list[Any]:
        if data is not None and f"{victim}_reference_map" in info.name:
            again.append((info, data))
        return [(info, data)]

    first = rewrite_archive(v2_gz.reference_maps[0], tmp_path / "m1.tar.gz", keep)
    maps = rewrite_archive(first, tmp_path / "m.tar.gz", lambda i, d: [(i, d)], append=again)
    code, out = cli(*v2_args(tmp_path / "a.zarr", v2_gz, None, maps))
    assert code == 3 and victim in out and "twice" in out, out


def _command(sample: ReleaseSample, path: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "ingest", "run", *v2_args(path, sample, sample.s1[0],
            sample.reference_maps[0]), "--shard-size", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    return [*args, *extra]


@pytest.mark.parametrize("phase", ["s1", "shards"])
def test_sigkill_during_a_phase_then_resume(
    phase: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Kill -9 while the S1 archive is staged, or after some shards are written, then resume."""
    sample = write_release_sample(tmp_path_factory.mktemp("big"), layout="reben-v2", patches=60,
                                  s1=True, reference_maps=True, seed=5)  # fmt: skip
    reference = tmp_path / "ref.zarr"
    ingest_release(sample, reference, shard_size=2)
    path = tmp_path / "s.zarr"
    staging = tmp_path / "staging"
    staging.mkdir()
    env = {**__import__("os").environ, "INGEST_STAGING_DIR": str(staging)}
    process = subprocess.Popen(_command(sample, path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            chunks = list(staging.rglob("bands_s1.chunks"))
            if phase == "s1" and chunks and chunks[0].stat().st_size > 0:
                break
            if phase == "shards" and len(list((path / "_ingest").glob("shard-*"))) >= 5:
                break
            time.sleep(0.002)
        assert process.poll() is None, "the run ended before the kill"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    time.sleep(1)  # an orphaned writer finishes its shard and exits
    done = subprocess.run(_command(sample, path, "--resume"), capture_output=True, text=True,
                          check=False, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert check(path) == []
    assert store_differences(reference, path) == []


def test_readers_yield_s1_and_maps(v2_store: Path) -> None:
    import ingest

    group = zarr.open_group(str(v2_store), mode="r")
    ds = ingest.open_store(v2_store)
    rows = [0, 2, 3, 7]
    seen = []
    for batch in ds.isel(sample=rows).ben.batches(3, shuffle=True, seed=1):
        assert list(batch.bands) == ["bands_10m", "bands_20m", "bands_60m", "bands_s1",
                                     "reference_map"]  # fmt: skip
        for k, i in enumerate(batch.index.tolist()):
            for name in ("bands_s1", "reference_map", "bands_10m"):
                np.testing.assert_array_equal(batch.bands[name][k], group[name][rows[i]])
            seen.append(rows[i])
    assert sorted(seen) == rows
    data = ingest.SampleDataset(v2_store)
    np.testing.assert_array_equal(data[5]["bands_s1"], group["bands_s1"][5])
    np.testing.assert_array_equal(data[5]["reference_map"], group["reference_map"][5])


def test_a_cluster_writing_to_s3_gives_the_same_store(v2: ReleaseSample, v2_store: Path) -> None:
    """The dask tasks carry the staged chunks as bytes (the workers need not see the staging
    folder); the store on loopback S3 equals the local one."""
    from ingest.testing.s3 import S3Server

    with S3Server() as s3:
        location = s3.location("partners.zarr")
        ingest_release(v2, location, cluster="local:1", storage_options=location.storage_options)  # type: ignore[arg-type]
        assert check(location) == []
        assert store_differences(v2_store, location) == []


def test_a_v1_s1_json_pairing_against_the_official_table(tmp_path: Path) -> None:
    import json

    sample = write_release_sample(tmp_path, layout="zenodo-v1", real=True, s1=True)
    victim = sample.s1_of[sample.patches[0]]
    other = sample.patches[1]

    def edit(info: Any, data: bytes | None) -> list[Any]:
        if data is not None and info.name.endswith(f"{victim}_labels_metadata.json"):
            doc = json.loads(data)
            doc["corresponding_s2_patch"] = other
            return [(info, json.dumps(doc).encode())]
        return [(info, data)]

    s1 = rewrite_archive(sample.s1[0], tmp_path / "other-S1.tar.gz", edit)
    store = tmp_path / "s.zarr"
    code, out = cli(str(store), "--source-archive", str(sample.s2[0]), "--s1-archive", str(s1))
    assert code == 3, out
    assert f"pairs {victim} with {other}, but the official S1-S2 table pairs {other} with" in out
    assert zarr.open_group(str(store)).attrs["complete"] is False
