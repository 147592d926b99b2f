"""An archive read by a process of its own (issue 21): the same tar stream, records and errors as
read in the run's own process, through a ring that wraps many times; reading ahead while the run
waits, bounded; stopped early with the records of what was read; a killed process is an error."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import signal
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from ingest.errors import IngestError, InputDataError
from ingest.sources.decompress import DECOMPRESSION_ERRORS, corrupt, open_decompressed
from ingest.sources.download import RetryPolicy
from ingest.sources.endpoint import Endpoint
from ingest.sources.inputs import InputSpec, open_input
from ingest.sources.reader_process import ArchiveReader, Ring, room_for_ring

#: A small ring, so that a few MB wrap it many times and fill it and what is read ahead.
SMALL = Ring(slot=64 << 10, slots=3, ahead=256 << 10)


def tar_bytes(size: int, seed: int = 0) -> bytes:
    """A tar of ~``size`` bytes of members that compress about 2:1."""
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        written = 0
        number = 0
        while written < size:
            n = rng.randrange(1, 300_000)
            data = rng.randbytes(n // 2) + bytes(n - n // 2)
            info = tarfile.TarInfo(f"top/item_{number}/band.tif")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            written += len(data)
            number += 1
    return out.getvalue()


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": lambda data: zstandard.ZstdCompressor(level=1).compress(data),
    "gzip": lambda data: gzip.compress(data, compresslevel=1),
    "plain": lambda data: data,
}


@pytest.fixture(scope="module")
def tar() -> bytes:
    return tar_bytes(3 << 20)


def spec_of(path: Path, md5: str | None = None) -> InputSpec:
    return InputSpec((str(path),), "s2", md5=md5)


def start(spec: InputSpec, warnings: list[str] | None = None, ring: Ring = SMALL) -> ArchiveReader:
    sink = warnings if warnings is not None else []
    return ArchiveReader(spec, policy=RetryPolicy(), endpoint=Endpoint(), warn=sink.append,
                         ring=ring)  # fmt: skip


def read_in_process(spec: InputSpec) -> tuple[bytes, list[dict[str, object]]]:
    """What the run's own process reads of ``spec``: the tar stream and the records."""
    with open_input(spec, policy=RetryPolicy(), warn=lambda m: None) as raw:
        with open_decompressed(raw, spec.name) as stream:
            try:
                data = stream.read()
            except DECOMPRESSION_ERRORS as exc:  # as the tar reader says it
                raise corrupt(spec.name, exc) from None
        raw.drain()
        return data, raw.records()


@pytest.mark.parametrize("kind", COMPRESS)
def test_the_same_stream_and_records_as_read_in_process(
    kind: str, tar: bytes, tmp_path: Path
) -> None:
    path = tmp_path / f"archive.{kind}"
    path.write_bytes(COMPRESS[kind](tar))
    spec = spec_of(path, hashlib.md5(path.read_bytes()).hexdigest())
    reader = start(spec)
    try:
        assert reader.pid is not None and reader.pid != os.getpid()
        with reader.stream() as stream:
            got = stream.read()
        assert got == tar  # through a ring of 3 slots of 64 KiB: wrapped ~50 times
        records = reader.records()
    finally:
        reader.close()
    expected_data, expected_records = read_in_process(spec)
    assert expected_data == tar
    assert records == expected_records
    assert records[0]["bytes"] == path.stat().st_size and records[0]["md5"] == spec.md5
    assert reader.bytes_read == path.stat().st_size and reader.size == path.stat().st_size


def test_it_reads_ahead_a_bounded_amount_while_the_run_waits(tar: bytes, tmp_path: Path) -> None:
    path = tmp_path / "archive.tar"  # plain: the meter counts tar bytes
    path.write_bytes(tar)
    reader = start(spec_of(path))
    try:
        settled = _settled(lambda: reader.bytes_read)
        ring = SMALL.slots * SMALL.slot
        # the ring and what is read ahead beyond it (BufferedReader reads up to 1 MiB at once)
        assert ring + SMALL.ahead <= settled <= ring + SMALL.ahead + (1 << 20) + SMALL.slot
        assert settled < len(tar)
        with reader.stream() as stream:
            assert stream.read() == tar  # what was read ahead comes first, in order
    finally:
        reader.close()


