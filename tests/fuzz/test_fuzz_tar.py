"""Fuzzing the tar reader (:mod:`ingest.archive.tarstream`) against tarfile.

Seed archives in the three formats (GNU long names, pax records, ustar prefixes; files,
directories, links) are mutated where the reader looks: the size, checksum, type and name fields
of a header (the checksum mostly made right again, so the fields themselves are read), pax
records and long names, the data, the end-of-archive blocks, and truncation. Each case either
reads as tarfile reads it (names, sizes, kinds, bytes) or is an InputDataError naming the archive.
"""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from ingest.archive.tarstream import BLOCK, TarReader
from ingest.errors import InputDataError
from tests.fuzz.kit import (
    Outcomes,
    bounded,
    choose,
    describe,
    flip_bits,
    interesting_int,
    set_bytes,
    truncate_or_extend,
)

pytestmark = pytest.mark.usefixtures("traced")

READ_AT_MOST = 1 << 20  # members larger than this are skipped by both readers, never read
Row = tuple[str, int, bool, bytes | None]


def seed_archive(fmt: int, rng: random.Random) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for i in range(rng.randint(2, 6)):
            name = f"c/p{i}/" + ("n" * rng.choice((5, 120, 180)) if fmt != tarfile.USTAR_FORMAT
                                  else "n" * rng.choice((5, 90))) + f"_{i}.tif"  # fmt: skip
            info = tarfile.TarInfo(name)
            roll = rng.random()
            if roll < 0.1:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif roll < 0.2:
                info.type = tarfile.SYMTYPE
                info.linkname = "x" * rng.randint(1, 90)
                tar.addfile(info)
            else:
                data = rng.randbytes(rng.choice((0, 1, 511, 512, 513, 1500)))
                info.size = len(data)
                if fmt == tarfile.PAX_FORMAT and rng.random() < 0.5:
                    info.pax_headers = {"comment": "c" * rng.randint(1, 40), "size": str(len(data))}
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def headers(archive: bytes) -> list[int]:
    """Offsets of every header block (extended ones too), as tarfile finds them."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for info in tar.getmembers():
            at = info.offset
            while at < info.offset_data:
                found.append(at)
                block = archive[at : at + BLOCK]
                size = int(block[124:136].split(b"\0")[0].strip() or b"0", 8)
                kind = block[156:157]
                at += BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK if kind in b"xgLK" else BLOCK
    return found


def fix_checksum(data: bytearray, at: int) -> None:
    block = data[at : at + BLOCK]
    if len(block) < BLOCK:
        return
    block[148:156] = b" " * 8
    data[at + 148 : at + 156] = b"%06o\x00 " % sum(block)


def number_field(rng: random.Random, width: int, near: list[int]) -> bytes:
    value = interesting_int(rng, near)
    style = rng.random()
    if style < 0.15:
        return b"\x80" + (abs(value) % (1 << (8 * width - 8))).to_bytes(width - 1, "big")
    if style < 0.25:
        return b"\xff" * width
    if style < 0.35:
        huge = rng.choice((2**80, 2**63, 2**64 - 1)) % (1 << (8 * width - 8))
        return b"\x80" + huge.to_bytes(width - 1, "big")
    text = f"{value:o}" if value >= 0 else f"-{-value:o}"
    text = rng.choice(
        (text.zfill(width - 1), " " + text, text + "8", "+" + text, text[:3] + "_" + text[3:])
    )
    return text.encode()[: width - 1].ljust(width - 1, b"\0") + rng.choice((b"\0", b" "))


def parse_octal(field: bytes) -> int | None:
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits, 8) if digits.isdigit() else None
    except ValueError:
        return None


def mutate(archive: bytes, rng: random.Random) -> bytes:
    data = bytearray(archive)
    spots = headers(archive)
    for _ in range(rng.randint(1, 2)):
        at = rng.choice(spots)
        kind = choose(rng, [(3, "size"), (1, "checksum"), (1, "type"), (1, "name"),
                            (1, "magic"), (1.5, "extended"), (1, "data"), (1.5, "shape")])  # fmt: skip
        if kind == "size":
            data[at + 124 : at + 136] = number_field(rng, 12, [len(archive), len(archive) - at])
            if data[at + 156] in b"LK":
                # Known divergence, left out: tarfile reads a long name up to a NUL in the whole
                # block, past its declared size; writers pad with NULs, so pad as they do.
                size = parse_octal(bytes(data[at + 124 : at + 136]))
                if size is not None and size < BLOCK:
                    data[at + BLOCK + size : at + 2 * BLOCK] = bytes(BLOCK - size)
        elif kind == "checksum":
            data[at + 148 : at + 156] = number_field(rng, 8, [])
        elif kind == "type":
            data[at + 156] = ord(rng.choice("0\x00123456789xgLKSVDM"))
        elif kind == "name":
            set_bytes(data, rng, at, at + 100)
            if rng.random() < 0.3 and data[at + 257 : at + 265] == b"ustar\x0000":
                set_bytes(data, rng, at + 345, at + 500)  # the prefix, under the POSIX magic
        elif kind == "magic":
            # Known divergence, left out: tarfile prepends a non-empty prefix field whatever the
            # magic; this reader only under the POSIX magic (GNU headers keep atime/ctime there).
            posix = data[at + 345] != 0
            data[at + 257 : at + 265] = (
                b"ustar\x0000" if posix else rng.choice((b"ustar\x0000", b"ustar  \x00", bytes(8)))
            )
        elif kind == "extended":  # the data of a pax or long-name header, if this is one
            flip_bits(data, rng, at + BLOCK, at + BLOCK + 64)
        elif kind == "data":
            flip_bits(data, rng, at + BLOCK, len(data))
        if kind not in ("checksum", "data", "extended") and rng.random() < 0.9:
            fix_checksum(data, at)
        if kind == "shape":
            return truncate_or_extend(bytes(data), rng)
    return bytes(data)


def with_tarfile(archive: bytes) -> list[Row]:
    seen = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|") as tar:
        for info in tar:
            if info.type in (tarfile.GNUTYPE_SPARSE,) or info.sparse is not None:
                seen.append((info.name, -1, False, None))  # sparse: the name only
                continue
            read = info.isfile() and info.size <= READ_AT_MOST
            handle = tar.extractfile(info) if read else None
            size = info.size if info.isfile() else 0
            seen.append((info.name, size, info.isfile(), handle.read() if handle else None))
    return seen


def with_reader(archive: bytes) -> list[Row]:
    reader = TarReader(io.BytesIO(archive), "a.tar")
    seen = []
    for member in reader:
        if member.type == b"S" or member.sparse:
            seen.append((member.name, -1, False, None))
            continue
        read = member.isfile and member.size <= READ_AT_MOST
        data = reader.read(member) if read else None
        seen.append((member.name, member.size if member.isfile else 0, member.isfile, data))
    return seen


def test_fuzz_tar_reader(fuzz_cases: int, fuzz_rng: random.Random, outcomes: Outcomes) -> None:
    formats = (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT)
    seeds = [seed_archive(formats[i % 3], fuzz_rng) for i in range(12)]
    for case in range(fuzz_cases):
        archive = mutate(fuzz_rng.choice(seeds), fuzz_rng)
        what = f"case {case} ({len(archive)} bytes)"
        ours, error = bounded(lambda: with_reader(archive), what, outcomes)  # noqa: B023
        if error is not None:
            assert isinstance(error, InputDataError), f"{what}: {describe(error)}"
            assert str(error).startswith("a.tar: archive is "), f"{what}: {error}"
            outcomes.add("refused")
            continue
        try:
            expected = with_tarfile(archive)
        except (tarfile.TarError, EOFError, ValueError) as exc:
            raise AssertionError(
                f"{what}: read {ours!r:.300} but tarfile: {describe(exc)}"
            ) from exc
        assert ours == expected, f"{what}: differs from tarfile"
        outcomes.add("read")
    assert outcomes.counts["refused"] and outcomes.counts["read"]
