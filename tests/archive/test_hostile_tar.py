"""Crafted tar headers (issue 19, findings 4 and 6): negative, huge and base-256 sizes, extended
headers beyond every limit, and a plain tar cut at a member boundary. Each is an InputDataError
naming the archive, with memory bounded by the limits, never a Python exception or gigabytes."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from ingest.archive.members import IgnoredMembers, Limits, iter_archive
from ingest.archive.tarstream import BLOCK, TarReader
from ingest.errors import InputDataError
from ingest.layouts.rules import PatchFolderRule

TOP = "BigEarthNet-v1.0"
RULE = PatchFolderRule(TOP, depth=0)
LIMIT = 1 << 20  # the default header limit (Limits.header_bytes)


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return bytearray(info.tobuf(tarfile.GNU_FORMAT))


def with_size_field(block: bytearray, field: bytes) -> bytes:
    """``block`` with its 12-byte size field replaced and its checksum made right again."""
    block[124:136] = field
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def end() -> bytes:
    return bytes(2 * BLOCK)


def band(name: str, data: bytes = b"x" * 100) -> bytes:
    return bytes(header(name, len(data))) + padded(data)


def read_all(archive: bytes, **limits: Any) -> list[str]:
    """Every item iter_archive yields, read from an in-memory plain tar."""
    out = []
    for obj in iter_archive(
        io.BytesIO(archive), RULE, culprit="a.tar", ignored=IgnoredMembers(),
        limits=Limits(**limits),
    ):  # fmt: skip
        out.append(type(obj).__name__)
    return out


def peak_of(action: Callable[[], object]) -> tuple[BaseException | None, int]:
    """(the exception ``action`` raised, peak bytes allocated meanwhile), via tracemalloc."""
    tracemalloc.start()
    caught: BaseException | None = None
    try:
        action()
    except BaseException as exc:
        caught = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return caught, peak


# --- finding 4: negative and huge sizes ----------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        b"-0000000001\x00",  # int("-0000000001", 8) is -1
        b"+0000000001\x00",
        b"0000_000001\x00",
        b"0000000009\x00\x00",
        b"\xff" + b"\xff" * 11,  # a negative base-256 number
        b"\x80" + (2**80).to_bytes(11, "big"),  # base-256 beyond anything a read can take
    ],
)
def test_a_negative_or_absurd_size_is_a_corrupt_header(field: bytes) -> None:
    archive = with_size_field(header(f"{TOP}/p/p_B01.tif"), field) + b"y" * 4096 + end()
    with pytest.raises(InputDataError, match=r"^a\.tar: archive is truncated or corrupt: invalid "
                       r"size field"):  # fmt: skip
        read_all(archive)


def test_a_negative_size_never_reads_the_rest_of_the_stream_into_memory() -> None:
    """Before: size -1 passed the member limit and ``read(-1)`` took the whole rest (2 GiB from a
    4.4 MB .tar.gz); now the header is refused before any data is read."""
    rest = bytes(32 << 20)
    archive = with_size_field(header(f"{TOP}/p/p_B01.tif"), b"-0000000001\x00") + rest + end()
    stream = io.BytesIO(archive)
    caught, peak = peak_of(lambda: read_all_stream(stream))
    assert isinstance(caught, InputDataError), caught
    assert peak < 1 << 20


def read_all_stream(stream: io.BytesIO) -> None:
    for _ in iter_archive(stream, RULE, culprit="a.tar", ignored=IgnoredMembers()):
        pass


def test_an_ignored_member_of_negative_size_is_an_input_error() -> None:
    """Before: an ignored member of size -600 raised an uncaught ValueError while skipped."""
    ignored = with_size_field(header("elsewhere/x.txt"), b"-0000001130\x00")  # -600
    archive = ignored + bytes(1024) + band(f"{TOP}/p/p_B01.tif") + end()
    with pytest.raises(InputDataError, match="invalid size field"):
        read_all(archive)


def test_a_base256_size_of_2_to_the_80_is_an_input_error_when_read_or_skipped() -> None:
    """Before: OverflowError."""
    for name in (f"{TOP}/p/p_B01.tif", "elsewhere/x.txt"):
        field = b"\x80" + (2**80).to_bytes(11, "big")
        archive = with_size_field(header(name), field) + bytes(4096) + end()
        with pytest.raises(InputDataError, match="invalid size field"):
            read_all(archive)


def test_a_large_base256_size_that_fits_is_still_read_as_tarfile_does() -> None:
    """The strict reading keeps the valid base-256 sizes (GNU tar writes them from 8 GiB)."""
    data = b"abc" * 1000
    archive = with_size_field(header("c/x"), b"\x80" + len(data).to_bytes(11, "big"))
    archive += padded(data) + end()
    reader = TarReader(io.BytesIO(archive), "a.tar")
    assert [(m.size, reader.read(m)) for m in reader] == [(len(data), data)]


# --- finding 4: extended headers outside every limit ------------------------------------------


def long_name_archive(length: int) -> bytes:
    name = (f"{TOP}/p/" + "n" * length).encode()
    long_header = header("././@LongLink", len(name) + 1, tarfile.GNUTYPE_LONGNAME)
    return bytes(long_header) + padded(name + b"\x00") + band(f"{TOP}/p/p_B01.tif") + end()


def test_a_huge_gnu_long_name_is_refused_with_bounded_memory() -> None:
    """Before: a 600 MiB long name (2.7 MB gzipped) cost 1.2 GiB; here 64 MiB gzipped, read
    through the gzip thread as an ingest reads it, with the peak allocation measured."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    gz = compressor.compress(long_name_archive(64 << 20)) + compressor.flush()

    def run() -> None:
        for _ in iter_archive(io.BytesIO(gz), RULE, culprit="a.tar.gz", ignored=IgnoredMembers()):
            pass

    caught, peak = peak_of(run)
    assert isinstance(caught, InputDataError), caught
    assert str(caught).startswith("a.tar.gz: archive is corrupt: an extended header of ")
    assert "exceeds the limit of 1,048,576" in str(caught)
    assert peak < 24 << 20  # the gzip reader's buffers; the 64 MiB name is never held


