"""An archive read, checked and decompressed by a process of its own, its tar stream handed to the
run through a ring of shared memory.

Why a process (measured: 10,000 reBEN patches, 2 cores, warm): in the run's own process, the
thread that reads, hashes and decompresses the S2 archive needs the GIL back several times per MiB
from the thread that walks the tar and decodes the bands, which holds it; the two took 5.0-5.5 s.
With the reading in a process of its own: 3.8-4.2 s (``benchmarks/bench_reader.py``), of which
the run's thread is busy 2.2 s. A process can also read ahead while the run reads its labels (the
run starts it as soon as the layout is known), where a thread would take the GIL from them (a busy
thread made the label read 0.8 -> 2.2 s). A run uses it with 3 usable cores or more: on two it is
CPU-bound throughout, and the process costs CPU it has not
(:meth:`ingest.pipeline.state.RunState.reader`).

The ring (:class:`Ring`): ``slots`` slots of ``slot`` bytes in one block of shared memory, after
the meter (two int64: bytes of the raw input read so far, its size or -1 while unknown). The
process fills slot i mod ``slots`` once the run has freed it (a semaphore counts the free slots)
and tells the run how many bytes it holds; the run copies them out as the tar reader asks, then
frees the slot. Messages, in order: ``("data", n)``, ``("warn", text)``, then ``("end", records)``
(read to the end: md5 checked) or ``("stopped", records)`` (asked to stop early) or
``("error", *parts)``.
"""

from __future__ import annotations

import io
import mmap
import multiprocessing
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from multiprocessing.synchronize import Event, Semaphore
from typing import IO, Any, Final

from ..errors import IngestError
from ..processes import (
    SHARED_MEMORY,
    held_sigint,
    init_child,
    portable,
    rebuilt,
    shared_memory_free,
)
from .decompress import DECOMPRESSION_ERRORS, corrupt, open_decompressed
from .download import RetryPolicy
from .endpoint import Endpoint
from .inputs import InputSpec, Warn, open_input

_METER: Final = 16


@dataclass(frozen=True)
class Ring:
    """The ring's geometry."""

    slot: int = 2 << 20
    """Bytes per slot: a message per slot (~1,000 for the 1.9 GB of tar of 10,000 reBEN
    patches)."""
    slots: int = 16
    """Slots in the ring (32 MiB): what the process reads ahead of the run once it reads (64
    MiB measured no faster)."""
    ahead: int = 256 << 20
    """Bytes read beyond a full ring before the run starts reading (:class:`_Ahead`): while it
    reads its labels (~1 s for reBEN's 549,488 rows), a core that would wait decompresses
    ~40% of them."""

    @property
    def size(self) -> int:
        return _METER + self.slots * self.slot

    def start(self, number: int) -> int:
        """Where slot ``number`` (counted from the first) starts."""
        return _METER + (number % self.slots) * self.slot


@dataclass(frozen=True)
class ReadJob:
    """What the process needs (pickled to it)."""

    spec: InputSpec
    policy: RetryPolicy
    endpoint: Endpoint
    memory: str
    """The shared memory block's name."""
    ring: Ring


def room_for_ring(ring: Ring = Ring(), folder: str = SHARED_MEMORY) -> bool:
    """Whether shared memory has room for a ring and as much again for the rest of the run."""
    free = shared_memory_free(folder)
    return free is None or free >= 2 * ring.size


