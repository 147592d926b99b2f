"""Where a shard's bytes come from: byte ranges of shard objects, batched, for every reader.

- :class:`LocalFiles`: ``os.pread`` / ``os.preadv`` on kept-open file descriptors (a cache of
  :data:`MAX_OPEN` files nobody is using, least recently used closed first, plus every file in
  use; a reader holds a file with :meth:`LocalFiles.acquire` until :meth:`LocalFiles.release`);
- :class:`RemoteFiles`: fsspec ``cat_ranges``, every range of one call fetched concurrently
  (s3fs, gcsfs …);
- :class:`StoreFiles`: a zarr ``Store`` (what ``open_store`` reads through, so that any zarr
  store works), the ranges of one call fetched concurrently on zarr's event loop.

All three answer the same two questions, :meth:`Files.tails` (the last bytes of each shard
object and, where it costs nothing, the object's size: for the index) and :meth:`Files.fetch`
(byte ranges: for the chunks), with None for an object that does not exist, and all three refuse
a range that comes back short (a shard shorter than its index says) with a
:class:`~ingest.errors.StoreError` naming the shard. Ranges reach them only once the shard index
rule (:mod:`ingest.read.shards`) has bounded them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import suppress

from fsspec.core import url_to_fs
from zarr.abc.store import ByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ..errors import StoreError
from ..store.location import StoreLocation

__all__ = ["MAX_HELD", "MAX_OPEN", "Files", "LocalFiles", "RemoteFiles", "StoreFiles"]

#: Local shard files kept open per process while nobody uses them.
MAX_OPEN = 64
#: Files one window of an epoch holds open at most (more and its other shards' files are
#: acquired chunk by chunk): far from the usual limit of 1,024 open files per process.
MAX_HELD = 256

#: Bytes read from a shard object.
Data = bytes | memoryview
#: ``(data, size)``: an object's last bytes and its whole size (None when not known).
Tail = tuple[Data, int | None]


def short(where: str) -> StoreError:
    return StoreError(f"{where}: shard is shorter than its index says (truncated shard)")


class Files:
    """Batched byte-range reads of the shard objects under one root (see the module docstring).
    ``requests`` counts the store requests made."""

    requests: int = 0

    def tails(self, keys: Sequence[str], size: int) -> list[Tail | None]:
        """The last ``size`` bytes of each object (fewer when it is smaller), and its size."""
        raise NotImplementedError

    def fetch(self, ranges: Sequence[tuple[str, int, int]]) -> list[Data | None]:
        """Bytes ``[start, stop)`` of each ``(key, start, stop)``; None when the object does not
        exist, :class:`StoreError` when it ends before ``stop``."""
        raise NotImplementedError

    def where(self, key: str) -> str:
        """The shard's name in messages."""
        raise NotImplementedError

    def count(self, requests: int) -> None:
        self.requests += requests

    def close(self) -> None:
        pass


