"""The processes a run spawns (shard writers, partner streams, archive readers): how each starts,
how Ctrl-C reaches them, how each ends with the run, and how their errors reach it.

Only the standard library and :mod:`ingest.errors`: every layer that starts a process uses this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Final

from . import errors
from .errors import IngestError, InputDataError

#: Held while a child does what it must finish even when the run is gone (a shard writer writing
#: a shard): a child whose run died exits only once it is released.
WORKING = threading.Lock()


@contextmanager
def held_sigint() -> Iterator[None]:
    """Hold Ctrl-C back meanwhile: the worker processes spawned here inherit the blocked signal,
    so a Ctrl-C that reaches the whole process group while they are still importing is not a
    traceback in each of them (:func:`init_child` then ignores it); and a Ctrl-C cannot cut
    the parent's hand-over to a starting worker short (which the worker would report as a
    traceback too). The reader gets its Ctrl-C when the block ends."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):  # pragma: no cover - Windows, or a library caller's thread (no Python handler to defer)
        yield
        return
    caught: list[tuple[int, FrameType | None]] = []
    handler = signal.signal(signal.SIGINT, lambda number, frame: caught.append((number, frame)))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
        if caught and callable(handler):
            handler(*caught[0])


def init_child() -> None:
    """What each process a run spawns (shard writers, partner streams, archive readers) does
    first.

    It leaves Ctrl-C to the run, which lets the shards in progress finish; it exits when the run
    dies without shutting it down (kill -9, the OOM killer), which would otherwise leave it
    waiting on its queue forever; its malloc keeps freed memory (:func:`keep_freed_memory`); and
    the collector leaves the objects it starts with (its modules) alone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also drops a Ctrl-C held back since spawn
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent,), name="exit-with-reader", daemon=True
        ).start()
    keep_freed_memory()
    gc.freeze()  # the modules just imported live as long as the process: never scanned again


#: glibc's ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def keep_freed_memory() -> None:
    """Let this process's malloc reuse the memory it frees rather than hand it back and fault it
    in again.

    blosc compresses every chunk with a fresh zstd context, whose workspace glibc took from the
    kernel and gave back on each call. Measured on 10,000 reBEN patches (S2 only, 2 cores), the
    run's page faults went from 380,000 to 127,000 and its system time from 4.3 to 3.7 s with
    mmap threshold 32 MiB and trim threshold 128 MiB (freed memory above that is returned as
    before). glibc only (``mallopt``); elsewhere this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)


def _exit_with(parent: BaseProcess) -> None:
    parent.join()  # returns when the parent's end of the spawn pipe closes: it is gone
    with WORKING:
        os._exit(1)


#: Where POSIX shared memory lives on Linux: a tmpfs, of 64 MiB in a container not given more.
SHARED_MEMORY: Final = "/dev/shm"


def shared_memory_free(folder: str = SHARED_MEMORY) -> int | None:
    """Bytes free for shared memory; None where there is no such file system to ask (not Linux).
    Writing past its end kills the writing process (SIGBUS), never an error it could report: a
    process that maps shared memory asks first."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def portable(error: BaseException) -> tuple[Any, ...]:
    """An error as plain values, to send to the run (the package's errors do not all pickle)."""
    if isinstance(error, InputDataError):
        return ("InputDataError", error.culprit, error.problem)
    if isinstance(error, IngestError) and getattr(errors, type(error).__name__, None) is type(
        error
    ):
        return (type(error).__name__, str(error))
    if isinstance(error, OSError):
        return ("OSError", error.errno, error.strerror or str(error), error.filename)
    return ("", f"{type(error).__name__}: {error}")


def rebuilt(parts: tuple[Any, ...], what: str) -> BaseException:
    """The error :func:`portable` made ``parts`` of; an error of no known kind says ``what``
    failed."""
    name = parts[0]
    if name == "InputDataError":
        return InputDataError(parts[1], parts[2])
    if name == "OSError":
        return OSError(parts[1], parts[2], parts[3]) if parts[3] else OSError(parts[1], parts[2])
    if name:
        cls = getattr(errors, name)
        assert issubclass(cls, IngestError)
        made: IngestError = cls(parts[1])
        return made
    return RuntimeError(f"{what} failed: {parts[1]}")
