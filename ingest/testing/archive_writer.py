"""Stream tar.gz collection archives the way the MLHub archive generator wrote them.

The real archives (see ``mlhub-recorded/real_archive_ref_african_crops_kenya_02_labels/``) are GNU
tars (magic ``"ustar  \\0"``) of directory and file entries owned by root/root with modes 0755/0644,
gzip-compressed with a header that has no flags and no file name. :class:`ArchiveWriter` reproduces
that, deterministically: every member gets the same fixed mtime, the gzip header a fixed MTIME, so
the same members give the same bytes.

Everything is streamed: tarfile's ``"w|"`` mode feeds a small gzip sink that compresses with isal
(igzip, ≈ 10× faster than zlib at equal level) and writes to the file as it goes, so an archive of
any size is built in constant memory. :func:`rewrite_archive` streams an existing archive through a
caller's edit function: the seam the bad-input tests use to corrupt, drop or add members.
"""

from __future__ import annotations

import copy
import io
import struct
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Literal, Protocol

import zstandard
from isal import igzip, isal_zlib

__all__ = [
    "ARCHIVE_MTIME",
    "ArchiveWriter",
    "Compression",
    "Member",
    "dir_member",
    "file_member",
    "isal_level",
    "iter_members",
    "rewrite_archive",
    "symlink_member",
]

#: Modification time of every member and of the gzip header (2021-02-01T23:12:11Z, a member mtime
#: of the recorded real archive): fixed so that building twice gives identical bytes.
ARCHIVE_MTIME: Final = 1612221131

#: How :class:`ArchiveWriter` compresses the tar: gzip through isal as MLHub's archives, one zstd
#: frame as the reBEN v2 archives (``zstd -6``: checksum on, no content size), or not at all.
Compression = Literal["gzip", "zstd", "none"]

#: A tar member as the writer takes it: the header, and the content of a regular file (else None).
Member = tuple[tarfile.TarInfo, bytes | None]

_GZIP_OS_UNIX: Final = 3  # the recorded real archive says OS 3; isal's own header would say 255
_CHUNK: Final = 1 << 20  # compress in 1 MiB pieces: fewer isal calls than tarfile's 10 KiB records


def isal_level(compresslevel: int) -> int:
    """Map a gzip level (0–9, as ``gzip -N``) onto isal's 0–3 scale.

    isal has only four levels; the mapping keeps the landmarks: 0 → 0 (fastest), gzip's default 6
    → isal's default 2, gzip's best 9 → isal's best 3.
    """
    if not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be between 0 and 9, got {compresslevel}")
    return (0, 1, 1, 1, 2, 2, 2, 3, 3, 3)[compresslevel]


class _GzipSink(io.RawIOBase):
    """A write-only file object that gzips what it is given into ``out``.

    The header is written by hand (FLG 0, fixed MTIME, OS 3) around a raw deflate stream, so the
    output matches the real archives' header and does not depend on the clock.
    """

    def __init__(self, out: BinaryIO, level: int) -> None:
        super().__init__()
        self._out = out
        self._deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0
        self._pending = bytearray()
        # ID1 ID2 CM=deflate FLG=0 MTIME XFL=0 OS
        out.write(struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, ARCHIVE_MTIME, 0, _GZIP_OS_UNIX))

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._pending += data
        if len(self._pending) >= _CHUNK:
            self._compress()
        return len(data)

    def _compress(self) -> None:
        chunk = bytes(self._pending)
        self._pending.clear()
        self._crc = isal_zlib.crc32(chunk, self._crc)
        self._size += len(chunk)
        self._out.write(self._deflate.compress(chunk))

    def finish(self) -> None:
        """Flush the deflate stream and write the trailer (CRC-32 and size mod 2**32)."""
        self._compress()
        self._out.write(self._deflate.flush())
        self._out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))


