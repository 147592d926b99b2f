"""A full disk (issue 20, finding 2): ENOSPC under the store or the staging folder is one line,
exit 5, naming the path, the bytes written and the free space, and saying that ``--resume``
continues (it used to be an ``OSError: [Errno 28]`` traceback); a run that cannot fit is refused
before it starts; staging goes beside a local store.

The file systems are small tmpfs mounts when the test may mount one (root in this sandbox); where
it may not, the same scenario runs in-process with ENOSPC injected into the shard writes."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ingest.cli import main
from ingest.store import space
from ingest.store import zarrstore as store
from ingest.store.location import StoreLocation
from ingest.store.space import Estimate, estimate
from ingest.store.staging import STAGING_DIR_ENV, staging_parent
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.releases import ReleaseSample, write_release_sample
from ingest.testing.samples import SampleArchives

from ..conftest import ingest_local

SHARD = 8


class Tmpfs:
    """A tmpfs of ``size`` mounted at ``path``, or None when this process may not mount."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def mount(cls, path: Path, size: str) -> Tmpfs | None:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, check=False)  # fmt: skip
        return cls(path) if done.returncode == 0 else None

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Any]:
    """A factory of small file systems, unmounted afterwards."""
    mounted: list[Tmpfs] = []

    def make(size: str) -> Tmpfs | None:
        fs = Tmpfs.mount(tmp_path / f"fs-{uuid.uuid4().hex[:6]}", size)
        if fs is not None:
            mounted.append(fs)
        return fs

    yield make
    for fs in mounted:
        fs.unmount()


