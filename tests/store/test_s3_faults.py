"""Object storage that throttles and drops connections (issue 20): writes are retried on
``503 SlowDown`` and connection resets, played by a fault-injecting proxy in front of the loopback
S3 server; a run that still fails is one line, exit 5, and leaves a store ``--resume`` finishes;
``--overwrite`` checks every input before it deletes the old store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs
from click.testing import CliRunner

from ingest.cli import main
from ingest.store import lock
from ingest.store import zarrstore as store
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.releases import ReleaseSample, write_release_sample
from ingest.testing.s3 import S3Server
from ingest.testing.s3_faults import FaultyS3Proxy, S3Faults
from ingest.testing.samples import SampleArchives

from ..conftest import ingest_local

SHARD = 8


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def proxy(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyS3Proxy]:
    monkeypatch.setattr(lock, "LEASE_SETTLE", 0.05)
    with FaultyS3Proxy(s3) as faulty:
        yield faulty


@pytest.fixture(scope="module")
def reference(synthetic_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    ingest_local(synthetic_sample, path, shard_size=SHARD)
    return path


def test_throttling_and_resets_are_retried(
    synthetic_sample: SampleArchives, reference: Path, s3: S3Server, proxy: FaultyS3Proxy
) -> None:
    proxy.set_faults(S3Faults(slowdown=(3, 30), reset=(12, 40)))
    ingest_local(synthetic_sample, proxy.location("retried.zarr"), shard_size=SHARD, workers=1)
    assert proxy.played == [(3, "slowdown"), (12, "reset"), (30, "slowdown"), (40, "reset")]
    assert check(s3.location("retried.zarr")) == []
    assert store_differences(reference, s3.location("retried.zarr")) == []


def test_an_outage_leaves_a_store_that_resume_finishes(
    synthetic_sample: SampleArchives, reference: Path, s3: S3Server, proxy: FaultyS3Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import json

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)  # give up soon (in this process)
    options = {**proxy.storage_options,
               "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 2}}}  # fmt: skip
    url = f"s3://{s3.bucket}/outage.zarr"
    args = ["run", url, "--labels-archive", str(synthetic_sample.labels), "--source-archive",
            str(synthetic_sample.source), "--shard-size", str(SHARD), "--workers", "0",
            "--no-progress", "--storage-options", json.dumps(options)]  # fmt: skip
    proxy.set_faults(S3Faults(fail_from=45))
    failed = CliRunner().invoke(main, args)
    assert failed.exit_code == 5, failed.output
    assert failed.output == (
        f"error: {url}: writing failed: Please reduce your request rate.; {url} is left "
        "unfinished: continue it with --resume and the same options, or start over with "
        "--overwrite\n"
    )
    assert 0 < len(store.journal(s3.location("outage.zarr"))) < 8
    proxy.set_faults(S3Faults())  # the outage is over
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert store_differences(reference, s3.location("outage.zarr")) == []


@pytest.fixture(scope="module")
def with_s1(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("s1"), layout="reben-v2", real=True,
                                s1=True)  # fmt: skip


def test_overwrite_on_object_storage_checks_every_input_first(
    with_s1: ReleaseSample, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setattr(lock, "LEASE_SETTLE", 0.05)
    url = f"s3://{s3.bucket}/reben.zarr"
    metadata = [a for m in with_s1.metadata for a in ("--metadata", str(m))]

    def ingest(*extra: str, s1: str = str(with_s1.s1[0])) -> Any:
        return CliRunner().invoke(main, [
            "run", url, "--source-archive", str(with_s1.s2[0]), *metadata, "--s1-archive", s1,
            "--workers", "0", "--no-progress", "--storage-options",
            json.dumps(s3.storage_options), *extra,
        ])  # fmt: skip

    first = ingest()
    assert first.exit_code == 0, first.output
    copy = tmp_path / "copy.zarr"
    assert ingest_copy(s3, "reben.zarr", copy)
    missing = tmp_path / "BigEarthNet-S1.tar.zst"
    refused = ingest("--overwrite", s1=str(missing))
    assert refused.exit_code == 3, refused.output
    assert refused.output == (
        f"error: {missing}: cannot open archive: No such file or directory; {url} is unchanged\n"
    )
    assert check(s3.location("reben.zarr")) == []
    assert store_differences(copy, s3.location("reben.zarr"), same_location=False) == []
    again = ingest("--overwrite")
    assert again.exit_code == 0, again.output
    assert store_differences(copy, s3.location("reben.zarr"), same_location=False) == []


def ingest_copy(s3: S3Server, name: str, target: Path) -> bool:
    """Copy the store ``name`` out of the bucket into ``target``."""
    fs = s3fs.S3FileSystem(**s3.storage_options)
    fs.get(f"{s3.bucket}/{name}", str(target), recursive=True)
    return (target / "zarr.json").is_file()
