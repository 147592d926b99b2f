"""The partner archives stream beside the S2 archive (issue 21): whichever archive is ahead, the
store is the same, and a run killed in the overlap resumes to it.

The archives are fed through named pipes by the test, which decides when each byte is there: the
S1 archive all staged before the S2 archive starts, only after every S2 shard is written, or
interleaved with it. (The input is read a MiB at a time: the archives must be some MB for a gate
to fall inside them.)"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest
import zarr
import zstandard

from ingest.config import RunConfig
from ingest.errors import InputDataError
from ingest.layouts import partner_stream
from ingest.layouts.labels import Selection
from ingest.layouts.partner_stream import BATCH
from ingest.layouts.reben_v2 import RebenV2
from ingest.pipeline import job, run
from ingest.pipeline import state as state_module
from ingest.pipeline.state import RunState
from ingest.sources.reader_process import ArchiveReader
from ingest.store import writers
from ingest.store import zarrstore as store
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.releases import ReleaseSample, write_release_sample

PATCHES = 80
SHARD = 4
S1_BYTES = 2 * 120 * 120 * 4
"""A raw S1 patch in the staging file."""


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("streams"), layout="reben-v2",
                                patches=PATCHES, s1=True, reference_maps=True, seed=11)  # fmt: skip


def config(sample: ReleaseSample, path: Path, s2: str, s1: str, **options: Any) -> RunConfig:
    return RunConfig(store=path, source_archive=(s2,), s1_archive=(s1,), layout="reben-v2",
                     metadata=tuple(str(p) for p in sample.metadata),
                     reference_maps=tuple(str(p) for p in sample.reference_maps),
                     shard_size=SHARD, **options)  # fmt: skip


@pytest.fixture(scope="module")
def reference(sample: ReleaseSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    run(config(sample, path, str(sample.s2[0]), str(sample.s1[0]), workers=0))
    return path


def s2_shards_written(path: Path) -> int:
    folder = path / "bands_10m" / "c"
    return len(list(folder.glob("*/0/0/0"))) if folder.exists() else 0


def staged(folder: Path) -> int:
    files = list(folder.rglob("bands_s1.chunks"))
    return files[0].stat().st_size // S1_BYTES if files else 0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def fed(
    fifo: Path, data: bytes, *gates: tuple[float, Callable[[], bool]]
) -> Iterator[threading.Thread]:
    """A named pipe that gives ``data``; at each gate (a fraction of the bytes, a condition) the
    feeding, having given that fraction, waits for the condition."""
    os.mkfifo(fifo)
    failures: list[BaseException] = []

    def feed() -> None:
        try:
            with fifo.open("wb") as pipe:
                sent = 0
                for fraction, ready in [*gates, (1.0, lambda: True)]:
                    end = int(len(data) * fraction)
                    pipe.write(data[sent:end])
                    pipe.flush()
                    sent = max(sent, end)
                    wait_for(ready, f"a gate of {fifo.name}")
        except BrokenPipeError:
            pass  # the reader was killed
        except BaseException as error:  # reported by the test
            failures.append(error)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield thread
    thread.join(timeout=60)
    assert not failures, failures


@pytest.mark.parametrize("order", ["s1_before", "s1_after", "interleaved"])
def test_the_same_store_whichever_archive_is_ahead(
    order: str, sample: ReleaseSample, reference: Path, tmp_path: Path
) -> None:
    path, folder = tmp_path / "s.zarr", tmp_path / "staging"
    s1_data, s2_data = sample.s1[0].read_bytes(), sample.s2[0].read_bytes()
    all_staged: Callable[[], bool] = lambda: staged(folder) >= PATCHES  # noqa: E731
    all_written: Callable[[], bool] = lambda: s2_shards_written(path) >= PATCHES // SHARD  # noqa: E731
    half_written: Callable[[], bool] = lambda: s2_shards_written(path) >= PATCHES // SHARD // 2  # noqa: E731
    s1_gates = {"s1_before": (), "s1_after": ((0.0, all_written),),
                "interleaved": ((0.75, half_written),)}[order]  # fmt: skip
    s2_gates = {"s1_before": ((0.0, all_staged),), "s1_after": (),
                "interleaved": ((0.0, lambda: staged(folder) >= BATCH),)}[order]  # fmt: skip
    with fed(tmp_path / "s1.tar.zst", s1_data, *s1_gates), \
            fed(tmp_path / "s2.tar.zst", s2_data, *s2_gates):  # fmt: skip
        report = run(config(sample, path, str(tmp_path / "s2.tar.zst"),
                            str(tmp_path / "s1.tar.zst"), workers=1, staging_dir=str(folder),
                            space_check=False))  # fmt: skip
    assert report.samples == PATCHES
    assert check(path) == []
    assert store_differences(reference, path) == []
    ours = zarr.open_group(str(path), mode="r").attrs["report"]["partners"]
    assert ours == zarr.open_group(str(reference), mode="r").attrs["report"]["partners"]


def test_kill_in_the_overlap_then_resume(
    sample: ReleaseSample, reference: Path, tmp_path: Path
) -> None:
    """SIGKILL while S1 is half staged and S2 half written, then --resume: the same store."""
    path, folder = tmp_path / "s.zarr", tmp_path / "staging"
    s1_fifo, s2_fifo = tmp_path / "s1.tar.zst", tmp_path / "s2.tar.zst"
    never = threading.Event()
    args = [sys.executable, "-m", "ingest", "run", str(path), "--layout", "reben-v2",
            "--shard-size", str(SHARD), "--workers", "1", "--no-progress", "--no-space-check",
            "--staging-dir", str(folder),
            "--reference-maps", str(sample.reference_maps[0]),
            *(a for m in sample.metadata for a in ("--metadata", str(m)))]  # fmt: skip
    with fed(s1_fifo, sample.s1[0].read_bytes(), (0.75, never.is_set)), \
            fed(s2_fifo, sample.s2[0].read_bytes(), (0.5, never.is_set)):  # fmt: skip
        process = subprocess.Popen([*args, "--source-archive", str(s2_fifo), "--s1-archive",
                                    str(s1_fifo)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for(lambda: s2_shards_written(path) >= 2 and staged(folder) >= BATCH, "overlap")
            assert process.poll() is None
            assert staged(folder) < PATCHES and s2_shards_written(path) < PATCHES // SHARD
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            never.set()
    time.sleep(1)  # an orphaned writer finishes its shard and exits
    assert len(store.journal(path)) < PATCHES // SHARD
    done = subprocess.run([*args, "--source-archive", str(sample.s2[0]), "--s1-archive",
                           str(sample.s1[0]), "--resume"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert check(path) == []
    assert store_differences(reference, path) == []


def without_members(src: Path, dst: Path, fragments: list[str]) -> Path:
    """The tar.zst ``src`` as a tar.gz without the members whose name contains a fragment."""
    with src.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain, \
            tarfile.open(fileobj=plain, mode="r|") as tar, tarfile.open(dst, "w:gz") as out:  # fmt: skip
        for info in tar:
            if not any(f in info.name for f in fragments):
                out.addfile(info, tar.extractfile(info) if info.isfile() else None)
    return dst


def test_s2_patches_without_partners_skipped_after_their_shards_were_written(
    sample: ReleaseSample, tmp_path: Path
) -> None:
    """--on-error skip, the S1 archive (lacking 4 patches' partners) read only after every S2
    shard was written: the S2 pass runs again and the store is that of a serial run, without the
    shard the first pass wrote past the end."""
    victims = [sample.patches[i] for i in (1, 9, 30, 77)]
    s1 = without_members(sample.s1[0], tmp_path / "src.tar.gz", [sample.s1_of[v] for v in victims])
    fifo = tmp_path / "s1.tar.gz"  # both runs read it here: the skip reasons name it
    serial = tmp_path / "serial.zarr"  # the S1 archive staged before any S2 patch is read
    path = tmp_path / "s.zarr"
    settled: list[float] = []

    def all_staged() -> bool:  # and a moment for the run to hear that the stream ended
        if staged(tmp_path / "a") >= PATCHES - len(victims):
            settled.append(time.monotonic())
        return bool(settled) and time.monotonic() - settled[0] > 1.0

    with fed(tmp_path / "s2.tar.zst", sample.s2[0].read_bytes(), (0.0, all_staged)), \
            fed(fifo, s1.read_bytes()):  # fmt: skip
        run(config(sample, serial, str(tmp_path / "s2.tar.zst"), str(fifo), workers=1,
                   on_error="skip", staging_dir=str(tmp_path / "a"), space_check=False))  # fmt: skip
    fifo.unlink()
    with fed(fifo, s1.read_bytes(), (0.0, lambda: s2_shards_written(path) >= PATCHES // SHARD)):
        report = run(config(sample, path, str(sample.s2[0]), str(fifo), workers=1,
                            on_error="skip", staging_dir=str(tmp_path / "b"),
                            space_check=False))  # fmt: skip
    assert report.samples == PATCHES - len(victims)
    assert sorted(s["item"] for s in report.skipped) == sorted(victims)
    assert check(path) == []
    assert store_differences(serial, path) == []
    shards = {p.parts[-4] for p in (path / "bands_10m" / "c").glob("*/0/0/0")}
    assert shards == {str(i) for i in range(-(-report.samples // SHARD))}


def test_processes_start_before_the_labels_and_none_outlives_the_run(
    sample: ReleaseSample, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partner processes and the writers start before the labels are read (their start-up on
    the core that would wait); the streams and shards run in those very processes; none is left
    once the run is over, and the collector sees everything again."""
    spawned: list[BaseProcess] = []
    pools: list[ProcessPoolExecutor] = []
    at_labels: list[tuple[int, int]] = []
    spawn, start_pool, read_labels = partner_stream._spawn, job.start_pool, RebenV2.read_labels

    def counted_spawn() -> tuple[BaseProcess, Any, Any]:
        spawned.append((made := spawn())[0])
        return made

    def counted_pool(workers: int) -> ProcessPoolExecutor:
        pools.append(start_pool(workers))
        return pools[-1]

    def timed_labels(self: RebenV2, sink: Any) -> Any:
        at_labels.append((len(spawned), len(pools)))
        return read_labels(self, sink)

    monkeypatch.setattr(partner_stream, "_spawn", counted_spawn)
    monkeypatch.setattr(job, "start_pool", counted_pool)
    monkeypatch.setattr(RebenV2, "read_labels", timed_labels)
    made: list[int] = []
    new_pool = writers._new_pool
    monkeypatch.setattr(writers, "_new_pool", lambda n: made.append(n) or new_pool(n))
    before = set(multiprocessing.active_children())
    path = tmp_path / "s.zarr"
    run(config(sample, path, str(sample.s2[0]), str(sample.s1[0]), workers=2))
    assert at_labels == [(2, 1)]  # S1, maps and the writers' pool, all before the labels
    assert len(spawned) == 2 and made == [2]  # and no process or pool started after them
    assert [p.exitcode for p in spawned] == [0, 0]  # each streamed its archive to the end
    assert set(multiprocessing.active_children()) <= before
    assert gc.get_freeze_count() == 0
    assert store_differences(reference, path) == []


def test_the_s2_archive_is_read_by_a_process_started_before_the_labels(
    sample: ReleaseSample, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 3 cores or more, its reader process reads ahead while the labels are read, the S2
    pass reads through that very process to the end, and the store is the one read in the run's
    own process (``reference``: ``workers=0``)."""
    monkeypatch.setattr(state_module, "usable_cores", lambda: 3)
    ahead: list[ArchiveReader | None] = []
    used: list[ArchiveReader | None] = []
    read_labels, reader = RebenV2.read_labels, RunState.reader

    def timed_labels(self: RebenV2, sink: RunState) -> Any:
        ahead.append(sink.ahead)
        return read_labels(self, sink)

    def recorded(self: RunState, spec: Any) -> ArchiveReader | None:
        used.append(reader(self, spec))
        return used[-1]

    monkeypatch.setattr(RebenV2, "read_labels", timed_labels)
    monkeypatch.setattr(RunState, "reader", recorded)
    before = set(multiprocessing.active_children())
    path = tmp_path / "s.zarr"
    report = run(config(sample, path, str(sample.s2[0]), str(sample.s1[0]), workers=2))
    assert len(ahead) == 1 and ahead[0] is not None and used == ahead
    data = sample.s2[0].read_bytes()
    assert ahead[0].bytes_read == len(data)
    assert set(multiprocessing.active_children()) <= before
    assert store_differences(reference, path) == []
    sources = zarr.open_group(str(path), mode="r").attrs["sources"]
    s2 = [r for r in sources if r["role"] == "s2"]  # type: ignore[union-attr,index]
    assert s2[0]["sha256"] == hashlib.sha256(data).hexdigest() and s2[0]["bytes"] == len(data)
    assert report.samples == PATCHES


def test_a_limited_run_reads_nothing_ahead(
    sample: ReleaseSample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "usable_cores", lambda: 3)
    ahead: list[ArchiveReader | None] = []
    read_labels = RebenV2.read_labels

    def timed_labels(self: RebenV2, sink: RunState) -> Any:
        ahead.append(sink.ahead)
        return read_labels(self, sink)

    monkeypatch.setattr(RebenV2, "read_labels", timed_labels)
    options = config(sample, tmp_path / "s.zarr", str(sample.s2[0]), str(sample.s1[0]),
                     workers=2, selection=Selection(limit=5))  # fmt: skip
    assert run(options).samples == 5
    assert ahead == [None]


@pytest.mark.parametrize("why", ["--workers 0", "two cores", "no room in /dev/shm"])
def test_the_s2_archive_read_in_the_runs_own_process(
    why: str, sample: ReleaseSample, reference: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    made: list[ArchiveReader] = []
    monkeypatch.setattr(state_module, "ArchiveReader", lambda *a, **k: made.append(1))  # type: ignore[arg-type]
    monkeypatch.setattr(state_module, "usable_cores", lambda: 2 if why == "two cores" else 8)
    if why == "no room in /dev/shm":
        monkeypatch.setattr(state_module, "room_for_ring", lambda: False)
    notes: list[str] = []
    path = tmp_path / "s.zarr"
    options = config(sample, path, str(sample.s2[0]), str(sample.s1[0]),
                     workers=0 if why == "--workers 0" else 2)  # fmt: skip
    run(options, note=notes.append)
    assert made == []
    assert store_differences(reference, path) == []
    assert any("/dev/shm" in n for n in notes) == (why == "no room in /dev/shm"), notes


def test_a_run_failing_at_its_labels_stops_the_processes_it_started(
    sample: ReleaseSample, tmp_path: Path
) -> None:
    bad = tmp_path / "metadata.parquet"
    bad.write_bytes(b"PAR1 not a parquet file")
    before = set(multiprocessing.active_children())
    options = replace(config(sample, tmp_path / "s.zarr", str(sample.s2[0]), str(sample.s1[0]),
                             workers=2), metadata=(str(bad),))  # fmt: skip
    with pytest.raises(InputDataError, match="not a parquet file"):
        run(options)
    assert set(multiprocessing.active_children()) <= before
    assert gc.get_freeze_count() == 0


def test_unused_processes_end_with_the_streams() -> None:
    streams = partner_stream.PartnerStreams(lambda message: None)
    streams.prepare(2)
    processes = [process for process, _, _ in streams._spare]
    assert all(p.is_alive() for p in processes)
    streams.close()
    assert not any(p.is_alive() for p in processes)
    streams.close()  # a second time: nothing left to do
