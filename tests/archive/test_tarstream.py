"""The tar stream reader, compared member for member with tarfile (the independent reader)."""

from __future__ import annotations

import io
import random
import re
import tarfile
import tracemalloc
from collections import Counter

import pytest

from ingest.archive import tarstream
from ingest.archive.tarstream import BLOCK, Member, TarReader
from ingest.errors import InputDataError
from ingest.testing.samples import SampleArchives

USTAR = tarfile.USTAR_FORMAT
FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def _random_archive(fmt: int, seed: int) -> bytes:
    """Files with long, deep and non-ASCII names, directories, links and empty files."""
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for i in range(60):
            depth = rng.randint(1, 6)
            parts = ["d" * rng.randint(1, 40) + str(k) for k in range(depth)]
            if fmt != tarfile.USTAR_FORMAT and rng.random() < 0.2:
                parts[-1] = "bänd_é" + "x" * rng.randint(0, 150)
            name = "/".join(parts) + f"/{i}.tif"
            if fmt == tarfile.USTAR_FORMAT and len(name) > 200:
                name = name[-90:].lstrip("/")
            info = tarfile.TarInfo(name)
            roll = rng.random()
            if roll < 0.1:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif roll < 0.15:
                info.type = tarfile.SYMTYPE
                info.linkname = "../" * 3 + "y" * rng.randint(1, 150 if fmt != USTAR else 80)
                tar.addfile(info)
            elif roll < 0.18:
                info.type = tarfile.LNKTYPE
                info.linkname = (name + ".other")[-90:]
                tar.addfile(info)
            else:
                data = rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randint(0, 40_000)]))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _with_tarfile(archive: bytes) -> list[tuple[str, int, bool, bytes | None]]:
    seen = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|") as tar:
        for info in tar:
            handle = tar.extractfile(info) if info.isfile() else None
            size = info.size if info.isfile() else 0
            seen.append((info.name, size, info.isfile(), handle.read() if handle else None))
    return seen


def _with_reader(archive: bytes, read_every: int = 1) -> list[tuple[str, int, bool, bytes | None]]:
    reader = TarReader(io.BufferedReader(io.BytesIO(archive)), "a.tar")
    seen = []
    for i, member in enumerate(reader):
        data = reader.read(member) if member.isfile and i % read_every == 0 else None
        size = member.size if member.isfile else 0
        seen.append((member.name, size, member.isfile, data))
    return seen


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_members_and_bytes_as_tarfile(fmt: str, seed: int) -> None:
    archive = _random_archive(FORMATS[fmt], seed)
    assert _with_reader(archive) == _with_tarfile(archive)


def test_unread_members_are_skipped() -> None:
    archive = _random_archive(tarfile.GNU_FORMAT, 7)
    expected = _with_tarfile(archive)
    got = _with_reader(archive, read_every=3)
    assert [row[:3] for row in got] == [row[:3] for row in expected]
    assert [g[3] for g in got[::3]] == [e[3] for e in expected[::3]]


def test_real_sample_archive_matches_tarfile(real_sample: SampleArchives) -> None:
    from isal import igzip

    archive = igzip.decompress(real_sample.source.read_bytes())
    rows = _with_reader(archive)
    assert rows == _with_tarfile(archive)
    assert sum(1 for row in rows if row[2]) == 1 + 6 * 13  # collection.json, stac.json + 12 bands


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return bytearray(info.tobuf(tarfile.GNU_FORMAT))


def _checksum(block: bytearray, value: int | None = None) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % (sum(block) if value is None else value)


def test_base256_size_and_signed_checksum() -> None:
    """A GNU base-256 size field, and a checksum summed over signed bytes (old Sun tar)."""
    data = b"abc" * 300
    block = _header("c/é.tif", len(data))
    block[124:136] = b"\x80" + len(data).to_bytes(11, "big")
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    _checksum(block, signed)
    archive = bytes(block) + data + bytes(-len(data) % BLOCK) + bytes(2 * BLOCK)
    reader = TarReader(io.BytesIO(archive), "a.tar")
    members = list(reader)
    assert members == [Member("c/é.tif", len(data), b"0")]
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|") as tar:
        assert [(i.name, i.size) for i in tar] == [("c/é.tif", len(data))]


def test_pax_size_overrides_the_header() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("c/x.tif")
        info.size = 5
        info.pax_headers = {"size": "5", "comment": "hi"}
        tar.addfile(info, io.BytesIO(b"hello"))
    reader = TarReader(io.BytesIO(out.getvalue()), "a.tar")
    (member,) = [(m, reader.read(m)) for m in reader]
    assert member == (Member("c/x.tif", 5, b"0"), b"hello")


def _kinds(archive: bytes) -> list[str]:
    return [m.kind for m in TarReader(io.BytesIO(archive), "a.tar")]


def test_special_members_are_named_and_their_data_skipped() -> None:
    blocks = [
        _header("c/s", 600, b"S"),  # a GNU sparse file: its data is skipped, never misread
        bytearray(1024),
        _header("c/dev", 0, tarfile.CHRTYPE),
        _header("c/odd", 3, b"Z"),  # an unknown type carries data, as tarfile assumes
        bytearray(b"xyz" + bytes(509)),
        _header("c/ok", 2),
        bytearray(b"ok" + bytes(510)),
    ]
    for block in blocks[::2]:
        _checksum(block)
    archive = b"".join(bytes(b) for b in blocks) + bytes(2 * BLOCK)
    assert _kinds(archive) == ["sparse file", "device", "special member", "regular file"]