def test_long_names_within_the_limit_are_read() -> None:
    names = [m.name for m in TarReader(io.BytesIO(long_name_archive(5000)), "a.tar")]
    assert names == [f"{TOP}/p/" + "n" * 5000]  # the long name is the next member's name


def pax(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = len(record) + 1
        while len(str(length)) + len(record) != length:
            length += 1
        body += str(length).encode() + record
    return bytes(header("././@PaxHeader", len(body), kind)) + padded(body)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_a_pax_header_beyond_the_limit_is_refused(kind: bytes) -> None:
    archive = pax({"comment": "c" * (LIMIT + 10)}, kind) + band(f"{TOP}/p/p_B01.tif")
    with pytest.raises(InputDataError, match=r"an extended header of .* exceeds the limit"):
        read_all(archive + end())


def test_extended_headers_count_together_for_one_member_and_globals_stay() -> None:
    """Many headers, each below the limit, cannot add up to more than it: neither the ones before
    one member nor the global ones over the whole archive."""
    piece = {"comment": "c" * (LIMIT // 3)}
    name = (f"{TOP}/p/" + "n" * (LIMIT * 2 // 3)).encode()
    long_name = bytes(header("././@LongLink", len(name) + 1, tarfile.GNUTYPE_LONGNAME))
    before_one = pax(piece) + long_name + padded(name + b"\x00") + band(f"{TOP}/p/p_B01.tif")
    with pytest.raises(InputDataError, match="exceeds the limit"):
        read_all(before_one + end())
    twice = pax(piece) + pax(piece) + band(f"{TOP}/p/p_B01.tif")  # readers disagree on these
    with pytest.raises(InputDataError, match="two extended headers of one kind for one member"):
        read_all(twice + end())
    spread = b"".join(pax(piece, tarfile.XGLTYPE) + band(f"{TOP}/p{i}/p{i}_B01.tif")
                      for i in range(4))  # fmt: skip
    with pytest.raises(InputDataError, match="exceeds the limit"):
        read_all(spread + end())
    fine = b"".join(pax(piece) + band(f"{TOP}/p{i}/p{i}_B01.tif") for i in range(6))
    assert read_all(fine + end()) == ["ArchiveItem"] * 6


def test_the_header_limit_is_the_layout_limit() -> None:
    archive = long_name_archive(3000)
    with pytest.raises(InputDataError, match="exceeds the limit of 2,000"):
        read_all(archive, header_bytes=2000)


def test_pax_size_of_thousands_of_digits_is_an_input_error() -> None:
    """int() refuses more than 4300 digits with a ValueError: refused before that."""
    archive = pax({"size": "9" * 5000}) + band(f"{TOP}/p/p_B01.tif") + end()
    with pytest.raises(InputDataError, match="invalid pax size"):
        read_all(archive)


# --- finding 6: a plain tar cut at a member boundary -----------------------------------------


def test_a_tar_cut_at_a_member_boundary_is_truncated() -> None:
    """Before: read as complete (exit 0, complete=True, source_read_to_end=True)."""
    whole = band(f"{TOP}/p1/p1_B01.tif") + band(f"{TOP}/p2/p2_B01.tif")
    assert read_all(whole + end()) == ["ArchiveItem"] * 2
    with pytest.raises(
        InputDataError, match=r"^a\.tar: archive is truncated: no end-of-archive marker"
    ):
        read_all(whole)
    assert read_all(whole + bytes(BLOCK)) == ["ArchiveItem"] * 2  # one zero block, as GNU tar


def test_tarfile_archives_still_end_cleanly() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(f"{TOP}/p/p_B01.tif")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert read_all(out.getvalue()) == ["ArchiveItem"]
