"""Scale-out on dask.distributed: a LocalCluster or a running scheduler writes the same store as the
local process pool, to a local path or to S3 (moto's server on loopback), survives a worker killed
mid-run, and a run that dies leaves a store that ``--resume`` finishes on the cluster."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from ingest.cli import main
from ingest.config import RunReport
from ingest.errors import UsageError
from ingest.layouts.feeds import Meter
from ingest.store import cluster
from ingest.store import zarrstore as store
from ingest.store.location import StoreLocation
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.dask_faults import DieWritingShard, killed_task
from ingest.testing.s3 import S3Server
from ingest.testing.samples import SampleArchives, write_synthetic_sample

from ..conftest import ingest_local

SHARD = 32
PATCHES = 200  # 7 shards, the last one partial


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("cluster"), PATCHES, seed=8)


@pytest.fixture(scope="module")
def reference(archives: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store the local process pool writes."""
    path = tmp_path_factory.mktemp("reference") / "pool.zarr"
    ingest_local(archives, path, shard_size=SHARD, workers=2)
    return path


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A running cluster, as a user's would be: 2 one-thread worker processes, on loopback."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield str(local.scheduler_address)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def test_local_cluster_writes_the_local_pool_store(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    notes: list[str] = []
    report = ingest_local(
        archives, tmp_path / "dask.zarr", shard_size=SHARD, cluster="local:2", note=notes.append
    )
    assert report.samples == PATCHES
    assert store_differences(reference, tmp_path / "dask.zarr") == []
    assert check(tmp_path / "dask.zarr") == []
    assert any(re.fullmatch(r"dask dashboard: http://127\.0\.0\.1:\d+/status", n) for n in notes)


def test_local_cluster_writes_to_s3(
    archives: SampleArchives, reference: Path, s3: S3Server
) -> None:
    location = s3.location("local-cluster.zarr")
    report = ingest_local(
        archives,
        location,
        shard_size=SHARD,
        cluster="local:2",
        storage_options=location.storage_options,
    )
    assert report.store == location
    assert report.store_bytes > 0
    assert check(location) == []
    assert store_differences(reference, location) == []
    # The shards are real S3 objects: read one back through the S3 API.
    assert location.exists("bands_10m", "c", "6", "0", "0", "0")
    assert not location.exists("bands_10m", "c", "7", "0", "0", "0")


def test_local_pool_writes_to_s3(archives: SampleArchives, reference: Path, s3: S3Server) -> None:
    location = s3.location("pool.zarr")
    ingest_local(archives, location, shard_size=SHARD, workers=2)
    assert store_differences(reference, location) == []


def test_a_worker_killed_mid_run(
    archives: SampleArchives, reference: Path, scheduler: str, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    with Client(scheduler) as client:
        client.register_plugin(DieWritingShard(marker), name="die-writing-shard")
        try:
            ingest_local(archives, tmp_path / "dask.zarr", shard_size=SHARD, cluster=scheduler)
        finally:
            client.unregister_worker_plugin("die-writing-shard")
    task = killed_task(marker)
    assert task is not None and task.startswith(cluster.TASK_PREFIX)  # a worker did die mid-write
    assert store_differences(reference, tmp_path / "dask.zarr") == []


class InterruptAfter:
    """Progress that raises KeyboardInterrupt (Ctrl-C) after ``count`` source items."""

    def __init__(self, count: int) -> None:
        self.count, self.phases = count, 0

    def phase(self, name: str, meter: Meter) -> None:
        self.phases += 1

    def advance(self, items: int = 1) -> None:
        if self.phases == 2:
            self.count -= items
            if self.count < 0:
                raise KeyboardInterrupt

    def done(self) -> None:
        return None


def test_a_lost_client_leaves_a_store_the_cluster_resumes(
    archives: SampleArchives, reference: Path, scheduler: str, tmp_path: Path
) -> None:
    path = tmp_path / "dask.zarr"
    with pytest.raises(KeyboardInterrupt):
        ingest_local(
            archives, path, shard_size=SHARD, cluster=scheduler, progress=InterruptAfter(130)
        )
    finished = store.journal(path)
    assert 0 < len(finished) < 7  # some shards were written, not all
    assert check(path) != []  # and the store is not complete
    report: RunReport = ingest_local(
        archives, path, shard_size=SHARD, cluster=scheduler, resume=True
    )
    assert report.samples == PATCHES
    assert store_differences(reference, path) == []


def test_cli_runs_on_a_local_cluster(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(tmp_path / "cli.zarr"),
            "--labels-archive", str(archives.labels),
            "--source-archive", str(archives.source),
            "--shard-size", str(SHARD),
            "--cluster", "local:1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dask dashboard: http://127.0.0.1:" in result.output
    assert store_differences(reference, tmp_path / "cli.zarr") == []


def test_cli_writes_and_verifies_an_s3_store(
    archives: SampleArchives, reference: Path, s3: S3Server
) -> None:
    import json

    options = json.dumps(s3.storage_options)
    url = f"s3://{s3.bucket}/cli.zarr"
    common = ["--storage-options", options]
    run = CliRunner().invoke(
        main,
        ["run", url, "--labels-archive", str(archives.labels), "--source-archive",
         str(archives.source), "--shard-size", str(SHARD), "--workers", "0", *common],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    verify = CliRunner().invoke(main, ["verify", url, *common])
    assert verify.exit_code == 0, verify.output
    assert f"{url}: valid store" in verify.output
    info = CliRunner().invoke(main, ["info", url, *common])
    assert info.exit_code == 0, info.output
    assert f"{PATCHES}" in info.output
    assert store_differences(reference, StoreLocation(url, s3.storage_options)) == []
    again = CliRunner().invoke(
        main, ["run", url, "--labels-archive", str(archives.labels), *common]
    )
    assert again.exit_code == 5
    assert f"{url} already exists and is complete: use --overwrite to replace it" in again.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cluster", "local:two"], "--cluster local:two: expected local:N with N >= 1 workers"),
        (["--cluster", "local:0"], "--cluster local:0: expected local:N with N >= 1 workers"),
        (["--storage-options", "{not json"], "Invalid value for '--storage-options': not JSON"),
        (["--storage-options", "[1]"], "'--storage-options': must be a JSON object"),
        (["--storage-options", "{}"], None),
        (["--storage-options", '{"anon": true}'], "storage options need a URL such as s3://"),
    ],
)
def test_cli_rejects_bad_cluster_and_storage_options(
    archives: SampleArchives, tmp_path: Path, options: list[str], message: str | None
) -> None:
    args = ["run", str(tmp_path / "x.zarr"), "--labels-archive", str(archives.labels),
            "--source-archive", str(archives.source), *options]  # fmt: skip
    result = CliRunner().invoke(main, args)
    if message is None:  # empty options are no options
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "x.zarr").exists()


def test_an_unreachable_scheduler(
    archives: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(UsageError, match=r"--cluster tcp://127\.0\.0\.1:9: cannot reach"):
        ingest_local(archives, tmp_path / "x.zarr", cluster="tcp://127.0.0.1:9")


def test_a_file_url_names_a_local_store(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    url = f"file://{tmp_path}/url.zarr"
    report = ingest_local(archives, url, shard_size=SHARD)
    assert str(report.store) == url
    assert (tmp_path / "url.zarr" / "zarr.json").is_file()  # zarr's local store, at the path
    assert check(url) == []
    assert store_differences(reference, tmp_path / "url.zarr") == []
