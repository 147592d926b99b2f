"""Source bytes: where an archive's bytes come from — a local file, any http(s) URL, or the MLHub
archive endpoint (``archive/{collection}``, followed through its redirect to the blob).

Every source is read as one sequential byte stream, counted and hashed (sha256) as it passes, so
nothing is written to disk. The MLHub session is radiant-mlhub's own (``get_session``): it resolves
the API key from ``--api-key``, ``MLHUB_API_KEY``, ``--profile``/``MLHUB_PROFILE`` and the profiles
file, and the root URL from ``MLHUB_ROOT_URL``. The key never appears in messages or attributes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import requests
from radiant_mlhub.exceptions import APIKeyNotFound, AuthenticationError
from radiant_mlhub.session import Session, get_session

from .errors import AuthError, InputDataError, NetworkError, NotFoundError

CHUNK = 1 << 20
_KEY_PARAM = re.compile(r"(key=)[^&\s'\"]+")


@dataclass(frozen=True)
class Endpoint:
    """How to reach an MLHub-compatible API (None: resolved the way radiant-mlhub does)."""

    api_key: str | None = None
    profile: str | None = None

    def session(self) -> Session:
        try:
            return get_session(api_key=self.api_key, profile=self.profile)
        except APIKeyNotFound:
            raise AuthError(
                "no MLHub API key: pass --api-key, set MLHUB_API_KEY, or configure a profile "
                "in ~/.mlhub/profiles (MLHUB_HOME)"
            ) from None


class Readable(Protocol):
    """Anything with ``read(n)``: a file, an HTTP body, a counting wrapper."""

    def read(self, n: int = -1, /) -> bytes: ...


class CountingReader:
    """Passes bytes through, counting them and hashing them with sha256."""

    def __init__(self, inner: Readable, size: int | None) -> None:
        self._inner = inner
        self.size = size
        self.bytes_read = 0
        self._hash = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        self.bytes_read += len(data)
        self._hash.update(data)
        return data

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True)
class SourceInfo:
    """What the store records about one archive read (never the API key)."""

    collection: str
    location: str
    kind: str
    """"file", "url" or "endpoint"."""


def redact(text: str) -> str:
    """Remove ``key=...`` query values from a message or URL."""
    return _KEY_PARAM.sub(r"\1REDACTED", text)


def describe(spec: str | None, collection: str, root_url: str | None = None) -> SourceInfo:
    """Where the archive of ``collection`` comes from: ``spec`` (a path or URL) or the endpoint."""
    if spec is None:
        root = root_url or Session(api_key=None).root_url
        return SourceInfo(collection, redact(f"{root}archive/{collection}"), "endpoint")
    if spec.startswith(("http://", "https://")):
        return SourceInfo(collection, redact(spec), "url")
    return SourceInfo(collection, str(Path(spec).expanduser().resolve()), "file")


@contextmanager
def open_archive(spec: str | None, collection: str, endpoint: Endpoint) -> Iterator[CountingReader]:
    """Open the byte stream of one collection archive as a :class:`CountingReader`."""
    if spec is None:
        with _open_endpoint(collection, endpoint) as reader:
            yield reader
    elif spec.startswith(("http://", "https://")):
        with _open_url(spec, requests.Session(), what=redact(spec)) as reader:
            yield reader
    else:
        path = Path(spec).expanduser()
        try:
            handle: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise InputDataError(str(path), f"cannot open archive: {exc.strerror}") from None
        with handle:
            yield CountingReader(handle, path.stat().st_size)


@contextmanager
def _open_endpoint(collection: str, endpoint: Endpoint) -> Iterator[CountingReader]:
    session = endpoint.session()
    with _open_url(f"archive/{collection}", session, what=f"archive {collection!r}") as reader:
        yield reader


@contextmanager
def _open_url(url: str, session: requests.Session, *, what: str) -> Iterator[CountingReader]:
    try:
        response = session.get(url, stream=True, allow_redirects=True, timeout=(30, 300))
        response.raise_for_status()
    except AuthenticationError:
        # radiant-mlhub puts the key itself into this message: never show it.
        raise AuthError(f"the MLHub API key was rejected (401) when opening {what}") from None
    except requests.HTTPError as exc:
        raise _http_error(exc, what) from None
    except requests.RequestException as exc:
        raise NetworkError(f"cannot reach {what}: {redact(str(exc))}") from None
    try:
        length = response.headers.get("Content-Length")
        response.raw.decode_content = False
        yield CountingReader(_RawBody(response), int(length) if length else None)
    finally:
        response.close()


def _http_error(exc: requests.HTTPError, what: str) -> NetworkError:
    status = exc.response.status_code if exc.response is not None else 0
    if status == 401:
        return AuthError(f"the MLHub API key was rejected (401) when opening {what}")
    if status == 404:
        return NotFoundError(f"{what} does not exist (it may still be generating)")
    return NetworkError(
        f"{what}: HTTP {status} {exc.response.reason if exc.response else ''}".strip()
    )


class _RawBody:
    """The undecoded body of a streamed response; transport errors become NetworkError."""

    def __init__(self, response: requests.Response) -> None:
        self._raw = response.raw

    def read(self, n: int = -1, /) -> bytes:
        try:
            data: bytes = self._raw.read(None if n < 0 else n)
        except Exception as exc:  # urllib3 raises several unrelated types for a broken body
            raise NetworkError(f"download interrupted: {redact(str(exc))}") from None
        return data
