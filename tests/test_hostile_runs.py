"""Whole runs on crafted inputs (issue 19, findings 5–8): deep JSON in a Sentinel-1 member, a
plain tar cut at a member boundary, a wrong md5 with --limit, and the metadata size limit when
reads return what has arrived. Each ends with exit 3 and one line naming the culprit, or records
no more than what was verified."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zarr
from click.testing import CliRunner

from ingest.cli import main
from ingest.errors import InputDataError
from ingest.layouts import reben_v2
from ingest.sources.inputs import InputSpec
from ingest.testing.archive_writer import rewrite_archive
from ingest.testing.emulator import Emulator
from ingest.testing.releases import ReleaseSample, write_release_sample
from tests.decode.tiffs import Tiff, band


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--workers", "0"])
    return result.exit_code, result.output


def assert_refused(code: int, output: str, *expected: str, store: Path) -> None:
    assert code == 3, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    for text in expected:
        assert text in lines[0], lines[0]
    if (store / "zarr.json").exists():
        assert zarr.open_group(str(store), mode="r").attrs["complete"] is False


# --- finding 5: deep JSON ------------------------------------------------------------------------


def test_deeply_nested_s1_labels_metadata_is_an_input_error(tmp_path: Path) -> None:
    """Before: 200,000 nested ``[`` ended the run with RecursionError and a traceback (exit 1)."""
    sample = write_release_sample(tmp_path / "v1", layout="zenodo-v1", real=True, s1=True)
    victim: list[str] = []

    def deepen(info: tarfile.TarInfo, data: bytes | None) -> list[tuple[tarfile.TarInfo, Any]]:
        if data is not None and info.name.endswith("_labels_metadata.json") and not victim:
            victim.append(info.name)
            deep = b"[" * 200_000
            info.size = len(deep)
            return [(info, deep)]
        return [(info, data)]

    s1 = rewrite_archive(sample.s1[0], tmp_path / "s1.tar.gz", deepen)
    store = tmp_path / "s.zarr"
    code, out = cli(str(store), "--source-archive", str(sample.s2[0]), "--s1-archive", str(s1))
    assert_refused(code, out, victim[0], "invalid JSON: nested too deeply", store=store)


# --- finding 6: a plain tar cut at a member boundary -------------------------------------------


def test_a_plain_tar_cut_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    """Before: exit 0, complete=True and source_read_to_end=True with 3 of 6 patches."""
    sample = write_release_sample(tmp_path / "v2", layout="reben-v2", real=True,
                                  compression="none")  # fmt: skip
    whole = sample.s2[0].read_bytes()
    with tarfile.open(fileobj=io.BytesIO(whole), mode="r:") as tar:
        members = tar.getmembers()
    folders = [m.name.rsplit("/", 1)[0] for m in members]
    third = next(
        i for i, f in enumerate(folders) if f == sorted(set(folders), key=folders.index)[3]
    )
    cut = tmp_path / "BigEarthNet-S2.tar"
    cut.write_bytes(whole[: members[third].offset])  # just before the 4th patch's first header
    store = tmp_path / "s.zarr"
    args = [str(store), "--source-archive", str(cut)]
    for m in sample.metadata:
        args += ["--metadata", str(m)]
    code, out = cli(*args)
    assert_refused(code, out, str(cut), "truncated", "no end-of-archive marker", store=store)


# --- finding 7: md5 with --limit -----------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_24(tmp_path_factory: pytest.TempPathFactory) -> ReleaseSample:
    return write_release_sample(tmp_path_factory.mktemp("v2"), layout="reben-v2", patches=24)


def md5sums(sample: ReleaseSample, directory: Path, s2_md5: str | None) -> Path:
    lines = []
    for path in (*sample.s2, *sample.metadata):
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        if s2_md5 is not None and path in sample.s2:
            digest = s2_md5
        lines.append(f"{digest}  {path.name}")
    target = directory / "MD5SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


@pytest.mark.parametrize("limit", [[], ["--limit", "5"]])
def test_a_wrong_md5_is_never_recorded_and_never_dropped(
    v2_24: ReleaseSample, tmp_path: Path, limit: list[str]
) -> None:
    """Before: with --limit 5 the read-ahead reached the end, the md5 check failed where nobody
    read on, and the store recorded the wrong md5 as the file's (exit 0, 3 runs of 3)."""
    wrong = md5sums(v2_24, tmp_path, "0" * 32)
    store = tmp_path / "s.zarr"
    with Emulator(v2_24.s2[0].parent) as emulator:
        code, out = cli(str(store), "--dataset", "bigearthnet-v2", "--zenodo-url",
                        emulator.base_url, "--md5sums", str(wrong), *limit)  # fmt: skip
    if code == 0:  # only when the read-ahead did not reach the last byte: then not verified
        assert limit, out
        sources = zarr.open_group(str(store), mode="r").attrs["sources"]
        assert [s.get("md5") for s in sources if s["role"] == "s2"] == [None], sources
    else:
        assert_refused(code, out, "md5 ", "differs from the official 000000", store=store)


def test_a_right_md5_is_recorded_only_when_read_to_the_end(
    v2_24: ReleaseSample, tmp_path: Path
) -> None:
    right = md5sums(v2_24, tmp_path, None)
    expected = right.read_text().split()[0]
    with Emulator(v2_24.s2[0].parent) as emulator:
        for name, limit in (("all.zarr", []), ("five.zarr", ["--limit", "5"])):
            code, out = cli(str(tmp_path / name), "--dataset", "bigearthnet-v2", "--zenodo-url",
                            emulator.base_url, "--md5sums", str(right), *limit)  # fmt: skip
            assert code == 0, out
    whole = zarr.open_group(str(tmp_path / "all.zarr"), mode="r").attrs
    assert [s["md5"] for s in whole["sources"] if s["role"] == "s2"] == [expected]
    assert whole["report"]["source_read_to_end"] is True
    five = zarr.open_group(str(tmp_path / "five.zarr"), mode="r").attrs
    assert [s.get("md5") for s in five["sources"] if s["role"] == "s2"] in ([expected], [None])


# --- finding 8: the metadata size limit whatever the reads return ------------------------------


class Trickle:
    """An input stream whose reads return 1,000 bytes at most, as an HTTP body returns what has
    arrived."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads = 0

    def read(self, n: int = -1, /) -> bytes:
        self.reads += 1
        return self._data.read(min(1000, n if n >= 0 else 1000))

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def records(self) -> list[dict[str, Any]]:
        return []


def test_the_metadata_limit_holds_when_reads_are_short(
    monkeypatch: pytest.MonkeyPatch, v2_24: ReleaseSample
) -> None:
    """Before: the limit was checked on the first read only; over HTTP that returns what has
    arrived, so a metadata file of any size was read into memory."""
    data = v2_24.metadata[0].read_bytes()
    limit = len(data) // 2
    streams: list[Trickle] = []

    @contextmanager
    def fake_open(spec: InputSpec, **kwargs: Any) -> Iterator[Trickle]:
        streams.append(Trickle(data))
        yield streams[-1]

    monkeypatch.setattr(reben_v2, "open_input", fake_open)
    monkeypatch.setattr(reben_v2, "_METADATA_BYTES", limit)
    layout: Any = reben_v2.RebenV2(SimpleNamespace(policy=None, warn=print, endpoint=None))  # type: ignore[arg-type]
    spec = InputSpec(("https://example.org/metadata.parquet",), "metadata")
    sink = SimpleNamespace(add_sources=lambda records: None)
    with pytest.raises(InputDataError, match=f"metadata larger than {limit:,} bytes"):
        layout._fetch(spec, sink)
    assert streams[0].reads <= limit // 1000 + 2  # it stopped at the limit, not at the end
    monkeypatch.setattr(reben_v2, "_METADATA_BYTES", len(data))
    assert layout._fetch(spec, sink) == data  # exactly the limit is accepted


# --- peak RSS of whole runs: one hostile member costs no more than a clean run ---------------


def run_rss(*args: str) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, output) of ``python -m ingest run ARGS`` in a child
    process, its RSS from wait4 (that child's own, not the test process's)."""
    command = [sys.executable, "-m", "ingest", "run", *args, "--workers", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        output = child.stdout.read().decode() if child.stdout else ""
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss * 1024, output


def bomb_map(size: int) -> bytes:
    """A reference map whose one strip inflates to ``size`` zero bytes (1 MiB of it per KiB)."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    strip = b"".join([*(compressor.compress(chunk) for _ in range(size >> 20)), compressor.flush()])
    return Tiff(band(1), deflate=True, strips=[strip]).encode()


def test_a_deflate_bomb_costs_no_more_memory_than_a_clean_run(tmp_path: Path) -> None:
    """Before: a 2 MB map inflating to 2 GiB took a run to 4.5 GiB of RSS (and it succeeded).
    Here 1 GiB: the hostile run's peak RSS stays within 256 MiB of the clean run's. (The huge
    long name is measured at the reader: tests/archive/test_hostile_tar.py.)"""
    sample = write_release_sample(tmp_path / "v2", layout="reben-v2", real=True,
                                  reference_maps=True, compression="gzip")  # fmt: skip
    victim = sample.patches[1]
    payload = bomb_map(1 << 30)

    def edit(info: tarfile.TarInfo, data: bytes | None) -> list[tuple[tarfile.TarInfo, Any]]:
        if data is not None and victim in info.name:
            info.size = len(payload)
            return [(info, payload)]
        return [(info, data)]

    maps = rewrite_archive(sample.reference_maps[0], tmp_path / "maps.tar.gz", edit)
    args = ["--source-archive", str(sample.s2[0])]
    for m in sample.metadata:
        args += ["--metadata", str(m)]
    code, clean_rss, out = run_rss(str(tmp_path / "clean.zarr"), *args,
                                   "--reference-maps", str(sample.reference_maps[0]))  # fmt: skip
    assert code == 0, out
    code, hostile_rss, out = run_rss(str(tmp_path / "hostile.zarr"), *args,
                                     "--reference-maps", str(maps))  # fmt: skip
    assert code == 3 and "inflates beyond" in out and "Traceback" not in out, out
    assert hostile_rss - clean_rss < 256 << 20, (hostile_rss >> 20, clean_rss >> 20)