class LocalFiles(Files):
    """``os.pread`` on kept-open file descriptors (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()
        # a dataset dropped without close() must not keep its files open until the process ends
        weakref.finalize(self, _close_all, self._fds)

    def where(self, key: str) -> str:
        return f"{self._root}/{key}"

    @property
    def open_files(self) -> int:
        return len(self._fds)

    @property
    def in_use(self) -> int:
        """Files acquired and not released yet."""
        return len(self._users)

    def count(self, requests: int) -> None:
        with self._lock:
            self.requests += requests

    def acquire(self, key: str) -> int | None:
        """The open file of ``key``, kept open until :meth:`release` (None: no such file)."""
        with self._lock:
            fd = self._fds.get(key)
            if fd is None:
                try:
                    fd = os.open(os.path.join(self._root, key), os.O_RDONLY)
                except FileNotFoundError:
                    return None
                except OSError as exc:
                    raise StoreError(f"{self.where(key)}: cannot open ({exc.strerror})") from None
                self._fds[key] = fd
            else:
                self._fds.move_to_end(key)
            self._users[key] = self._users.get(key, 0) + 1  # in use before anything is closed
            self._trim()
            return fd

    def release(self, key: str) -> None:
        with self._lock:
            users = self._users.get(key, 0) - 1
            if users > 0:
                self._users[key] = users
            else:
                self._users.pop(key, None)
                self._trim()

    def _trim(self) -> None:
        """Close the least recently used files nobody uses beyond :data:`MAX_OPEN` (the caller
        holds the lock); files in use stay open however many they are."""
        if len(self._fds) <= MAX_OPEN:
            return
        for old in list(self._fds):
            if len(self._fds) <= MAX_OPEN:
                break
            if old not in self._users:
                os.close(self._fds.pop(old))

    def read(self, fd: int, key: str, view: memoryview, start: int) -> None:
        """Read ``len(view)`` bytes from ``start`` of an acquired file into ``view``."""
        if os.preadv(fd, [view], start) != len(view):
            raise short(self.where(key))
        self.count(1)

    def advise(self, ranges: Sequence[tuple[str, int, int]]) -> dict[str, int]:
        """Acquire the file of each key of ``ranges`` (the first :data:`MAX_HELD` keys) and ask
        the kernel to read the ranges ahead (no-op for cached pages); the held files by key.
        On any error nothing stays acquired."""
        fds: dict[str, int] = {}
        try:
            for key, start, stop in ranges:
                fd = fds.get(key)
                held = fd is not None or len(fds) < MAX_HELD
                if fd is None:
                    fd = self.acquire(key)
                    if fd is None:
                        raise StoreError(f"{self.where(key)}: shard vanished while reading")
                    if held:
                        fds[key] = fd
                try:
                    if hasattr(os, "posix_fadvise"):
                        os.posix_fadvise(fd, start, stop - start, os.POSIX_FADV_WILLNEED)
                except OSError as exc:
                    raise StoreError(f"{self.where(key)}: {exc.strerror}") from None
                finally:
                    if not held:
                        self.release(key)
        except BaseException:
            for key in fds:
                self.release(key)
            raise
        return fds

    def tails(self, keys: Sequence[str], size: int) -> list[Tail | None]:
        out: list[Tail | None] = []
        for key in keys:
            fd = self.acquire(key)
            if fd is None:
                out.append(None)
                continue
            try:
                total = os.fstat(fd).st_size
                start = max(0, total - size)
                data = os.pread(fd, total - start, start)
            finally:
                self.release(key)
            if len(data) != total - start:
                raise short(self.where(key))
            self.count(1)
            out.append((data, total))
        return out

    def fetch(self, ranges: Sequence[tuple[str, int, int]]) -> list[Data | None]:
        out: list[Data | None] = []
        for key, start, stop in ranges:
            fd = self.acquire(key)
            if fd is None:
                out.append(None)
                continue
            try:
                data = os.pread(fd, stop - start, start)
            finally:
                self.release(key)
            if len(data) != stop - start:
                raise short(self.where(key))
            self.count(1)
            out.append(data)
        return out

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._users.clear()


def _close_all(fds: OrderedDict[str, int]) -> None:
    for fd in fds.values():
        with suppress(OSError):
            os.close(fd)
    fds.clear()


class RemoteFiles(Files):
    """fsspec ``cat_ranges``: every range of one call fetched concurrently."""

    def __init__(self, location: StoreLocation) -> None:
        self._fs, root = url_to_fs(location.url, **location.storage_options)
        self._root = str(root).rstrip("/")
        self._location = location

    def where(self, key: str) -> str:
        return f"{self._location}/{key}"

    def tails(self, keys: Sequence[str], size: int) -> list[Tail | None]:
        return [
            None if d is None else (d, None) for d in self._cat([(k, -size, None) for k in keys])
        ]

    def fetch(self, ranges: Sequence[tuple[str, int, int]]) -> list[Data | None]:
        out = self._cat(ranges)
        for (key, start, stop), data in zip(ranges, out, strict=True):
            if data is not None and len(data) != stop - start:
                raise short(self.where(key))
        return out

    def _cat(self, ranges: Sequence[tuple[str, int, int | None]]) -> list[Data | None]:
        if not ranges:
            return []
        self.requests += len(ranges)
        paths = [f"{self._root}/{key}" for key, _, _ in ranges]
        starts = [start for _, start, _ in ranges]
        stops = [stop for _, _, stop in ranges]
        results = self._fs.cat_ranges(paths, starts, stops, on_error="return")
        out: list[Data | None] = []
        for (key, _, _), result in zip(ranges, results, strict=True):
            if isinstance(result, FileNotFoundError):
                out.append(None)
            elif isinstance(result, BaseException):
                raise StoreError(f"{self.where(key)}: {result}") from result
            else:
                out.append(bytes(result))
        return out


class StoreFiles(Files):
    """A zarr ``Store``: the requests of one call fetched concurrently on zarr's event loop
    (:meth:`get` and :meth:`fetch` from any thread, :meth:`aget` and :meth:`afetch` in a
    coroutine already on that loop, so that a reader's index and chunk reads make one trip)."""

    def __init__(self, store: Store, where: str = "") -> None:
        self._store = store
        self._where = where

    def where(self, key: str) -> str:
        return f"{self._where}/{key}" if self._where else key

    def tails(self, keys: Sequence[str], size: int) -> list[Tail | None]:
        found = self.get([(k, SuffixByteRequest(size)) for k in keys])
        return [None if d is None else (d, None) for d in found]

    def fetch(self, ranges: Sequence[tuple[str, int, int]]) -> list[Data | None]:
        out: list[Data | None] = sync(self.afetch(ranges))
        return out

    def get(self, requests: Sequence[tuple[str, ByteRequest | None]]) -> list[Data | None]:
        """Each object (``None``: whole) or part of it; None when the object does not exist."""
        out: list[Data | None] = sync(self.aget(requests))
        return out

    async def afetch(self, ranges: Sequence[tuple[str, int, int]]) -> list[Data | None]:
        out = await self.aget([(k, RangeByteRequest(a, b)) for k, a, b in ranges])
        for (key, start, stop), data in zip(ranges, out, strict=True):
            if data is not None and len(data) != stop - start:
                raise short(self.where(key))
        return out

    async def aget(self, requests: Sequence[tuple[str, ByteRequest | None]]) -> list[Data | None]:
        if not requests:
            return []
        self.requests += len(requests)
        prototype = default_buffer_prototype()
        try:
            if len(requests) == 1:  # no task to schedule (the common one-sample read)
                found = [await self._store.get(requests[0][0], prototype, requests[0][1])]
            else:
                gets = (self._store.get(k, prototype, r) for k, r in requests)
                found = list(await asyncio.gather(*gets))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.where(requests[0][0])}: {exc}") from None
        return [None if b is None else b.as_numpy_array().data for b in found]