def test_closing_early_stops_the_process_with_the_records_of_what_it_read(
    tar: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "archive.tar"  # (a zstd thread would have read all 1.6 MB at once)
    path.write_bytes(tar)
    spec = spec_of(path, hashlib.md5(path.read_bytes()).hexdigest())
    reader = start(spec)
    stream = reader.stream()
    assert stream.read(100_000) == tar[:100_000]
    stream.close()  # as a run stopped by --limit
    assert reader.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(reader.pid, 0)  # ended (and reaped)
    records = reader.records()
    assert 0 < records[0]["bytes"] < path.stat().st_size  # type: ignore[operator]
    assert records[0]["md5"] is None  # not read to the end: not verified
    reader.close()  # a second time: nothing more


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "zstd cut short": lambda tar: COMPRESS["zstd"](tar)[:-5000],
    "gzip corrupt": lambda tar: (lambda z: z[:5000] + bytes(500) + z[5500:])(COMPRESS["gzip"](tar)),
    "not an archive": lambda tar: b"<html>404</html>" * 100,
}


def both_errors(spec: InputSpec) -> tuple[IngestError, IngestError]:
    """The error of ``spec`` read in this process and read by a reader process."""
    with pytest.raises(IngestError) as expected:
        read_in_process(spec)
    reader = start(spec)
    try:
        with pytest.raises(IngestError) as got, reader.stream() as stream:
            stream.read()
    finally:
        reader.close()
    assert type(got.value) is type(expected.value) and str(got.value) == str(expected.value)
    return expected.value, got.value


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_archive_is_the_error_of_a_read_in_process(
    damage: str, tar: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "archive"
    path.write_bytes(DAMAGE[damage](tar))
    _, got = both_errors(spec_of(path))
    assert isinstance(got, InputDataError) and got.culprit == str(path)


def test_a_missing_file_and_a_wrong_md5_are_the_errors_of_a_read_in_process(
    tar: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "archive.tar"
    path.write_bytes(tar)
    for spec in (spec_of(tmp_path / "missing.tar"), spec_of(path, "0" * 32)):
        both_errors(spec)


def test_a_killed_process_is_an_error_naming_the_archive(tar: bytes, tmp_path: Path) -> None:
    path = tmp_path / "archive.tar"
    path.write_bytes(tar)
    reader = start(spec_of(path))
    try:
        stream = reader.stream()
        stream.read(10_000)
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(IngestError, match="the process reading it ended") as caught:
            stream.read()
        assert str(path) in str(caught.value) and "exit code -9" in str(caught.value)
    finally:
        reader.close()


def test_room_for_the_ring_is_what_the_file_system_has_free(tmp_path: Path) -> None:
    assert room_for_ring(Ring(slot=1, slots=1), str(tmp_path))
    assert not room_for_ring(Ring(slot=1 << 40, slots=1 << 10), str(tmp_path))
    assert room_for_ring(Ring(), str(tmp_path / "no such folder"))  # not a file system: no check


def _settled(value: Callable[[], int], quiet: float = 0.5, limit: float = 60) -> int:
    """``value()`` once it has not changed for ``quiet`` seconds."""
    last, since, start = value(), time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"still changing after {limit} s: {last}")


@pytest.mark.parametrize(
    ("parts", "local"),
    [(("a.tar.zst",), True), (("/x/a.gzaa", "/x/a.gzab"), True), (("http://h/a.tar.zst",), False),
     (("a.gzaa", "https://h/a.gzab"), False), ((), False)],
)  # fmt: skip
def test_only_local_files_are_read_ahead(parts: tuple[str, ...], local: bool) -> None:
    """(A download held back while the run reads its labels would stall for as long.)"""
    assert InputSpec(parts, "s2", collection=None if parts else "c").local is local