@pytest.fixture(scope="module")
def reference(synthetic_sample: SampleArchives, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    ingest_local(synthetic_sample, path, shard_size=SHARD)
    return path


def run_args(archives: SampleArchives, path: Path, *extra: str) -> list[str]:
    return ["run", str(path), "--labels-archive", str(archives.labels), "--source-archive",
            str(archives.source), "--shard-size", str(SHARD), "--no-progress", *extra]  # fmt: skip


FULL_LINE = re.compile(
    r"error: (?P<path>\S+): no space left on device after writing (?P<written>[\d.,]+ [kMGT]?B) "
    r"there, (?P<free>[\d.,]+ [kMGT]?B) free; (?P<store>\S+) is left unfinished: continue it with "
    r"--resume and the same options, or start over with --overwrite\n"
)


def test_a_full_store_file_system_then_resume(
    synthetic_sample: SampleArchives, reference: Path, small_fs: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fs = small_fs("3m")
    if fs is not None:  # the real thing: the CLI as a process, worker processes writing
        path = fs.path / "s.zarr"
        first = subprocess.run(
            [sys.executable, "-m", "ingest",
             *run_args(synthetic_sample, path, "--workers", "1", "--no-space-check")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        code, err = first.returncode, first.stderr
    else:  # no mount here: ENOSPC injected after three shards
        path = tmp_path / "s.zarr"
        real_write, written = store.write_shard, []

        def full(*args: Any) -> int:
            if len(written) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(args[1])
            return real_write(*args)

        monkeypatch.setattr(store, "write_shard", full)
        result = CliRunner().invoke(main, run_args(synthetic_sample, path, "--workers", "0"))
        code, err = result.exit_code, result.output
        monkeypatch.undo()
    assert code == 5, err
    assert "Traceback" not in err
    match = FULL_LINE.fullmatch(err)
    assert match is not None, err
    assert match["path"] == match["store"] == str(path)
    assert store.journal(path)  # some shards were finished
    if fs is not None:
        # less than a shard is left (the shard that did not fit is not kept)
        assert match["free"].endswith((" B", " kB")), match["free"]
        fs.grow("64m")  # room made
    again = CliRunner().invoke(main, run_args(synthetic_sample, path, "--resume", "--workers", "1"))
    assert again.exit_code == 0, again.output
    assert check(path) == []
    assert store_differences(reference, path) == []


def test_a_run_that_cannot_fit_is_refused_before_it_starts(
    synthetic_sample: SampleArchives, small_fs: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fs = small_fs("1m")
    if fs is None:
        monkeypatch.setattr(space, "free_bytes", lambda path: 1_000_000)
    folder = fs.path if fs is not None else tmp_path / "store-fs"
    folder.mkdir(exist_ok=True)
    path = folder / "s.zarr"
    result = CliRunner().invoke(main, run_args(synthetic_sample, path, "--workers", "0"))
    assert result.exit_code == 5, result.output
    needed = 60 * (space.STORE_BYTES["s2"] + space.SMALL_BYTES)
    assert re.fullmatch(
        rf"error: {path}: the run needs about 6.50 MB \({needed / 1e6:.2f} MB store\) but its file "
        r"system has 1.0\d MB free: make room, put the staging folder elsewhere \(--staging-dir\), "
        r"or skip this estimate with --no-space-check\n",
        result.output,
    ), result.output
    assert sorted(p.name for p in folder.iterdir()) == []  # nothing written, no lock left
    skipped = CliRunner().invoke(main, run_args(synthetic_sample, tmp_path / "elsewhere.zarr",
                                                "--workers", "0", "--no-space-check"))  # fmt: skip
    assert skipped.exit_code == 0, skipped.output


@pytest.fixture(scope="module")
def with_s1(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("s1"), layout="reben-v2", real=True,
                                s1=True)  # fmt: skip


def s1_args(sample: ReleaseSample, path: Path, *extra: str) -> list[str]:
    metadata = [a for m in sample.metadata for a in ("--metadata", str(m))]
    return ["run", str(path), "--source-archive", str(sample.s2[0]), *metadata, "--s1-archive",
            str(sample.s1[0]), "--workers", "0", "--no-progress", *extra]  # fmt: skip


def test_a_full_staging_folder(
    with_s1: ReleaseSample, small_fs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = small_fs("256k")  # the six S1 patches stage 691 kB
    path = tmp_path / "s.zarr"
    if fs is None:
        pytest.fail("this test needs a small file system for the staging folder (tmpfs)")
    staging = fs.path
    refused = CliRunner().invoke(main, s1_args(with_s1, path, "--staging-dir", str(staging)))
    assert refused.exit_code == 5
    rows = sum(pq.read_metadata(m).num_rows for m in with_s1.metadata)  # the store's capacity
    count = space.samples_bound(rows, with_s1.s2[0].stat().st_size)
    need = space.human_bytes(count * space.STAGING_BYTES["bands_s1"])
    assert refused.output.startswith(f"error: {staging}: the run needs about {need} ({need} "
                                     "staging) but its file system has ")  # fmt: skip
    assert not path.exists()
    monkeypatch.setenv(STAGING_DIR_ENV, str(staging))  # the environment variable says it too
    full = CliRunner().invoke(main, s1_args(with_s1, path, "--no-space-check"))
    assert full.exit_code == 5, full.output
    line = re.fullmatch(
        rf"error: {staging}/ingest-staging-[0-9a-f]{{16}}: no space left on device after writing "
        rf"(?P<written>[\d.]+) kB there, (?P<free>[\d.,]+ k?B) free; {path} is left unfinished: "
        r"continue it with --resume and the same options, or start over with --overwrite\n",
        full.output,
    )
    assert line is not None, full.output
    assert 100 < float(line["written"]) <= 262.144
    assert list(staging.iterdir()) == []  # the staging folder is removed all the same
    monkeypatch.delenv(STAGING_DIR_ENV)
    resumed = CliRunner().invoke(main, s1_args(with_s1, path, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert check(path) == []


def test_staging_goes_beside_a_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STAGING_DIR_ENV, raising=False)
    assert staging_parent(StoreLocation(str(tmp_path / "a" / "s.zarr"))) == tmp_path / "a"
    assert staging_parent(StoreLocation("s3://bucket/s.zarr", {"anon": True})) == Path(
        __import__("tempfile").gettempdir()
    )
    assert staging_parent(StoreLocation("s.zarr"), str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.setenv(STAGING_DIR_ENV, str(tmp_path / "env"))
    assert staging_parent(StoreLocation("s.zarr")) == tmp_path / "env"
    assert staging_parent(StoreLocation("s.zarr"), str(tmp_path / "x")) == tmp_path / "x"


def test_the_estimate_of_a_full_reben_run() -> None:
    """All 549,488 reBEN patches with S1 and maps: ~115 GB of store (the issue's "order of 110
    GB") and ~64 GB of staging (the README's 63 GB for S1 plus about 1 GB of maps)."""
    full = estimate(549_488, labels_only=False, partners=("bands_s1", "reference_map"))
    assert full == Estimate(549_488 * 208_300, 549_488 * 117_200)
    assert round(full.store / 1e9) == 114 and round(full.staging / 1e9) == 64
    assert estimate(10, labels_only=True, partners=()) == Estimate(3_000, 0)


def test_the_count_is_bounded_by_the_archive_size() -> None:
    """Zenodo's 600,000 slots, or the full official metadata with an archive of a few patches:
    no more samples than the archive's bytes can hold."""
    assert space.samples_bound(600_000, None) == 600_000
    assert space.samples_bound(600_000, 66_000_000_000) == 600_000  # the full v1.0 archive
    assert space.samples_bound(549_488, 800_000) == 11


def test_archive_sizes_of_files_and_urls(tmp_path: Path) -> None:
    """Local parts by stat, http(s) parts by a HEAD (loopback here); unknown: None."""
    import functools
    import http.server
    import threading

    (tmp_path / "a.tar.zst").write_bytes(b"x" * 1234)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.tar.zst"
        assert space.local_size((url, str(tmp_path / "a.tar.zst"))) == 2468
        assert space.local_size((url.replace("a.tar", "missing.tar"),)) is None
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert space.local_size(("s3://bucket/x.tar.zst",)) is None
    assert space.local_size((str(tmp_path / "nothing"),)) is None


def test_limit_bounds_the_estimate(
    synthetic_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(space, "free_bytes", lambda path: 1_000_000)
    refused = CliRunner().invoke(
        main, run_args(synthetic_sample, tmp_path / "all.zarr", "--workers", "0")
    )
    assert refused.exit_code == 5, refused.output
    fits = CliRunner().invoke(main, run_args(synthetic_sample, tmp_path / "two.zarr", "--workers", "0",
                                             "--limit", "2"))  # fmt: skip
    assert fits.exit_code == 0, fits.output