class _Sink(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def finish(self) -> None: ...


class _ZstdSink(io.RawIOBase):
    """A write-only file object that compresses into ``out`` as one zstd frame."""

    def __init__(self, out: BinaryIO, level: int) -> None:
        super().__init__()
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._writer = compressor.stream_writer(out, closefd=False)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._writer.write(data)
        return len(data)

    def finish(self) -> None:
        self._writer.close()  # type: ignore[no-untyped-call]  # ends the frame, keeps ``out``


class _PlainSink(io.RawIOBase):
    """The tar as it is."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return self._out.write(data)

    def finish(self) -> None:
        pass


def _info(name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def dir_member(name: str) -> Member:
    """A directory entry as the real archives have them (0755, root/root)."""
    return _info(name, tarfile.DIRTYPE, mode=0o755), None


def file_member(name: str, data: bytes) -> Member:
    """A regular file entry as the real archives have them (0644, root/root)."""
    return _info(name, tarfile.REGTYPE, size=len(data)), data


def symlink_member(name: str, target: str) -> Member:
    """A symbolic link entry (never in a real archive: for tests of hostile input)."""
    info = _info(name, tarfile.SYMTYPE, mode=0o777)
    info.linkname = target
    return info, None


def _forget_members(tar: tarfile.TarFile) -> None:
    """Empty the list in which TarFile remembers every member read or written, even in stream
    mode: without this, memory grows by ≈ 1 KB per member (≈ 300 MB for 20,000 patches)."""
    vars(tar)["members"].clear()  # an undocumented attribute, absent from the type stubs


class ArchiveWriter:
    """Write a GNU tar.gz member by member, streaming to ``path`` in constant memory.

    Use as a context manager; the archive is complete (tar end blocks, gzip trailer) on exit.
    ``compression="zstd"`` writes one zstd frame instead, at zstd level ``compresslevel`` (1–22;
    the default 6 is the reBEN archives' level); ``"none"`` a plain tar.
    """

    def __init__(
        self, path: Path, *, compresslevel: int = 6, compression: Compression = "gzip"
    ) -> None:
        if compression == "gzip":
            level = isal_level(compresslevel)  # validate before creating the file
        elif compression == "zstd" and not 1 <= compresslevel <= 22:
            raise ValueError(f"zstd level must be between 1 and 22, got {compresslevel}")
        elif compression not in ("zstd", "none"):
            raise ValueError(f"compression must be gzip, zstd or none, got {compression!r}")
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._sink: _Sink
        if compression == "gzip":
            self._sink = _GzipSink(self._file, level)
        elif compression == "zstd":
            self._sink = _ZstdSink(self._file, compresslevel)
        else:
            self._sink = _PlainSink(self._file)
        self._tar = tarfile.open(  # noqa: SIM115 - closed in close()
            fileobj=self._sink, mode="w|", format=tarfile.GNU_FORMAT
        )
        self._closed = False

    def add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        """Append one member; ``data`` is the content of a regular file (its size wins)."""
        if data is not None:
            info = copy.copy(info)
            info.size = len(data)
            self._tar.addfile(info, io.BytesIO(data))
        else:
            self._tar.addfile(info)
        _forget_members(self._tar)

    def add_dir(self, name: str) -> None:
        self.add(*dir_member(name))

    def add_file(self, name: str, data: bytes) -> None:
        self.add(*file_member(name, data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._tar.close()
            self._sink.finish()
        finally:
            self._file.close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def iter_members(path: Path) -> Iterable[Member]:
    """Stream the members of a tar.gz with their content (None for non-files), in archive order."""
    # isal's igzip decompresses ≈ 2× faster than the standard library's gzip (it has no types).
    raw = igzip.open(path, "rb")  # type: ignore[no-untyped-call]
    with raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for info in tar:
            _forget_members(tar)
            data = None
            if info.isfile():
                extracted = tar.extractfile(info)
                assert extracted is not None  # a regular file always has content
                data = extracted.read()
            yield info, data


def rewrite_archive(
    src: Path,
    dst: Path,
    edit: Callable[[tarfile.TarInfo, bytes | None], Iterable[Member]],
    *,
    append: Iterable[Member] = (),
    compresslevel: int = 6,
) -> Path:
    """Copy the tar.gz ``src`` to ``dst`` member by member through ``edit``, in constant memory.

    ``edit(info, data)`` returns the members to write in place of that one: ``[]`` drops it,
    ``[(info, other_bytes)]`` replaces its content, two entries duplicate it or insert another
    member next to it (see :func:`file_member`, :func:`dir_member`, :func:`symlink_member`).
    ``append`` members go at the end. Returns ``dst``.
    """
    if Path(src).resolve() == Path(dst).resolve():
        raise ValueError("rewrite_archive cannot write over its source")
    with ArchiveWriter(dst, compresslevel=compresslevel) as out:
        for info, data in iter_members(src):
            for new_info, new_data in edit(info, data):
                out.add(new_info, new_data)
        for new_info, new_data in append:
            out.add(new_info, new_data)
    return dst
