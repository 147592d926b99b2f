"""Fault injection for the MLHub emulator: the ways the real service and its blob store failed.

Users of the real archives hit connection resets in the middle of multi-gigabyte bodies
(radiant-mlhub #69), throttling and outages, servers that ignore ``Range``, slow links and bodies
shorter than their ``Content-Length``. :class:`Faults` describes which of these the emulator
plays; :class:`FaultState` counts them across the server's threads; :class:`FaultyBody` wraps a
blob body so it trickles, resets the TCP connection or simply stops early.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

try:  # Linux and most Unixes; without it the reset waits a short fixed time instead.
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - Windows or exotic platforms
    _TIOCOUTQ = None

__all__ = ["FaultState", "Faults", "FaultyBody", "reset_connection"]

# Trickled bodies go out in pieces of about 1/20 s each, so the rate is smooth yet cheap.
_TRICKLE_SLICES_PER_SECOND = 20
# How long a reset waits for the peer to acknowledge the bytes already sent (see reset_connection).
_DRAIN_TIMEOUT = 5.0
# The extra bytes a ``wrong_length`` response claims in its Content-Length.
WRONG_LENGTH_EXTRA = 1024


@dataclass(frozen=True)
class Faults:
    """Which faults the emulator injects. The default injects none."""

    reset_after: int | None = None
    """Blob GET: reset the TCP connection (RST) after sending this many body bytes."""
    reset_times: int = 1
    """How many blob GETs get reset; -1 resets every one."""
    reset_at: tuple[int, ...] = ()
    """Blob GETs number 1, 2, ... are reset after ``reset_at[0]``, ``reset_at[1]``, ... body bytes
    (resets at chosen, e.g. random, offsets; overrides ``reset_after``)."""
    unavailable: int = 0
    """The first K requests (any route) answer ``status`` with a ``Retry-After`` header."""
    status: int = 503
    """503 or 429, for ``unavailable``."""
    retry_after: int = 1
    """Seconds, sent in the ``Retry-After`` header."""
    ignore_range: bool = False
    """Blob GET answers 200 with the full body even to a ranged request."""
    trickle: float | None = None
    """Blob bodies are sent at about this many bytes per second."""
    wrong_length: bool = False
    """Blob GET: ``Content-Length`` claims more bytes than are sent."""

    def __post_init__(self) -> None:
        if self.status not in (429, 503):
            raise ValueError(f"status must be 429 or 503, got {self.status}")
        if self.reset_after is not None and self.reset_after < 0:
            raise ValueError(f"reset_after must be >= 0, got {self.reset_after}")
        if any(n < 0 for n in self.reset_at):
            raise ValueError(f"reset_at offsets must be >= 0, got {self.reset_at}")
        if self.reset_times < -1:
            raise ValueError(f"reset_times must be >= -1, got {self.reset_times}")
        if self.unavailable < 0 or self.retry_after < 0:
            raise ValueError("unavailable and retry_after must be >= 0")
        if self.trickle is not None and self.trickle <= 0:
            raise ValueError(f"trickle must be a positive rate in bytes/s, got {self.trickle}")


class FaultState:
    """The active :class:`Faults` and how many of the counted ones were already played.

    Shared by every request thread, hence the lock; replacing the faults restarts the counts.
    """

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._requests_seen = 0
        self._resets_done = 0

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._requests_seen = 0
            self._resets_done = 0

    def claim_unavailable(self) -> Faults | None:
        """Count one request; return the faults if this request must be refused."""
        with self._lock:
            self._requests_seen += 1
            return self._faults if self._requests_seen <= self._faults.unavailable else None

    def claim_reset(self, body_length: int) -> int | None:
        """Return after how many bytes to reset this blob body, or None to send it whole.

        A reset is only spent on bodies long enough to be cut, so ``reset_times=1`` always
        breaks exactly one transfer whatever the sizes of the ranges the client asks for.
        """
        with self._lock:
            if self._faults.reset_at:
                if self._resets_done >= len(self._faults.reset_at):
                    return None
                offset = self._faults.reset_at[self._resets_done]
                if body_length <= offset:
                    return None
                self._resets_done += 1
                return offset
            limit = self._faults.reset_after
            if limit is None or body_length <= limit:
                return None
            if self._faults.reset_times != -1 and self._resets_done >= self._faults.reset_times:
                return None
            self._resets_done += 1
            return limit


class FaultyBody:
    """A WSGI body that trickles its chunks and may reset the connection after ``reset_after``.

    A class rather than a generator: WSGI servers call ``close()`` even when iteration never
    started, and the wrapped file must be closed then too.
    """

    def __init__(
        self,
        inner: Iterable[bytes],
        *,
        sock: socket.socket | None,
        reset_after: int | None = None,
        trickle: float | None = None,
    ) -> None:
        self._inner = inner
        self._sock = sock
        self._reset_after = reset_after
        self._trickle = trickle

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._inner:
            for piece in self._pieces(chunk):
                if self._reset_after is not None and sent + len(piece) >= self._reset_after:
                    yield piece[: self._reset_after - sent]
                    # The server has written and flushed that last piece when it asks for more.
                    self._reset()
                sent += len(piece)
                if self._trickle is not None:
                    time.sleep(len(piece) / self._trickle)
                yield piece
        if self._reset_after is not None:  # pragma: no cover - claim_reset ensures a long body
            self._reset()

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()

    def _pieces(self, chunk: bytes) -> Iterator[bytes]:
        if self._trickle is None:
            yield chunk
            return
        step = max(1, int(self._trickle / _TRICKLE_SLICES_PER_SECOND))
        for start in range(0, len(chunk), step):
            yield chunk[start : start + step]

    def _reset(self) -> None:
        if self._sock is None:  # pragma: no cover - werkzeug always provides the socket
            raise ConnectionAbortedError("no socket to reset")
        reset_connection(self._sock)
        # A ConnectionError is what werkzeug treats as "client went away": no log, no traceback.
        raise ConnectionResetError("connection reset by fault injection")


def reset_connection(sock: socket.socket) -> None:
    """Abort a TCP connection with a real RST, leaving ``sock`` usable as a dead object.

    SO_LINGER with a zero timeout makes the final close send RST instead of FIN. Closing is the
    delicate part: ``sock.close()`` does nothing while the server's ``makefile()`` streams are
    open, and ``os.close(fd)`` would free the descriptor number for another thread's
    ``accept()`` while werkzeug still holds it. So the descriptor is atomically re-pointed at
    one end of a fresh socket pair: the kernel drops its last reference to the TCP socket (RST)
    and werkzeug's later select/shutdown/close land harmlessly on the pair.
    """
    _wait_until_acknowledged(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dead, peer = socket.socketpair()
    try:
        os.dup2(dead.fileno(), sock.fileno(), inheritable=False)
    finally:
        dead.close()
        peer.close()


def _wait_until_acknowledged(sock: socket.socket) -> None:
    """Wait until the peer has acknowledged every byte sent, or a few seconds have passed.

    An RST discards whatever still sits in the sender's queue; waiting first means the client
    receives exactly ``reset_after`` bytes before the reset, deterministically.
    """
    if _TIOCOUTQ is None:  # pragma: no cover - platform without the ioctl
        time.sleep(0.05)
        return
    deadline = time.monotonic() + _DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0" * 4))[0]
        except OSError:  # pragma: no cover - socket already gone
            return
        if queued == 0:
            return
        time.sleep(0.002)
