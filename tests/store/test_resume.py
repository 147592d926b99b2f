"""Crash and interruption: an unfinished store is never complete, and ``--resume`` finishes it into
the store an uninterrupted run writes, without rewriting the shards that were already finished."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import zarr

from ingest.errors import StoreError, UsageError
from ingest.store import zarrstore as store
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.samples import SampleArchives, write_synthetic_sample

from ..conftest import ingest_local

SHARD = 8


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("resume"), 600, seed=5)


@pytest.fixture(scope="module")
def reference(archives: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    ingest_local(archives, path, shard_size=SHARD)
    return path


def shard_mtimes(path: Path) -> dict[str, int]:
    """Modification times of the band shard files of the shards the journal lists as finished."""
    finished = store.journal(path)
    times = {}
    for name in ("bands_10m", "bands_20m", "bands_60m"):
        for index in finished:
            shard = path / name / "c" / str(index) / "0" / "0" / "0"
            times[str(shard.relative_to(path))] = shard.stat().st_mtime_ns
    return times


def test_crash_then_resume(
    archives: SampleArchives, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = store.write_shard
    written: list[int] = []

    def crash_after_three(
        path: str, start: int, bands: Any, record: store.ShardRecord, *rest: Any
    ) -> int:
        if len(written) == 3:
            raise OSError("disk on fire")
        written.append(start)
        return real_write(path, start, bands, record, *rest)

    monkeypatch.setattr(store, "write_shard", crash_after_three)
    with pytest.raises(StoreError, match="writing failed: disk on fire"):
        ingest_local(archives, tmp_path / "s.zarr", shard_size=SHARD)
    assert zarr.open_group(str(tmp_path / "s.zarr")).attrs["complete"] is False
    assert "store is not complete (attribute 'complete' is not true)" in check(tmp_path / "s.zarr")
    assert sorted(store.journal(tmp_path / "s.zarr")) == [0, 1, 2]
    before = shard_mtimes(tmp_path / "s.zarr")
    assert len(before) == 9

    monkeypatch.setattr(store, "write_shard", real_write)
    ingest_local(archives, tmp_path / "s.zarr", shard_size=SHARD, resume=True)
    assert check(tmp_path / "s.zarr") == []
    assert store_differences(reference, tmp_path / "s.zarr", same_location=True) == []
    after = {k: (tmp_path / "s.zarr" / k).stat().st_mtime_ns for k in before}
    assert after == before
    assert not (tmp_path / "s.zarr" / "_ingest").exists()


def test_resume_refuses_other_options(
    archives: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "write_shard", _fail_write)
    with pytest.raises(StoreError, match="writing failed: stop"):
        ingest_local(archives, tmp_path / "s.zarr", shard_size=SHARD)
    monkeypatch.undo()
    with pytest.raises(
        UsageError, match=r"--resume with different options: shard_size is 8 in .* but 16 now"
    ):
        ingest_local(archives, tmp_path / "s.zarr", shard_size=16, resume=True)
    from ingest.layouts.labels import Selection

    with pytest.raises(UsageError, match=r"--resume with different options: selection is"):
        ingest_local(
            archives,
            tmp_path / "s.zarr",
            shard_size=SHARD,
            resume=True,
            selection=Selection(limit=5),
        )


def _fail_write(*args: Any) -> int:
    raise OSError("stop")


def test_resume_needs_an_unfinished_store(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="no store to resume"):
        ingest_local(archives, tmp_path / "none.zarr", resume=True)
    with pytest.raises(UsageError, match="is already complete: nothing to resume"):
        ingest_local(archives, reference, shard_size=SHARD, resume=True)


def test_resume_detects_changed_input(
    archives: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = store.write_shard
    calls: list[int] = []

    def crash_after_two(*args: Any) -> int:
        if len(calls) == 2:
            raise OSError("stop")
        calls.append(1)
        return real_write(*args)

    monkeypatch.setattr(store, "write_shard", crash_after_two)
    with pytest.raises(StoreError, match="writing failed: stop"):
        ingest_local(archives, tmp_path / "s.zarr", shard_size=SHARD)
    monkeypatch.setattr(store, "write_shard", real_write)
    other = write_synthetic_sample(tmp_path / "other", 600, seed=6)
    with pytest.raises(
        StoreError,
        match=r"cannot resume: shard 0 holds S2.* at position 0 but the archives now give S2",
    ):
        ingest_local(other, tmp_path / "s.zarr", shard_size=SHARD, resume=True)


def _ingest_command(archives: SampleArchives, path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ingest", "run", str(path),
        "--labels-archive", str(archives.labels), "--source-archive", str(archives.source),
        "--shard-size", str(SHARD), "--workers", "1", "--no-progress", *extra,
    ]  # fmt: skip


def _finished_shards(path: Path) -> int:
    return len(list((path / "_ingest").glob("shard-*")))


def test_sigkill_five_times_then_resume(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    """Kill -9 at five random points (after a random number of finished shards, plus a random
    few milliseconds so the kill lands inside a write), then resume to the reference store."""
    path = tmp_path / "s.zarr"
    rng = random.Random(42)
    targets = sorted(rng.sample(range(2, 70), 5))  # of 75 shards
    kept: dict[str, int] = {}
    for target in targets:
        resume = ["--resume"] if (path / "zarr.json").is_file() else []
        # A writer orphaned by the previous kill may still finish its shard, so the count can
        # already be at this target: each run must finish at least one shard of its own before
        # the kill, which also means its writer process exists.
        goal = max(target, _finished_shards(path) + 1)
        process = subprocess.Popen(
            _ingest_command(archives, path, *resume),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while (
                _finished_shards(path) < goal
                and process.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))
            assert process.poll() is None, f"the run ended before reaching {goal} shards"
            children = psutil.Process(process.pid).children(recursive=True)
            assert children  # the writer process (and multiprocessing's resource tracker)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        _, alive = psutil.wait_procs(children, timeout=20)  # orphaned writers finish and exit
        assert alive == []
        assert zarr.open_group(str(path)).attrs["complete"] is False
        now = shard_mtimes(path)
        assert {k: now[k] for k in kept} == kept  # finished shards were not rewritten
        kept = now
    done = subprocess.run(
        _ingest_command(archives, path, "--resume"), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert check(path) == []
    assert store_differences(reference, path, same_location=True) == []
    assert {k: (path / k).stat().st_mtime_ns for k in kept} == kept
    assert len(kept) >= 3 * targets[-1]


def test_ctrl_c_exits_130_and_leaves_a_resumable_store(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    path = tmp_path / "s.zarr"
    process = subprocess.Popen(
        _ingest_command(archives, path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not store.journal(path) and time.monotonic() < deadline:  # the first shard
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert (
        err
        == f"error: interrupted: {path} is left unfinished: continue it with --resume and the same options, or start over with --overwrite\n"
    )
    assert zarr.open_group(str(path)).attrs["complete"] is False
    done = subprocess.run(
        _ingest_command(archives, path, "--resume"), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert store_differences(reference, path, same_location=True) == []
