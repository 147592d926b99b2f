"""One writer per store (issue 20, finding 1): with a run writing a store, a second ``run``,
``--resume`` or ``--overwrite`` is refused with exit 5 naming the holder (it used to end in a
GroupNotFoundError traceback, or delete the store under the running ingest); a lock left by a dead
run is taken over with a note; readers are not blocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.store import lock as lock_module
from ingest.store import zarrstore as store
from ingest.store.location import StoreLocation
from ingest.store.lock import Holder, StoreLocked, hold
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.s3 import S3Server
from ingest.testing.samples import SampleArchives, write_synthetic_sample

from ..conftest import ingest_local

SHARD = 8


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("lock"), 200, seed=11)


@pytest.fixture(scope="module")
def reference(archives: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    ingest_local(archives, path, shard_size=SHARD)
    return path


class GatedServer:
    """Serves one file over HTTP; a body longer than ``cut`` bytes stops there until ``gate`` is
    set (the layout's look at the first member reads less and goes on)."""

    def __init__(self, path: Path, cut: int) -> None:
        data, gate = path.read_bytes(), threading.Event()
        self.gate = gate

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    gate.wait(120)
                    self.wfile.write(data[cut:])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{path.name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated(archives: SampleArchives) -> Iterator[GatedServer]:
    server = GatedServer(archives.source, cut=archives.source.stat().st_size // 2)
    yield server
    server.close()


def command(archives: SampleArchives, path: Path, source: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ingest", "run", str(path),
        "--labels-archive", str(archives.labels), "--source-archive", source,
        "--shard-size", str(SHARD), "--workers", "1", "--no-progress", *extra,
    ]  # fmt: skip


def test_a_second_writer_is_refused_while_a_run_writes(
    archives: SampleArchives, reference: Path, gated: GatedServer, tmp_path: Path
) -> None:
    path = tmp_path / "s.zarr"
    first = subprocess.Popen(
        command(archives, path, gated.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not store.journal(path) and time.monotonic() < deadline:  # it is writing
            time.sleep(0.05)
        assert store.journal(path), "the first run wrote no shard"
        holder = f"pid {first.pid} on {socket.gethostname()}"
        for extra in (["--resume"], ["--overwrite"], []):
            second = subprocess.run(
                command(archives, path, str(archives.source), *extra),
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            assert second.returncode == 5, (extra, second.stderr)
            assert second.stderr.startswith(f"error: {path} is being written by another run "
                                            f"({holder}, started "), second.stderr  # fmt: skip
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on, its store untouched
        gated.gate.set()
        _, err = first.communicate(timeout=120)
    finally:
        gated.gate.set()
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert check(path) == []
    assert store_differences(reference, path) == []
    assert not Path(str(path) + ".lock").exists()  # removed at the end of the run


def test_readers_are_not_blocked(reference: Path) -> None:
    from ingest.read import open_store

    with hold(StoreLocation(str(reference)), note=print):
        assert check(reference) == []
        assert open_store(reference).sizes["sample"] == 200


def test_refused_in_process_with_the_holder(archives: SampleArchives, tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with (
        hold(StoreLocation(str(path)), note=print) as held,
        pytest.raises(StoreLocked, match=rf"pid {os.getpid()} on .* one writer per store"),
    ):
        ingest_local(archives, path, shard_size=SHARD)
    assert held.holder.pid == os.getpid()
    assert not path.exists()  # nothing written by the refused run


def test_a_lock_left_by_a_dead_run_is_taken_over(
    archives: SampleArchives, reference: Path, tmp_path: Path
) -> None:
    path = tmp_path / "s.zarr"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    left = Holder(socket.gethostname(), int(dead.stdout), "2026-01-01T00:00:00+00:00", "t")
    Path(str(path) + ".lock").write_bytes(left.dumps())  # a file nobody holds a flock on
    notes: list[str] = []
    ingest_local(archives, path, shard_size=SHARD, note=notes.append)
    assert notes == [
        f"note: {path}: taking over the lock of a run that is no longer running "
        f"(pid {dead.stdout.strip()} on {socket.gethostname()}, started 2026-01-01T00:00:00+00:00)"
    ]
    assert store_differences(reference, path) == []


# --- object storage: a lease ------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def _lease(s3: S3Server, name: str) -> Holder | None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    try:
        return Holder.loads(fs.cat_file(f"{s3.bucket}/{name}.lock"))
    except FileNotFoundError:
        return None


def test_lease_on_object_storage(
    archives: SampleArchives, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_module, "LEASE_SETTLE", 0.05)
    location = s3.location("leased.zarr")
    with hold(location, note=print, ttl=0.6) as held:
        first = _lease(s3, "leased.zarr")
        assert first is not None and first.token == held.holder.token
        with pytest.raises(StoreLocked, match=rf"pid {os.getpid()} on "):
            ingest_local(archives, location, shard_size=SHARD)
        time.sleep(0.5)  # renewed every ttl / 3
        renewed = _lease(s3, "leased.zarr")
        assert renewed is not None and renewed.renewed > first.renewed
    assert _lease(s3, "leased.zarr") is None  # released
    assert not location.exists()


def test_a_stale_lease_is_taken_over(
    archives: SampleArchives, reference: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setattr(lock_module, "LEASE_SETTLE", 0.05)
    fs = s3fs.S3FileSystem(**s3.storage_options)
    expired = Holder("elsewhere", 4242, "2026-01-01T00:00:00+00:00", "old", time.time() - 3600)
    fs.pipe_file(f"{s3.bucket}/stale.zarr.lock", expired.dumps())
    notes: list[str] = []
    location = s3.location("stale.zarr")
    ingest_local(archives, location, shard_size=SHARD, note=notes.append)
    assert len(notes) == 1 and notes[0].startswith(
        f"note: {location}: taking over the stale lease of pid 4242 on elsewhere"
    ), notes
    assert store_differences(reference, location) == []
    assert _lease(s3, "stale.zarr") is None
    live = Holder("elsewhere", 4242, "2026-01-01T00:00:00+00:00", "live", time.time())
    fs.pipe_file(f"{s3.bucket}/live.zarr.lock", live.dumps())
    with pytest.raises(StoreLocked, match="pid 4242 on elsewhere"):
        ingest_local(archives, s3.location("live.zarr"), shard_size=SHARD)
    assert json.loads(fs.cat_file(f"{s3.bucket}/live.zarr.lock"))["token"] == "live"


def test_a_lock_that_cannot_be_taken_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ingest.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["run", str(blocker / "s.zarr"), "--source-archive", "x"])
    assert result.exit_code == 5
    assert (
        result.output
        == f"error: {blocker}/s.zarr.lock: cannot take the store's lock: File exists\n"
    )


def test_a_lease_taken_over_meanwhile_fails_the_run_before_complete(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose renewals could not reach the store for a whole ttl, while another run took
    the lease over, must not mark the store complete."""
    import s3fs

    monkeypatch.setattr(lock_module, "LEASE_SETTLE", 0.05)
    fs = s3fs.S3FileSystem(**s3.storage_options)
    location = s3.location("lost.zarr")
    with hold(location, note=print, ttl=0.3) as held:
        other = Holder("elsewhere", 4242, "2026-01-01T00:00:00+00:00", "other", time.time())
        fs.pipe_file(f"{s3.bucket}/lost.zarr.lock", other.dumps())
        time.sleep(0.4)  # a renewal tick sees it
        with pytest.raises(StoreLocked, match="lost the lock while writing: the lease was taken "
                           "by pid 4242 on elsewhere"):  # fmt: skip
            held.check()
    assert _lease(s3, "lost.zarr") is not None  # the other run's lease is left alone