class ArchiveReader:
    """The run's side of one reader process: a meter (bytes read, size), the decompressed tar
    stream, and once that is read to its end (or :meth:`close`\\ d early), the ``sources``
    records of the input."""

    def __init__(self, spec: InputSpec, *, policy: RetryPolicy, endpoint: Endpoint, warn: Warn,
                 ring: Ring = Ring()) -> None:  # fmt: skip
        self.spec = spec
        self._warn = warn
        self._ring = ring
        self._memory = SharedMemory(create=True, size=ring.size)
        self._meter = _buffer(self._memory)[:_METER].cast("q")
        self._meter[0], self._meter[1] = 0, -1
        context = multiprocessing.get_context("spawn")  # as every process of a run (processes.py)
        self._free = context.Semaphore(ring.slots)
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        job = ReadJob(spec, policy, endpoint, self._memory.name, ring)
        self._process = context.Process(target=_main, args=(job, send, self._free, self._stop),
                                        name="read", daemon=True)  # fmt: skip
        try:
            with held_sigint():
                self._process.start()
        except BaseException:
            self._release()
            raise
        finally:
            send.close()
        self._slot = 0
        self._piece: memoryview | None = None
        self._records: list[dict[str, Any]] | None = None
        self._ended = False
        self._closed = False
        self._final = (0, -1)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def bytes_read(self) -> int:
        return self._final[0] if self._closed else int(self._meter[0])

    @property
    def size(self) -> int | None:
        size = self._final[1] if self._closed else int(self._meter[1])
        return None if size < 0 else size

    def stream(self) -> IO[bytes]:
        """The decompressed tar stream, for strictly sequential reading; closing it stops the
        process if it has not reached the end."""
        return io.BufferedReader(_Ring(self), buffer_size=1 << 20)

    def records(self) -> list[dict[str, Any]]:
        """The input's ``sources`` records (:meth:`~ingest.sources.inputs.InputStream.records`):
        of the whole input once the stream was read to its end, else of what was read."""
        if self._records is None:
            self.close()
        return self._records or []

    def readinto(self, buffer: memoryview) -> int:
        """Copy the next bytes of the tar stream into ``buffer``; 0 at its end."""
        while self._piece is None:
            if self._ended:
                return 0
            self._take(self._next())
        n = min(len(buffer), len(self._piece))
        buffer[:n] = self._piece[:n]
        if n == len(self._piece):
            self._piece.release()
            self._piece = None
            self._slot += 1
            self._free.release()
        else:
            self._piece = self._piece[n:]
        return n

    def close(self) -> None:
        """Stop the process (asking for the records of what it read, when it has not reached the
        end) and free the ring; a second call does nothing."""
        if self._closed:
            return
        try:
            if not self._ended:
                self._stop.set()
                self._free.release()  # wakes a process waiting for a free slot
                with suppress(IngestError):  # gone: its records are lost, nothing else
                    while not self._ended:
                        self._take(self._next(), stopping=True)
        finally:
            self._closed = True
            if self._process.is_alive():
                self._process.terminate()
            self._process.join()
            self._release()

    def _next(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self._receive.recv()
        except (EOFError, OSError):
            self._ended = True
            self._process.join(timeout=5)
            raise IngestError(f"{self.spec.name}: the process reading it ended (exit code "
                              f"{self._process.exitcode})") from None  # fmt: skip
        return message

    def _take(self, message: tuple[Any, ...], stopping: bool = False) -> None:
        kind = message[0]
        if kind == "data" and not stopping:
            start = self._ring.start(self._slot)
            self._piece = _buffer(self._memory)[start : start + message[1]]
        elif kind == "warn":
            self._warn(message[1])
        elif kind in ("end", "stopped"):
            self._records, self._ended = message[1], True
        elif kind == "error":
            self._ended = True
            if not stopping:
                raise rebuilt(message[1:], f"reading {self.spec.name}")

    def _release(self) -> None:
        self._final = (int(self._meter[0]), int(self._meter[1]))
        if self._piece is not None:
            self._piece.release()
            self._piece = None
        self._meter.release()
        self._receive.close()
        self._memory.close()
        with suppress(FileNotFoundError):
            self._memory.unlink()


def _buffer(memory: SharedMemory) -> memoryview:
    assert memory.buf is not None  # (None only once closed)
    return memory.buf


class _Ring(io.RawIOBase):
    """The tar stream of an :class:`ArchiveReader`, as a raw file for ``io.BufferedReader``."""

    def __init__(self, reader: ArchiveReader) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._reader.readinto(memoryview(buffer).cast("B"))

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def _main(job: ReadJob, connection: Connection, free: Semaphore, stop: Event) -> None:
    """The reader process: the input opened, read, hashed, decompressed into the ring."""
    init_child()  # the run stops it, and it ends with the run
    memory = SharedMemory(name=job.memory)  # (the resource tracker is the run's: see writers)
    meter = _buffer(memory)[:_METER].cast("q")
    try:
        kind, records = _read(job, connection, free, stop, memory, meter)
        connection.send((kind, records))
    except BaseException as error:  # every error goes to the run
        with suppress(OSError):  # unless the run is gone
            connection.send(("error", *portable(error)))
    finally:
        meter.release()
        memory.close()
        connection.close()


def _read(
    job: ReadJob,
    connection: Connection,
    free: Semaphore,
    stop: Event,
    memory: SharedMemory,
    meter: memoryview,
) -> tuple[str, list[dict[str, Any]]]:
    name = job.spec.name

    def warn(text: str) -> None:
        connection.send(("warn", text))

    with open_input(job.spec, policy=job.policy, warn=warn, endpoint=job.endpoint) as raw:
        stream = open_decompressed(raw, name)
        ring = job.ring
        ahead = _Ahead(ring)
        try:
            slot, ended = 0, False
            while not ended or ahead.pieces:
                got = free.acquire(block=ended or not ahead.wanted())
                if stop.is_set():
                    return "stopped", raw.records()
                if not got:  # the ring is full, the run not reading yet: read on, into memory
                    ended = not ahead.read(stream)
                    meter[0], meter[1] = raw.bytes_read, -1 if raw.size is None else raw.size
                    continue
                ahead.started = ahead.full
                start = ring.start(slot)
                with _buffer(memory)[start : start + ring.slot] as view:
                    n = ahead.take(view) if ahead.pieces else _fill(stream, view)
                meter[0], meter[1] = raw.bytes_read, -1 if raw.size is None else raw.size
                if not n:
                    break
                connection.send(("data", n))
                slot += 1
        except DECOMPRESSION_ERRORS as exc:
            raise corrupt(name, exc) from None
        finally:
            ahead.close()
            stream.close()
        raw.drain()  # to the last byte of the last part: the md5 is checked there
        meter[0] = raw.bytes_read
        return "end", raw.records()


def _fill(stream: IO[bytes], view: memoryview) -> int:
    n: int = stream.readinto(view)  # type: ignore[attr-defined]  # (every one of them has it)
    return n


class _Ahead:
    """What the process reads beyond a full ring before the run starts reading (while it reads
    its labels): at most ``ring.ahead`` bytes, in pieces of a slot mapped from the system and
    unmapped once copied into the ring, so that the process's memory shrinks back."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self.pieces: deque[tuple[mmap.mmap, int]] = deque()
        self.full = False
        """Whether the ring has been full."""
        self.started = False
        """Whether the run freed a slot of a full ring: it reads, and this reading ahead ends."""

    def wanted(self) -> bool:
        return not self.started and len(self.pieces) * self.ring.slot < self.ring.ahead

    def read(self, stream: IO[bytes]) -> bool:
        """Read one more piece; False at the end of the stream."""
        self.full = True
        piece = mmap.mmap(-1, self.ring.slot)
        n = _fill(stream, memoryview(piece))
        if not n:
            piece.close()
            return False
        self.pieces.append((piece, n))
        return True

    def take(self, view: memoryview) -> int:
        piece, n = self.pieces.popleft()
        with memoryview(piece) as data:
            view[:n] = data[:n]
        piece.close()
        return n

    def close(self) -> None:
        while self.pieces:
            self.pieces.popleft()[0].close()
