"""One writer per store: the lock a run holds from before its first write to its end.

Two processes writing one store corrupt it (shards and journal entries of both, an ``--overwrite``
deleting the store under a running ingest), so :func:`hold` refuses a second writer with a
:class:`StoreLocked` error naming the holder (exit 5). Readers never look at the lock.

The lock sits *beside* the store (``STORE.lock``), not in it: an ``--overwrite`` swaps a whole new
store in at the end, and zarr creates a store only where nothing is.

- **Local store**: an OS lock (``flock``) on ``STORE.lock``, which also records the holder (host,
  pid, start time). The kernel drops the lock when its process dies however it dies, so a lock
  file left by a killed run is simply taken over, with a note naming the run that left it. The
  file is removed at the end of the run (removed while still locked; a waiting process checks that
  the file it locked is still the one at the path).
- **Object storage** (``s3://``, ``gs://``): a lease object ``STORE.lock`` holding the holder and
  the time it was last renewed, rewritten every ``ttl / 3`` seconds while the run goes on. A lease
  not renewed for ``ttl`` seconds (or whose holder, on this host, is no longer running) is stale
  and taken over with a note. Object stores have no lock primitive here: a new holder writes its
  lease, waits ``settle`` seconds and reads it back, so two runs starting within the same moment
  see each other and only the last writer goes on. The clocks of the writers' hosts must agree to
  within a fraction of ``ttl``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs

from ..errors import StoreError
from .location import StoreLocation

try:  # Linux, macOS, the BSDs
    import fcntl
except ImportError:  # pragma: no cover - Windows: no local lock
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"
#: Seconds a lease on object storage stays valid without renewal.
LEASE_TTL = 60.0
#: Seconds between writing a lease and reading it back.
LEASE_SETTLE = 1.0

Note = Callable[[str], None]


class StoreLocked(StoreError):
    """Another run is writing the store."""


@dataclass(frozen=True)
class Holder:
    """Who holds a store's lock."""

    host: str
    pid: int
    started: str
    token: str
    renewed: float = 0.0
    """Seconds since the epoch of the last renewal (leases only)."""

    @classmethod
    def me(cls) -> Holder:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started, uuid.uuid4().hex, time.time())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}"

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes) -> Holder | None:
        try:
            fields: Any = json.loads(data)
            return cls(
                str(fields["host"]),
                int(fields["pid"]),
                str(fields["started"]),
                str(fields["token"]),
                float(fields.get("renewed", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def running_here(self) -> bool | None:
        """Whether the holder's process runs (None: it is not on this host, nobody can tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True


def lock_path(location: StoreLocation) -> StoreLocation:
    """Where the lock of the store at ``location`` lives: beside it."""
    return StoreLocation(location.url.rstrip("/") + LOCK_SUFFIX, location.storage_options)


def _refusal(location: StoreLocation, holder: Holder | None) -> StoreLocked:
    who = holder.describe() if holder is not None else "another process"
    return StoreLocked(
        f"{location} is being written by another run ({who}): one writer per store; wait for it "
        f"to end or stop it (its lock: {lock_path(location)})"
    )


@contextmanager
def hold(
    location: StoreLocation,
    *,
    note: Note,
    ttl: float | None = None,
    settle: float | None = None,
) -> Iterator[Lock]:
    """Hold the lock of the store at ``location`` for the ``with`` block; a
    :class:`StoreLocked` error when another live run holds it. Call the lock's ``check`` before
    the last write: a lease lost meanwhile (a renewal that could not reach the object store for
    ``ttl`` seconds, and another run took over) is an error."""
    lock: _FileLock | _Lease
    if location.is_local:
        lock = _FileLock(Path(location.zarr_url.rstrip("/") + LOCK_SUFFIX), location)
    else:
        lock = _Lease(location, ttl=ttl or LEASE_TTL,
                      settle=LEASE_SETTLE if settle is None else settle)  # fmt: skip
    try:
        lock.acquire(note)
    except OSError as exc:  # a folder that cannot be made, a bucket that does not exist, ...
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StoreError(
            f"{lock_path(location)}: cannot take the store's lock: {' '.join(reason.split())}"
        ) from None
    try:
        yield lock
    finally:
        lock.release()


class Lock:
    """A held lock."""

    holder: Holder

    def check(self) -> None:
        """Raise :class:`StoreLocked` if the lock was lost to another run."""


class _FileLock(Lock):
    def __init__(self, path: Path, location: StoreLocation) -> None:
        self.path = path
        self.location = location
        self.fd: int | None = None

    def acquire(self, note: Note) -> Holder:
        if fcntl is None:  # pragma: no cover - no flock on this platform
            return Holder.me()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Holder.loads(_read_fd(fd))
                os.close(fd)
                raise _refusal(self.location, holder) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file as we waited: lock the new one
                os.close(fd)
                continue
            break
        previous = Holder.loads(_read_fd(fd))
        if previous is not None:
            note(
                f"note: {self.location}: taking over the lock of a run that is no longer running "
                f"({previous.describe()})"
            )
        me = Holder.me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.dumps(), 0)
        self.fd = fd
        self.holder = me
        return me

    def check(self) -> None:
        return None

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with suppress(OSError):
            self.path.unlink()
        os.close(fd)


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 4096, 0)


class _Lease(Lock):
    def __init__(self, location: StoreLocation, *, ttl: float, settle: float) -> None:
        self.location = location
        self.ttl = ttl
        self.settle = settle
        fs, root = url_to_fs(location.url, **location.fs_options)
        self.fs = fs
        self.key = root.rstrip("/") + LOCK_SUFFIX
        self.me = self.holder = Holder.me()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None

    def read(self) -> Holder | None:
        try:
            data: bytes = self.fs.cat_file(self.key)
        except FileNotFoundError:
            return None
        return Holder.loads(data)

    def stale(self, holder: Holder) -> bool:
        running = holder.running_here()
        if running is not None:
            return not running
        return time.time() - holder.renewed > self.ttl

    def acquire(self, note: Note) -> Holder:
        current = self.read()
        if current is not None:
            if not self.stale(current):
                raise _refusal(self.location, current)
            note(
                f"note: {self.location}: taking over the stale lease of {current.describe()} "
                f"(not renewed for {time.time() - current.renewed:.0f} s)"
            )
        self.write()
        time.sleep(self.settle)
        winner = self.read()
        if winner is None or winner.token != self.me.token:
            raise _refusal(self.location, winner)
        self._thread = threading.Thread(target=self._renew, name="store-lease", daemon=True)
        self._thread.start()
        return self.me

    def check(self) -> None:
        if self.lost is not None:
            raise StoreLocked(f"{self.location}: lost the lock while writing: {self.lost}")

    def write(self) -> None:
        self.me = Holder(**{**asdict(self.me), "renewed": time.time()})
        self.fs.pipe_file(self.key, self.me.dumps())

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                current = self.read()
                if current is not None and current.token != self.me.token:
                    self.lost = f"the lease was taken by {current.describe()}"
                    return
                self.write()
            except Exception:  # a failed renewal is retried at the next tick
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            current = self.read()
            if current is not None and current.token == self.me.token:
                self.fs.rm_file(self.key)
        except Exception:  # an unremoved lease just expires
            pass
