"""Resumable HTTP bodies: read a large archive over an unreliable network as one byte stream.

A connection reset or stall mid-body is repaired by asking for the rest with ``Range: bytes=N-``
(``If-Range`` with the ETag, so a changed file is never spliced onto the old one) and checking the
``Content-Range`` of the answer; the reader above (gzip, tar) never notices. 429/503 answers wait
for their ``Retry-After``. A server that ignores ``Range`` (200 instead of 206) is detected: the
bytes already delivered are skipped in the new body. A body shorter than its ``Content-Length`` is
an error, as is running out of retries.

A server may also ignore ``If-Range``: every resumed answer is therefore checked to come from the
same file (its ETag and Last-Modified, when the first answer had them, and its total length from
``Content-Range`` or ``Content-Length``), and a body never delivers more than that length. A
different file is :class:`FileChanged`: a stream cannot take back the bytes it delivered, so the
caller decides (a download starts over, see :mod:`ingest.catalog.fetch`; an ingest stops).

Why by hand: requests/urllib3 retry whole requests, not a body broken after N bytes, and
radiant-mlhub never resumed (radiant-mlhub #69).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from radiant_mlhub.exceptions import AuthenticationError

from ..errors import AuthError, NetworkError, NotFoundError

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_KEY_PARAM = re.compile(r"(key=)[^&\s'\"]+")
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


def redact(text: str) -> str:
    """Remove ``key=...`` query values from a message or URL."""
    return _KEY_PARAM.sub(r"\1REDACTED", text)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``attempts`` counts consecutive failures without progress."""

    attempts: int = 8
    max_resumes: int = 1000
    """Resumes of one body in all, progress or not (a server that always breaks gives up)."""
    backoff: float = 0.5
    """First wait in seconds, doubled after each failure."""
    max_wait: float = 60.0
    """Longest wait, also the cap on a server's Retry-After."""
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    """A body that delivers nothing for this long is treated as a broken connection."""

    def wait(self, failures: int, retry_after: str | None = None) -> float:
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_wait)
        return min(self.backoff * 2.0 ** max(failures - 1, 0), self.max_wait)


class FileChanged(NetworkError):
    """The file on the server is not the one the bytes read so far came from."""


