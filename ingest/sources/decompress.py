"""Decompression: an archive's raw bytes → the tar stream inside, whatever wraps it.

The first bytes decide, never the file name (a ``.tar.gz`` named ``.tar``, an HTML error page or
a zstd archive behind a URL without extension are all recognised):

- gzip (``1f 8b``): ISA-L's ``igzip_threaded`` (measured 1.9x the stdlib here), in a thread of its
  own that releases the GIL, so decompression and the raw reads under it (network, hashing)
  overlap the tar parsing and decoding of the calling thread;
- zstd (``28 b5 2f fd``): Python's own zstd module (``compression.zstd``, PEP 784; its backport
  ``backports.zstd`` before Python 3.14), also in a thread of its own (see :class:`ZstdStream`);
  reBEN's archives are one zstd frame, but several frames (``pzstd``) and skippable frames are
  read as the format allows. Its decompressor takes a bound on the bytes one call returns, which
  ``zstandard``'s has not: 32 KB of zstd make 1 GiB of zeros, in one ``bytes`` (measured);
- a plain tar (``ustar`` at byte 257).

Anything else is an :class:`~ingest.errors.InputDataError` naming the archive and quoting its
first bytes.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
import zlib
from typing import IO, Any, Final, Protocol

from isal import igzip_threaded

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

from ..errors import InputDataError

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: Skippable zstd frames start with 0x184D2A50..0x184D2A5F (little-endian on disk).
_SKIPPABLE_LOW: Final = 0x184D2A50
TAR_MAGIC_OFFSET: Final = 257  # "ustar" sits at byte 257 of the first tar header
_CHUNK: Final = 1 << 20
#: Compressed bytes read and decompressed at a time, in pieces of ~1.5 MiB out. Each piece is a
#: few hand-overs between this thread and the reader (the queue's lock, the GIL back after every
#: read, hash and decompress): with 64 KiB pieces the reader waited on them, 1 MiB took 0.5 s
#: off an S2-only run of 10,000 reBEN patches (11.0 -> 10.5 s, 3 rounds alternating). Pieces this
#: large come from malloc's heap, reused, only in a process that keeps freed memory
#: (:func:`ingest.processes.keep_freed_memory`, which the run sets): otherwise each is mapped
#: and unmapped again, a page fault per 4 KiB (measured 359,000 for the 1.2 GB S2 archive).
_INPUT: Final = 1 << 20
#: The most bytes one decompression call returns: what a piece of hostile input (a frame of
#: zeros, ~32,000 to 1) can make the thread hold at once; the queue holds at most ``_QUEUE``.
_OUTPUT: Final = 2 << 20
#: Decompressed pieces waiting for the reader: bounds the memory of a fast decompressor (<= 32 MiB).
_QUEUE: Final = 16
_ENDS_EARLY: Final = "archive is truncated or corrupt: zstd frame ends early"


class Readable(Protocol):
    """Anything with ``read(n)``: a file, an HTTP body, a counting wrapper."""

    def read(self, n: int = -1, /) -> bytes: ...


def open_decompressed(raw: Readable, culprit: str) -> IO[bytes]:
    """The tar stream inside ``raw`` (gzip, zstd or plain), for strictly sequential reading.

    Close it when done: that stops the decompression thread. Reading it to its end checks the
    compressed format's own integrity (gzip CRC-32 and length, zstd content checksum).
    """
    buffered = io.BufferedReader(_RawAdapter(raw), buffer_size=1 << 16)
    head = buffered.peek(TAR_MAGIC_OFFSET + 8)[: TAR_MAGIC_OFFSET + 8]
    if head[:2] == GZIP_MAGIC:
        return igzip_threaded.open(buffered, "rb", threads=1)  # type: ignore[no-any-return,no-untyped-call]
    if head[:4] == ZSTD_MAGIC or _is_skippable(head):  # pzstd starts with a skippable frame
        return io.BufferedReader(ZstdStream(buffered, culprit), buffer_size=_CHUNK)
    if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar":
        return buffered
    raise InputDataError(
        culprit, f"not a tar, tar.gz or tar.zst archive (starts with {head[:16]!r})"
    )


def corrupt(culprit: str, exc: BaseException) -> InputDataError:
    """The error of a stream that cannot be decompressed or parsed to its end."""
    text = str(exc).strip() or type(exc).__name__
    return InputDataError(culprit, f"archive is truncated or corrupt: {text.splitlines()[0]}")


#: What decompression libraries raise on damaged input.
DECOMPRESSION_ERRORS: Final = (OSError, EOFError, zlib.error, zstd.ZstdError)


class _RawAdapter(io.RawIOBase):
    """Lets any object with ``read`` feed an ``io.BufferedReader`` (for ``peek``)."""

    def __init__(self, source: Readable) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


class ZstdStream(io.RawIOBase):
    """A zstd stream decompressed in a background thread, read as a file.

    Why not ``zstandard``'s ``stream_reader``: measured here, it returns a truncated stream's
    bytes and then a clean end of file, without error. The decompressor used says whether the
    frame ended (``eof``), so a stream cut short is an error here. The thread pulls 1 MiB of
    compressed input at a time and queues the output in pieces of at most :data:`_OUTPUT` bytes
    (at most :data:`_QUEUE` pieces): the decompressor releases the GIL while it works, so this
    overlaps the tar parsing like ``igzip_threaded`` does.
    """

    def __init__(self, raw: IO[bytes], culprit: str) -> None:
        self._raw = raw
        self._culprit = culprit
        self._pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE)
        self._stop = threading.Event()
        self._piece = memoryview(b"")
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name="zstd", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._piece:
            if self._ended:
                return 0
            item = self._pieces.get()
            if item is None:
                self._ended = True
                return 0
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            self._piece = memoryview(item)
        n = min(len(buffer), len(self._piece))
        buffer[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._pieces.get(timeout=0.05)
        super().close()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._pieces.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for piece in _decompress_frames(self._raw, self._culprit):
                if not self._put(piece):
                    return
            self._put(None)
        except InputDataError as error:
            self._put(error)
        except DECOMPRESSION_ERRORS as exc:
            self._put(corrupt(self._culprit, exc))
        except BaseException as exc:  # pragma: no cover - handed to the reader, never lost
            self._put(exc)


def _decompress_frames(raw: IO[bytes], culprit: str) -> Any:
    """Yield the decompressed bytes of every frame of ``raw``, at most :data:`_OUTPUT` at a time;
    a frame cut short is an error."""
    pending = b""
    while True:
        chunk = pending or raw.read(_INPUT)
        pending = b""
        if not chunk:
            return
        if _is_skippable(chunk):
            pending = _skip_frame(raw, chunk, culprit)
            continue
        frame = zstd.ZstdDecompressor()
        while True:
            out = frame.decompress(chunk, _OUTPUT)
            chunk = b""
            if out:
                yield out
            if frame.eof:
                pending = frame.unused_data
                break
            if frame.needs_input:
                chunk = raw.read(_INPUT)
                if not chunk:
                    raise InputDataError(culprit, _ENDS_EARLY)


def _is_skippable(data: bytes) -> bool:
    return len(data) >= 4 and int.from_bytes(data[:4], "little") & ~0xF == _SKIPPABLE_LOW


def _skip_frame(raw: IO[bytes], data: bytes, culprit: str) -> bytes:
    """Pass over one skippable frame starting ``data``; the bytes after it."""
    while len(data) < 8:
        more = raw.read(_INPUT)
        if not more:
            raise InputDataError(culprit, _ENDS_EARLY)
        data += more
    size = 8 + int.from_bytes(data[4:8], "little")
    while len(data) < size:
        more = raw.read(min(_INPUT, size - len(data)))
        if not more:
            raise InputDataError(culprit, _ENDS_EARLY)
        data += more
    return data[size:]