def _damaged(edit: str) -> bytes:
    block = _header("c/a.tif", 1000)
    archive = bytearray(bytes(block) + b"x" * 1000 + bytes(24) + bytes(2 * BLOCK))
    if edit == "checksum":
        archive[10] ^= 1
    elif edit == "size":
        archive[124:136] = b"12x4567\x00\x00\x00\x00\x00"
        _checksum(block := archive[:BLOCK])  # type: ignore[arg-type]
        archive[:BLOCK] = block
    elif edit == "data":
        archive = archive[: BLOCK + 600]
    elif edit == "header":
        archive = archive[:300]
    return bytes(archive)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("checksum", "a.tar: archive is truncated or corrupt: bad checksum in a member header"),
        ("size", "a.tar: archive is truncated or corrupt: invalid size field b'12x4567"),
        ("data", "a.tar: archive is truncated inside c/a.tif"),
        ("header", "a.tar: archive is truncated inside a member header"),
    ],
)
def test_damage_is_an_input_error(edit: str, message: str) -> None:
    def read_everything() -> None:
        reader = TarReader(io.BytesIO(_damaged(edit)), "a.tar")
        for member in reader:
            reader.read(member)

    with pytest.raises(InputDataError) as caught:
        read_everything()
    assert str(caught.value).startswith(message)


def test_truncated_while_skipping_is_an_input_error() -> None:
    reader = TarReader(io.BytesIO(_damaged("data")), "a.tar")
    with pytest.raises(InputDataError, match=r"^a\.tar: archive is truncated inside c/a\.tif$"):
        list(reader)


def test_invalid_pax_header_is_an_input_error() -> None:
    records = b"99 path=c/a\n"
    block = _header("././@PaxHeader", len(records), b"x")
    _checksum(block)
    archive = bytes(block) + records + bytes(-len(records) % BLOCK) + bytes(2 * BLOCK)
    with pytest.raises(
        InputDataError, match=r"a\.tar: archive is truncated or corrupt: invalid pax"
    ):
        list(TarReader(io.BytesIO(archive), "a.tar"))


def test_read_only_the_current_member_once() -> None:
    archive = _random_archive(tarfile.GNU_FORMAT, 4)
    reader = TarReader(io.BytesIO(archive), "a.tar")
    members = iter(reader)
    first = next(m for m in members if m.isfile and m.size)
    reader.read(first)
    with pytest.raises(ValueError, match="not the current unread member"):
        reader.read(first)
    second = next(m for m in members if m.isfile)
    with pytest.raises(ValueError, match="not the current unread member"):
        reader.read(first)
    assert reader.read(second) is not None


def test_memory_is_flat_over_many_members() -> None:
    """tarfile keeps every member it read, even in stream mode; this reader keeps none."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(20_000):
            info = tarfile.TarInfo(f"c/item_{i}/B{i % 12:02d}.tif")
            info.size = 10
            tar.addfile(info, io.BytesIO(b"0123456789"))
    stream = io.BytesIO(out.getvalue())
    tracemalloc.start()
    try:
        reader = TarReader(stream, "a.tar")
        count = sum(1 for m in reader if reader.read(m))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 100_000


@pytest.mark.parametrize("size", ["-5", "²", "5x", ""])
def test_an_invalid_pax_size_is_an_input_error(size: str) -> None:
    record = f" size={size}\n".encode()
    length = len(record) + 1
    while len(str(length)) + len(record) != length:
        length += 1
    records = str(length).encode() + record
    block = _header("././@PaxHeader", len(records), b"x")
    _checksum(block)
    member = _header("c/a.tif", 0)
    _checksum(member)
    archive = bytes(block) + records + bytes(-len(records) % BLOCK) + bytes(member) + bytes(1024)
    with pytest.raises(InputDataError, match=r"a\.tar: .*invalid pax size"):
        list(TarReader(io.BytesIO(archive), "a.tar"))


def test_damaged_headers_never_raise_anything_else(real_sample: SampleArchives) -> None:
    """Random bytes changed in the headers of the real archive: every outcome is either a clean
    reading or an InputDataError naming the archive, never another exception."""
    from isal import igzip

    archive = igzip.decompress(real_sample.source.read_bytes())
    headers = [m.start() for m in re.finditer(rb"ustar", archive)]
    rng = random.Random(11)
    outcomes: Counter[str] = Counter()
    for _ in range(300):
        damaged = bytearray(archive)
        start = rng.choice(headers) - 257
        for _ in range(rng.randint(1, 4)):
            damaged[start + rng.randrange(BLOCK)] = rng.randrange(256)
        if rng.random() < 0.5:  # and keep the checksum right, so the fields themselves are read
            block = damaged[start : start + BLOCK]
            _checksum(block)
            damaged[start : start + BLOCK] = block
        reader = TarReader(io.BytesIO(bytes(damaged)), "a.tar")
        try:
            for member in reader:
                if member.isfile and member.size < 1 << 24:
                    reader.read(member)
            outcomes["read"] += 1
        except InputDataError as exc:
            named = str(exc).startswith("a.tar: archive is truncated")
            outcomes["refused" if named else str(exc)] += 1
    assert set(outcomes) == {"read", "refused"}
    assert min(outcomes.values()) > 50


def test_byte_sum_is_sum_for_every_kind_of_block() -> None:
    rng = random.Random(0)
    blocks = [bytes(BLOCK), b"\xff" * BLOCK, bytes(range(256)) * 2]
    blocks += [rng.randbytes(BLOCK) for _ in range(20_000)]
    blocks += [bytes(rng.choice((0, 1, 254, 255)) for _ in range(BLOCK)) for _ in range(500)]
    blocks += [b"\xff" * n + bytes(BLOCK - n) for n in range(BLOCK + 1)]
    for block in blocks:
        assert tarstream._byte_sum(block) == sum(block)