class ResumableBody:
    """The body of ``GET url`` as a stream that survives broken connections."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        *,
        what: str,
        policy: RetryPolicy = RetryPolicy(),
        warn: Callable[[str], None] = lambda message: None,
        sleep: Callable[[float], Any] = time.sleep,
        start: int = 0,
        etag: str | None = None,
    ) -> None:
        """``start``: the first byte wanted (continuing a partial download); ``etag``: the
        version of the file those earlier bytes came from (a different one is
        :class:`FileChanged`)."""
        self._session, self._what, self._policy = session, what, policy
        self._warn, self._sleep = warn, sleep
        self.position = start
        self.resumes = 0
        self._failures = 0
        self.etag = etag
        self.last_modified: str | None = None
        self.length: int | None = None
        """The size of the whole file (not of the rest), when the server says it."""
        response = self._request(url, start=start)
        self.url = response.url
        """The final URL after redirects (resumes go there directly)."""
        self._response = self._accept(response)
        self.etag = etag or response.headers.get("ETag")
        self.last_modified = response.headers.get("Last-Modified")

    def read(self, n: int = -1, /) -> bytes:
        while True:
            try:
                # read1 returns what has arrived: read(n) would drop a partial read when the
                # connection breaks, and resets shorter than n would never make progress.
                data: bytes = self._response.raw.read1(None if n < 0 else n)
            except _TRANSPORT_ERRORS as exc:
                self._resume(_reason(exc))
                continue
            if data:
                self.position += len(data)
                self._failures = 0
                if self.length is not None and self.position > self.length:
                    raise FileChanged(
                        f"{self._what}: more bytes than the {self.length:,} of the file: it "
                        "changed on the server during the download"
                    )
                return data
            if self.length is not None and self.position < self.length:
                self._resume(f"connection closed at byte {self.position:,} of {self.length:,}")
                continue
            return b""

    def close(self) -> None:
        self._response.close()

    def _resume(self, reason: str) -> None:
        self._response.close()
        while True:
            self._failure(reason)
            self.resumes += 1
            self._warn(f"{self._what}: {reason}; resuming at byte {self.position:,}")
            try:
                self._response = self._accept(self._request(self.url, start=self.position))
            except _TRANSPORT_ERRORS as exc:  # broken again before reaching our position
                reason = _reason(exc)
                continue
            return

    def _accept(self, response: requests.Response) -> requests.Response:
        """Check that ``response`` continues at :attr:`position`; skip what a server that
        ignored Range sends again. Closes the response on any error."""
        try:
            if response.status_code == 206:
                self._check_range(response)
                self._check_same_file(response)
            elif self.position:
                self._check_same_file(response)
                self._check_length(response)
                self._warn(
                    f"{self._what}: the server ignored Range; skipping {self.position:,} bytes"
                )
                _skip(response, self.position, self._what)
            if self.length is None and response.status_code == 200:
                length = response.headers.get("Content-Length", "")
                self.length = int(length) if length.isdigit() else None
        except BaseException:
            response.close()
            raise
        return response

    def _failure(
        self, reason: str, retry_after: str | None = None, *, announce: bool = False
    ) -> None:
        """Count a failure: give up past the policy's bounds, else wait (saying so when
        ``announce``: a request that fails before any byte says nothing otherwise)."""
        self._failures += 1
        if self._failures > self._policy.attempts or self.resumes >= self._policy.max_resumes:
            tries = (
                f"{self._policy.attempts} retries"
                if self._failures > self._policy.attempts
                else (f"{self.resumes} resumes")
            )
            raise NetworkError(
                f"{self._what}: giving up after {tries} at byte {self.position:,}: {redact(reason)}"
            )
        wait = self._policy.wait(self._failures, retry_after)
        if announce:
            self._warn(
                f"{self._what}: {redact(reason)}; trying again in {wait:.0f} s "
                f"(attempt {self._failures} of {self._policy.attempts})"
            )
        self._sleep(wait)

    def _request(self, url: str, *, start: int) -> requests.Response:
        headers = {}
        if start:
            headers["Range"] = f"bytes={start}-"
            if self.etag:
                headers["If-Range"] = self.etag
        timeout = (self._policy.connect_timeout, self._policy.read_timeout)
        while True:
            try:
                response = self._session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=True,
                    timeout=timeout,
                    hooks={"response": _release_errors},
                )
                response.raise_for_status()
            except AuthenticationError:
                # radiant-mlhub puts the key itself into this message: never show it.
                raise AuthError(f"the MLHub API key was rejected (401) for {self._what}") from None
            except requests.HTTPError as exc:
                if exc.response is not None:
                    exc.response.close()
                status = exc.response.status_code if exc.response is not None else 0
                if status not in _RETRY_STATUS or exc.response is None:
                    raise http_error(status, exc.response, self._what, start) from None
                retry_after = exc.response.headers.get("Retry-After")
                self._failure(f"HTTP {status}", retry_after, announce=True)
                continue
            except _TRANSPORT_ERRORS as exc:
                host = unresolved_host(exc)
                if host is not None and not self.position and not self.resumes:
                    raise NetworkError(
                        f"{self._what}: cannot resolve the host name {host!r} (no network, or a "
                        "wrong URL)"
                    ) from None
                self._failure(_reason(exc), announce=True)
                continue
            response.raw.decode_content = False
            return response

    def _check_range(self, response: requests.Response) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != self.position:
            raise NetworkError(
                f"{self._what}: asked for bytes {self.position:,}- but got Content-Range "
                f"{response.headers.get('Content-Range')!r}"
            )
        total = None if match[3] == "*" else int(match[3])
        if self.length is None:
            self.length = total
        elif total is not None and total != self.length:
            raise FileChanged(
                f"{self._what}: the file is now {total:,} bytes, it was {self.length:,}"
            )

    def _check_same_file(self, response: requests.Response) -> None:
        """The answer's ETag and Last-Modified, where both it and the earlier answer have one,
        are the earlier ones (a server ignoring If-Range answers with another file's)."""
        for header, known in (("ETag", self.etag), ("Last-Modified", self.last_modified)):
            value = response.headers.get(header)
            if known and value and value != known:
                raise FileChanged(
                    f"{self._what}: the file changed on the server during the download "
                    f"({header} {value!r}, it was {known!r})"
                )

    def _check_length(self, response: requests.Response) -> None:
        """A full answer to a resume has the length of the file the earlier bytes came from."""
        length = response.headers.get("Content-Length", "")
        if self.length is not None and length.isdigit() and int(length) != self.length:
            raise FileChanged(
                f"{self._what}: the file is now {int(length):,} bytes, it was {self.length:,}"
            )


def _release_errors(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """Read error bodies at once: radiant-mlhub raises on 401 before the caller could close the
    streamed response, which would leak its connection."""
    if response.status_code >= 400:
        response.close()


def _skip(response: requests.Response, count: int, what: str) -> None:
    """Discard the first ``count`` bytes of a full body (a server that ignored Range)."""
    left = count
    while left:
        data = response.raw.read(min(left, 1 << 20))
        if not data:
            raise NetworkError(f"{what}: the full body ended before byte {count:,}")
        left -= len(data)


def http_error(
    status: int, response: requests.Response | None, what: str, start: int = 0
) -> NetworkError:
    """The error for a non-retryable HTTP status."""
    if status == 401:
        return AuthError(f"the MLHub API key was rejected (401) for {what}")
    if status == 404:
        return NotFoundError(f"{what} does not exist (it may still be generating)")
    if status == 416 and start:
        return NetworkError(
            f"{what}: no byte {start:,} on the server: the body was shorter than its Content-Length"
        )
    reason = response.reason if response is not None else ""
    return NetworkError(f"{what}: HTTP {status} {reason}".rstrip())


def unresolved_host(exc: BaseException) -> str | None:
    """The host name whose lookup failed, when that is what ``exc`` (or what it wraps) says."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, urllib3.exceptions.NameResolutionError):
            host = getattr(error.conn, "host", None)
            return str(host) if host else "?"
        stack += [a for a in error.args if isinstance(a, BaseException)]
        reason = getattr(error, "reason", None)
        stack += [e for e in (reason, error.__cause__, error.__context__) if e is not None]
    return None


def _reason(exc: BaseException) -> str:
    """A short cause (urllib3 wraps the OS error in "Connection broken: ...")."""
    inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
    cause = inner or exc.__cause__ or exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    host = unresolved_host(exc)
    if host is not None:
        return f"cannot resolve the host name {host!r}"
    text = redact(str(exc)).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 200 else line[:200].rsplit(" ", 1)[0] + " …"
