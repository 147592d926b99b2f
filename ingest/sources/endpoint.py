"""Source bytes: where an archive's bytes come from — a local file, any http(s) URL, or the MLHub
archive endpoint (``archive/{collection}``, followed through its redirect to the blob).

Every source is read as one sequential byte stream, counted and hashed (sha256) as it passes, so
nothing is written to disk. The MLHub session is radiant-mlhub's own (``get_session``): it resolves
the API key from ``--api-key``, ``MLHUB_API_KEY``, ``--profile``/``MLHUB_PROFILE`` and the profiles
file, and the root URL from ``MLHUB_ROOT_URL``. The key never appears in messages or attributes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import requests
from radiant_mlhub.exceptions import APIKeyNotFound
from radiant_mlhub.session import Session, get_session

from ..errors import AuthError, InputDataError, UsageError
from .download import ResumableBody, RetryPolicy, redact


@dataclass(frozen=True)
class Endpoint:
    """How to reach an MLHub-compatible API (None: resolved the way radiant-mlhub does)."""

    api_key: str | None = None
    profile: str | None = None

    def session(self) -> Session:
        check_root_url()
        try:
            return get_session(api_key=self.api_key, profile=self.profile)
        except APIKeyNotFound:
            raise AuthError(
                "no MLHub API key: pass --api-key, set MLHUB_API_KEY, or configure a profile "
                "in ~/.mlhub/profiles (MLHUB_HOME)"
            ) from None


#: radiant-mlhub's default root URL: MLHub's API, retired in 2023 (it no longer resolves).
RETIRED_ROOT_URL = Session.DEFAULT_ROOT_URL


def check_root_url() -> None:
    """Refuse at once what cannot work: no ``MLHUB_ROOT_URL`` (radiant-mlhub's default is MLHub's
    retired API, where a run used to wait minutes for a DNS error), or one without its trailing
    slash (the last segment of the URL would be dropped from every request)."""
    root = os.environ.get(Session.ROOT_URL_ENV_VARIABLE, "")
    if not root:
        raise UsageError(
            f"MLHub's API ({RETIRED_ROOT_URL}, used when MLHUB_ROOT_URL is not set) was retired "
            "in 2023: give the archives (ingest run --source-archive ..., or --dataset "
            "bigearthnet-v1|v2), or set MLHUB_ROOT_URL to an MLHub-compatible endpoint"
        )
    if not root.endswith("/"):
        raise UsageError(
            f"MLHUB_ROOT_URL={redact(root)} must end with a slash ({redact(root)}/): without it "
            "the last segment of the URL is dropped from every request"
        )


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


def describe(spec: str | None, collection: str, root_url: str | None = None) -> SourceInfo:
    """Where the archive of ``collection`` comes from: ``spec`` (a path or URL) or the endpoint."""
    if spec is None:
        root = root_url or Session(api_key=None).root_url
        return SourceInfo(collection, redact(f"{root}archive/{collection}"), "endpoint")
    if spec.startswith(("http://", "https://")):
        return SourceInfo(collection, redact(spec), "url")
    return SourceInfo(collection, str(Path(spec).expanduser().resolve()), "file")


DEFAULT_POLICY = RetryPolicy()


@contextmanager
def open_archive(
    spec: str | None,
    collection: str,
    endpoint: Endpoint,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    warn: Callable[[str], None] = lambda message: None,
) -> Iterator[CountingReader]:
    """Open the byte stream of one collection archive as a :class:`CountingReader`.

    Network sources resume after broken connections (see :mod:`ingest.sources.download`).
    """
    if spec is not None and not spec.startswith(("http://", "https://")):
        path = Path(spec).expanduser()
        try:
            handle: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise InputDataError(str(path), f"cannot open archive: {exc.strerror}") from None
        with handle:
            yield CountingReader(handle, path.stat().st_size)
        return
    session: requests.Session
    if spec is None:
        session, url, what = endpoint.session(), f"archive/{collection}", f"archive {collection!r}"
    else:
        session, url, what = requests.Session(), spec, redact(spec)
    with session:  # closes pooled connections on every path, errors included
        body = ResumableBody(session, url, what=what, policy=policy, warn=warn)
        try:
            yield CountingReader(body, body.length)
        finally:
            body.close()
