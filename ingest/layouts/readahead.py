"""A feed read ahead: the S2 archive streams while the run still reads its metadata.

A run's start-up (the official metadata and label index, the store created, the partner processes
spawned) took 1.3 s of a 12 s S2-only run of 10,000 patches, and 3.8 s with S1 and the maps, with
one core idle (issue 21). A thread of its own opens and walks the S2 archive meanwhile
(decompression, tar headers, members grouped into items), holding at most :data:`BUDGET` bytes of
members, and hands the items over, in order, once the run is ready for them. An error of the feed
(opening it included) reaches the consumer where the feed's own iteration would have raised it:
after the labels' errors, as in a run without read-ahead.

Why a thread and not a process: the items are consumed in this process (decoded straight into the
writers' shared buffers), and the walk's heavy parts (zstd, the checksums) release the GIL.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Final

from ..archive.members import ArchiveItem
from .feeds import Feed, FeedObject, Meter

#: Member bytes held ahead at most (about 1,600 reBEN S2 patches: 0.8 s of a two-core run).
BUDGET: Final = 256 << 20
#: What a value without members (a collection document, a bad item) counts against the budget.
_SMALL: Final = 4096


def _size(obj: FeedObject) -> int:
    if isinstance(obj, ArchiveItem):
        return _SMALL + sum(len(data) for data in obj.files.values())
    return _SMALL


class ReadAhead:
    """The feed ``opening`` opened and read by a thread from now on.

    Use it as the feed it wraps (:attr:`meter`, :meth:`items` once, :meth:`records`), and
    :meth:`close` it in any case: that stops the thread and closes the feed.
    """

    def __init__(self, opening: AbstractContextManager[Feed], budget: int = BUDGET) -> None:
        self._opening = opening
        self._feed: Feed | None = None
        self._source: Iterator[FeedObject] | None = None
        self._budget = budget
        self._held = 0
        self._queue: deque[tuple[FeedObject | None, BaseException | None, int]] = deque()
        self._changed = threading.Condition()
        self._opened = False  # the feed is open, or failed to open (``_failure``)
        self._failure: BaseException | None = None
        self._stop = False
        self._closed = False
        self._thread = threading.Thread(target=self._walk, name="read-ahead", daemon=True)
        self._thread.start()

    @property
    def meter(self) -> Meter:
        return self._open_feed().meter

    def records(self) -> list[dict[str, Any]]:
        return self._open_feed().records()

    def items(self) -> Iterator[FeedObject]:
        """The feed's items, in order, as its own :meth:`Feed.items` would yield them."""
        while True:
            with self._changed:
                while not self._queue:
                    self._changed.wait()
                obj, error, size = self._queue.popleft()
                self._held -= size
                self._changed.notify_all()
            if error is not None:
                raise error
            if obj is None:
                return
            yield obj

    def close(self) -> None:
        """Stop the thread (it finishes the item it is reading), then close the feed."""
        if self._closed:
            return
        self._closed = True
        with self._changed:
            self._stop = True
            self._queue.clear()
            self._changed.notify_all()
        self._thread.join()
        if self._feed is None:
            return
        try:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        finally:
            self._opening.__exit__(None, None, None)

    def _open_feed(self) -> Feed:
        """The open feed; the error that kept it from opening, raised here."""
        with self._changed:
            while not self._opened:
                self._changed.wait()
            if self._feed is None:
                assert self._failure is not None
                raise self._failure
            return self._feed

    def _walk(self) -> None:
        try:
            feed = self._opening.__enter__()
            self._source = feed.items()
            with self._changed:
                self._feed, self._opened = feed, True
                self._changed.notify_all()
            for obj in self._source:
                if not self._put(obj, None, _size(obj)):
                    return
            self._put(None, None, 0)
        except BaseException as error:  # handed over in order, never lost
            with self._changed:
                if not self._opened:
                    self._failure, self._opened = error, True
                    self._changed.notify_all()
            self._put(None, error, 0)

    def _put(self, obj: FeedObject | None, error: BaseException | None, size: int) -> bool:
        """Queue one value, waiting while the budget is spent; False once closed."""
        with self._changed:
            # one value always fits: an item larger than the budget is read (the archive layer
            # bounds an item), it just waits for the queue to be empty.
            while not self._stop and self._queue and self._held + size > self._budget:
                self._changed.wait()
            if self._stop:
                return False
            self._queue.append((obj, error, size))
            self._held += size
            self._changed.notify_all()
            return True
