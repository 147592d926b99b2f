"""Operating safely and clearly (issue 20): an ``--overwrite`` that never destroys first, no silent
empty result, a failed run that says what it left behind, and fail-fast messages instead of long
silent waits and tracebacks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import urllib3
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.config import RunConfig
from ingest.errors import NetworkError
from ingest.layouts.labels import Selection
from ingest.nomenclature import CLASSES_43
from ingest.pipeline import run
from ingest.sources.download import ResumableBody, RetryPolicy
from ingest.store import zarrstore as store
from ingest.store.verify import check
from ingest.testing.compare import store_differences
from ingest.testing.emulator import Emulator
from ingest.testing.faults import Faults
from ingest.testing.releases import ReleaseSample, write_release_sample
from ingest.testing.samples import SampleArchives, write_synthetic_sample

from .conftest import ingest_local


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--workers", "0", "--no-progress"])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def local(archives: SampleArchives) -> list[str]:
    return ["--labels-archive", str(archives.labels), "--source-archive", str(archives.source)]


def no_leftovers(path: Path) -> None:
    siblings = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
    assert siblings == [path.name], siblings


@pytest.fixture
def good(real_sample: SampleArchives, tmp_path: Path) -> tuple[Path, Path]:
    """A complete store, and a copy of it to compare with."""
    path = tmp_path / "good.zarr"
    ingest_local(real_sample, path)
    copy = tmp_path / "copy" / "good.zarr"
    shutil.copytree(path, copy)
    return path, copy


# --- finding 3: --overwrite destroys first ---------------------------------------------------


def test_overwrite_with_a_missing_archive_keeps_the_store(
    real_sample: SampleArchives, good: tuple[Path, Path], tmp_path: Path
) -> None:
    path, copy = good
    missing = tmp_path / "missing.tar.zst"
    code, out = invoke(str(path), "--overwrite", "--labels-archive", str(real_sample.labels),
                       "--source-archive", str(missing))  # fmt: skip
    assert code == 3
    assert one_error_line(out) == (
        f"error: {missing}: cannot open archive: No such file or directory; {path} is unchanged"
    )
    assert check(path) == []
    assert store_differences(copy, path, same_location=False) == []
    no_leftovers(path)


def cut_archive(archives: SampleArchives, tmp_path: Path) -> Path:
    """The source archive cut short at 90 %: it fails after a good part of it was written."""
    cut = tmp_path / "cut.tar.gz"
    data = archives.source.read_bytes()
    cut.write_bytes(data[: len(data) * 9 // 10])
    return cut


def test_overwrite_failing_midway_keeps_the_store(
    synthetic_sample: SampleArchives, good: tuple[Path, Path], tmp_path: Path
) -> None:
    path, copy = good
    cut = cut_archive(synthetic_sample, tmp_path)
    code, out = invoke(str(path), "--overwrite", "--labels-archive",
                       str(synthetic_sample.labels), "--source-archive", str(cut))  # fmt: skip
    assert code == 3
    assert one_error_line(out).endswith(
        f"; {path} is unchanged (the unfinished replacement was removed); run again with "
        "--overwrite"
    )
    assert store_differences(copy, path, same_location=False) == []
    no_leftovers(path)


def test_overwrite_swaps_the_new_store_in_at_the_end(
    real_sample: SampleArchives, good: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = good
    seen: list[tuple[list[str], int, bool]] = []
    real_mark = store.mark_complete

    def mark(where: Any) -> None:  # the last write of the new store: the old one still whole
        seen.append((check(path), zarr.open_group(str(path)).attrs["counts"]["samples"],
                     Path(str(where)).name == "good.zarr.ingest-replacement"))  # fmt: skip
        real_mark(where)

    monkeypatch.setattr(store, "mark_complete", mark)
    report = ingest_local(real_sample, path, overwrite=True, selection=Selection(limit=2))
    assert seen == [([], 6, True)]
    assert report.samples == 2 and str(report.store) == str(path)
    assert check(path) == []
    assert zarr.open_group(str(path)).attrs["counts"]["samples"] == 2
    no_leftovers(path)


# --- finding 5: leftovers of a failed run, exit codes -----------------------------------------


def test_a_failed_run_says_what_it_left_and_the_retry_says_what_to_do(
    synthetic_sample: SampleArchives, tmp_path: Path
) -> None:
    path = tmp_path / "s.zarr"
    cut = cut_archive(synthetic_sample, tmp_path)
    code, out = invoke(str(path), "--labels-archive", str(synthetic_sample.labels),
                       "--source-archive", str(cut), "--shard-size", "2")  # fmt: skip
    assert code == 3
    line = one_error_line(out)
    assert line.endswith(
        f"; {path} is left unfinished: continue it with --resume and the same options, or "
        "start over with --overwrite"
    ), line
    shards = len(store.journal(path))
    assert shards >= 1
    created = zarr.open_group(str(path)).attrs["created"]
    code, out = invoke(str(path), *local(synthetic_sample), "--shard-size", "2")
    assert code == 5  # a store error, as the README lists (was 2)
    assert one_error_line(out) == (
        f"error: {path} already exists, unfinished ({shards} shard(s) written by a run started "
        f"{created}): continue it with --resume and that run's options, or start over with "
        "--overwrite"
    )
    code, out = invoke(str(path), *local(synthetic_sample), "--shard-size", "2", "--resume")
    assert code == 0, out
    assert check(path) == []


def test_nothing_written_says_nothing_about_the_store(
    real_sample: SampleArchives, tmp_path: Path
) -> None:
    code, out = invoke(str(tmp_path / "s.zarr"), "--labels-archive", str(real_sample.labels),
                       "--source-archive", str(tmp_path / "missing.tar.gz"))  # fmt: skip
    assert code == 3
    assert one_error_line(out) == (
        f"error: {tmp_path / 'missing.tar.gz'}: cannot open archive: No such file or directory"
    )
    assert list(tmp_path.iterdir()) == []  # no store, no lock left


# --- finding 4: no silent empty or partial result ---------------------------------------------


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v1"), layout="zenodo-v1", real=True)


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", real=True)


def test_labels_only_on_zenodo_v1_reads_the_labels_from_the_s2_archive(
    v1: ReleaseSample, tmp_path: Path
) -> None:
    full, labels = tmp_path / "full.zarr", tmp_path / "labels.zarr"
    code, out = invoke(str(full), "--source-archive", str(v1.s2[0]))
    assert code == 0, out
    code, out = invoke(str(labels), "--source-archive", str(v1.s2[0]), "--labels-only")
    assert code == 0, out
    assert "warning" not in out
    assert check(labels) == []
    a, b = zarr.open_group(str(full), mode="r"), zarr.open_group(str(labels), mode="r")
    assert b.attrs["counts"]["samples"] == len(v1.patches) > 0
    assert "bands_10m" not in b and "epsg" not in b
    for name in ("patch_id", "labels", "labels19", "time", "cloud_and_shadow", "seasonal_snow",
                 "split", "country", "season"):  # fmt: skip
        assert np.array_equal(a[name][:], b[name][:]), name
    assert b["patch_id"][:].tolist() == list(v1.patches)


def test_a_store_with_no_sample_says_why(real_sample: SampleArchives, real_by_name: Any,
                                          tmp_path: Path) -> None:  # fmt: skip
    held = {c for p in real_by_name.values() for c in p.metadata["labels"]}
    absent = next(c for c in CLASSES_43 if c not in held)
    warnings: list[str] = []
    path = tmp_path / "empty.zarr"
    report = ingest_local(real_sample, path, selection=Selection(classes=(absent,)),
                          warn=warnings.append)  # fmt: skip
    reason = "the selection matches none of the 6 labelled patches"
    assert report.samples == 0
    assert warnings == [f"{path}: no sample written: {reason}"]
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["report"]["empty"] == reason
    assert check(path) == []
    group = zarr.open_group(str(path), mode="r+")
    report_attrs = dict(group.attrs["report"])
    del report_attrs["empty"]
    group.attrs["report"] = report_attrs
    assert "the store holds no sample and no note says why (report.empty)" in check(path)


def test_limit_zero_is_the_reason(real_sample: SampleArchives, tmp_path: Path) -> None:
    warnings: list[str] = []
    ingest_local(real_sample, tmp_path / "z.zarr", selection=Selection(limit=0),
                 warn=warnings.append)  # fmt: skip
    assert warnings == [f"{tmp_path / 'z.zarr'}: no sample written: --limit 0"]


# --- finding 6: dead ends without a word -----------------------------------------------------


def test_reben_without_the_snow_cloud_metadata_warns_with_the_count(
    v2: ReleaseSample, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    flagged = pq.read_table(v2.metadata[1]).num_rows
    assert 0 < flagged < len(v2.patches)
    warnings: list[str] = []
    report = run(RunConfig(store=tmp_path / "s.zarr", source_archive=str(v2.s2[0]),
                           metadata=(str(v2.metadata[0]),), workers=0),
                 warn=warnings.append)  # fmt: skip
    assert report.source_without_labels == flagged
    hint = (
        "the metadata given has no patch with snow, cloud or shadow: is "
        "metadata_for_patches_with_snow_cloud_or_shadow.parquet missing? The patches it "
        "describes (69,450 in the full release) are left out as source without labels"
    )
    assert warnings == [
        f"--metadata: {hint}",
        f"{flagged:,} source patch(es) left out without labels: {hint}",
    ]
    warnings.clear()
    run(RunConfig(store=tmp_path / "both.zarr", source_archive=str(v2.s2[0]),
                  metadata=tuple(str(m) for m in v2.metadata), workers=0),
        warn=warnings.append)  # fmt: skip
    assert warnings == []


def test_no_archive_and_no_root_url_names_the_retired_api(tmp_path: Path) -> None:
    started = time.monotonic()
    code, out = invoke(str(tmp_path / "s.zarr"))
    assert code == 2
    assert one_error_line(out) == (
        "error: MLHub's API (https://api.radiant.earth/mlhub/v1/, used when MLHUB_ROOT_URL is "
        "not set) was retired in 2023: give the archives (ingest run --source-archive ..., or "
        "--dataset bigearthnet-v1|v2), or set MLHUB_ROOT_URL to an MLHub-compatible endpoint"
    )
    assert time.monotonic() - started < 30  # at once: it used to wait ~3 minutes for DNS
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(main, ["collections"])
    assert result.exit_code == 2 and "was retired in 2023" in result.output


def test_root_url_without_its_trailing_slash_is_named(
    real_sample: SampleArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(real_sample.labels.parent) as emulator:
        root = emulator.root_url.rstrip("/")
        monkeypatch.setenv("MLHUB_ROOT_URL", root)
        monkeypatch.setenv("MLHUB_API_KEY", "k")
        code, out = invoke(str(tmp_path / "s.zarr"))
        assert emulator.requests == []
    assert code == 2
    assert one_error_line(out) == (
        f"error: MLHUB_ROOT_URL={root} must end with a slash ({root}/): without it the last "
        "segment of the URL is dropped from every request"
    )


class _Unresolvable(requests.Session):
    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        conn = urllib3.connection.HTTPSConnection("api.radiant.earth")
        cause = urllib3.exceptions.NameResolutionError("api.radiant.earth", conn, OSError(-3))
        retry = urllib3.exceptions.MaxRetryError(None, "/mlhub/v1/archive/x", cause)  # type: ignore[arg-type]
        raise requests.ConnectionError(retry)


def test_a_host_that_does_not_resolve_fails_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(NetworkError) as raised:
        ResumableBody(_Unresolvable(), "https://api.radiant.earth/mlhub/v1/archive/x",
                      what="archive 'x'", sleep=sleeps.append)  # fmt: skip
    assert str(raised.value) == (
        "archive 'x': cannot resolve the host name 'api.radiant.earth' (no network, or a wrong URL)"
    )
    assert sleeps == []


def test_waiting_for_the_network_is_announced(real_sample: SampleArchives) -> None:
    with Emulator(real_sample.labels.parent) as emulator:
        emulator.set_faults(Faults(unavailable=2, status=503, retry_after=2))
        warnings: list[str] = []
        sleeps: list[float] = []
        url = emulator.archive_url("bigearthnet_v1_labels")
        with requests.Session() as session:
            body = ResumableBody(session, url, what="labels", warn=warnings.append,
                                 sleep=sleeps.append, policy=RetryPolicy())  # fmt: skip
            body.close()
    assert sleeps == [2.0, 2.0]
    assert warnings == [
        "labels: HTTP 503; trying again in 2 s (attempt 1 of 8)",
        "labels: HTTP 503; trying again in 2 s (attempt 2 of 8)",
    ]


@pytest.fixture(scope="module")
def longer(tmp_path_factory: pytest.TempPathFactory) -> SampleArchives:
    return write_synthetic_sample(tmp_path_factory.mktemp("longer"), 1500, seed=2)


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.3, 1.8, "writing"])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(
    longer: SampleArchives, tmp_path: Path, delay: float | str
) -> None:
    """Ctrl-C as a terminal sends it, to the whole process group: while the modules load, while
    the worker processes start (they used to print a traceback each), while they write (once
    the first shard is in the journal, whatever the machine's speed)."""
    ingest = Path(sys.executable).parent / "ingest"
    path = tmp_path / "s.zarr"
    process = subprocess.Popen(
        [str(ingest), "run", str(path), *local(longer), "--workers", "2", "--shard-size", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    if delay == "writing":
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the store may not be there yet
                if store.journal(path):
                    break
            time.sleep(0.02)
    else:
        time.sleep(float(delay))
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.fail(f"the run ended before the Ctrl-C ({delay}); make the sample larger")
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.startswith("error: interrupted") and err.count("\n") == 1, err


@pytest.mark.parametrize("moment", ["start-up", "writing"])
def test_ctrl_c_on_a_local_dask_cluster(
    longer: SampleArchives, tmp_path: Path, moment: str
) -> None:
    """The cluster's worker processes ignore the terminal's Ctrl-C (they printed a traceback
    each, and the client then failed on a closed loop, exit 1); the client stops in one line."""
    path = tmp_path / "s.zarr"
    ingest = Path(sys.executable).parent / "ingest"
    process = subprocess.Popen(
        [str(ingest), "run", str(path), *local(longer), "--cluster", "local:1", "--shard-size",
         "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        if moment == "writing":
            while not store.journal(path) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            time.sleep(0.5)  # before the cluster starts (a Ctrl-C during its start is ignored)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("error: interrupted"), err
