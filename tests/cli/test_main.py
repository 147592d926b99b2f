"""The ``ingest`` command: options reach the library, errors are one line with their exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from ingest import __version__
from ingest.cli import main
from ingest.store.verify import check
from ingest.testing.samples import SampleArchives


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def local(archives: SampleArchives) -> list[str]:
    return ["--labels-archive", str(archives.labels), "--source-archive", str(archives.source)]


def test_version_and_help() -> None:
    code, out, _ = invoke("--version")
    assert (code, out.strip()) == (0, f"ingest, version {__version__}")
    code, out, _ = invoke("run", "--help")
    assert code == 0
    for option in ("--labels-archive", "--source-archive", "--labels-collection", "--source-collection",
                   "--classes", "--cloud-and-shadow / --no-cloud-and-shadow",
                   "--seasonal-snow / --no-seasonal-snow", "--limit", "--labels-only",
                   "--shard-size", "--overwrite", "--workers", "--on-error", "--api-key", "--profile"):  # fmt: skip
        assert option in out, option
    code, out, _ = invoke("--help")
    assert "Exit codes" in out
    for command in ("run", "verify", "sample", "serve", "classes"):
        assert command in out


def test_run_prints_the_summary(real_sample: SampleArchives, tmp_path: Path) -> None:
    code, out, err = invoke("run", str(tmp_path / "s.zarr"), *local(real_sample), "--workers", "0")
    assert code == 0, err
    assert "samples written:" in out and " 6\n" in out.replace("  ", " ")
    for fact in ("labels without source:", "source items without labels:", "skipped items:",
                 "store size:", "elapsed:"):  # fmt: skip
        assert fact in out
    assert check(tmp_path / "s.zarr") == []


def test_run_options_reach_the_store(real_sample: SampleArchives, tmp_path: Path) -> None:
    code, _, err = invoke(
        "run", str(tmp_path / "s.zarr"), *local(real_sample), "--workers", "0",
        "--classes", "Coniferous forest", "--classes", "Pastures", "--no-seasonal-snow",
        "--shard-size", "2",
    )  # fmt: skip
    assert code == 0, err
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["bands_10m"].shards == (2, 4, 120, 120)
    assert group.attrs["options"]["selection"] == {
        "classes": ["Coniferous forest", "Pastures"],
        "cloud_and_shadow": None,
        "seasonal_snow": False,
        "limit": None,
        "split": None,
    }
    # Of the six real patches, three have Coniferous forest or Pastures; the snowy one is dropped.
    assert group.attrs["counts"]["samples"] == 3


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--classes", "Atlantis"], 2, "error: unknown class name 'Atlantis'"),
        (["--limit", "-1"], 2, "Invalid value for '--limit'"),
    ],
)
def test_usage_errors(
    real_sample: SampleArchives, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    exit_code, _, err = invoke("run", str(tmp_path / "s.zarr"), *local(real_sample), *args)
    assert exit_code == code
    assert message in err


def test_existing_store_is_a_store_error(real_sample: SampleArchives, tmp_path: Path) -> None:
    (tmp_path / "s.zarr").mkdir()
    code, _, err = invoke("run", str(tmp_path / "s.zarr"), *local(real_sample))
    assert code == 5
    assert err == (
        f"error: {tmp_path / 's.zarr'} exists and is not a Zarr store: refusing to touch it\n"
    )


def test_input_data_error_is_one_line_exit_3(real_sample: SampleArchives, tmp_path: Path) -> None:
    page = tmp_path / "bigearthnet_v1_source.tar.gz"
    page.write_text("<!DOCTYPE html><html><body>Service unavailable</body></html>")
    code, _, err = invoke(
        "run", str(tmp_path / "s.zarr"), "--labels-archive", str(real_sample.labels),
        "--source-archive", str(page), "--workers", "0",
    )  # fmt: skip
    assert code == 3
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err == (
        f"error: {page}: not a tar, tar.gz or tar.zst archive (starts with b'<!DOCTYPE html><')\n"
    )
    assert not (tmp_path / "s.zarr").exists()  # refused when its layout is read, before a store


def test_verify_exit_codes(real_sample: SampleArchives, tmp_path: Path) -> None:
    invoke("run", str(tmp_path / "s.zarr"), *local(real_sample), "--workers", "0")
    code, out, _ = invoke("verify", str(tmp_path / "s.zarr"))
    assert (code, out) == (
        0,
        f"{tmp_path / 's.zarr'}: valid store (contract v2, bigearthnet-v1, complete)\n",
    )
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs["complete"] = False
    code, _, err = invoke("verify", str(tmp_path / "s.zarr"))
    assert code == 5
    assert err.splitlines()[-1].startswith(
        f"error: {tmp_path / 's.zarr'}: 1 problem(s), first: store is not complete"
    )


def test_classes_lists_the_canonical_order() -> None:
    code, out, _ = invoke("classes")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 43
    assert lines[0] == " 0  Continuous urban fabric" and lines[42] == "42  Sea and ocean"
    code, out, _ = invoke("classes", "--nineteen")
    assert out.splitlines()[18] == "18  Marine waters"


def test_console_script_runs_as_a_process(real_sample: SampleArchives, tmp_path: Path) -> None:
    """The installed entry point, as a user runs it; --debug shows the traceback."""
    ingest = Path(sys.executable).parent / "ingest"
    done = subprocess.run(
        [str(ingest), "run", str(tmp_path / "s.zarr"), *local(real_sample), "--workers", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning or traceback from the worker pool either
    assert check(tmp_path / "s.zarr") == []
    done = subprocess.run(
        [str(ingest), "--debug", "run", str(tmp_path / "s.zarr"), *local(real_sample)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "StoreError" in done.stderr


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("3", "3")])
def test_openblas_threads_default_to_one_for_the_command_and_its_processes(
    given: str | None, seen: str
) -> None:
    """numpy's OpenBLAS threads spin in every process of a run that never uses them: the command
    sets one thread before numpy loads (a value the user set is kept), and what it spawns sees
    that."""
    code = (
        "import sys, multiprocessing as mp, ingest.__main__ as m\n"
        "sys.argv = ['ingest', '--version']\n"
        "try:\n    m.entry()\nexcept SystemExit:\n    pass\n"
        "import numpy, os\n"
        "ctx = mp.get_context('spawn')\n"
        "with ctx.Pool(1) as pool:\n"
        "    child = pool.apply(os.getenv, ('OPENBLAS_NUM_THREADS',))\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'), child)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.split()[-2:] == [seen, seen]
