"""Inputs: one archive given as one file or as several parts, each a path or an http(s) URL.

torchgeo's mirror splits its archives into parts (``BigEarthNet-S2.tar.gzaa``, ``…gzab``) that are
one gzip stream only when concatenated; :func:`open_input` reads the parts in the order given as
one byte stream, opening each part only when the previous one is exhausted (a URL resumes after
broken connections, as every source does). Each part is counted and hashed on its own, so the
store's ``sources`` attribute records every file read. An official file can be checked against
its published md5 as its bytes stream by (:class:`Md5Check`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import InputDataError, UsageError
from .download import RetryPolicy
from .endpoint import CountingReader, Endpoint, describe, open_archive

Warn = Callable[[str], None]


@dataclass(frozen=True)
class InputSpec:
    """One input of a run: its parts (paths or URLs, in order), its role in the store's
    ``sources`` (``labels``, ``s2``, ``s1``, ``reference_maps``, ``metadata``) and, for an
    official file, its published md5 (checked once the last byte is read)."""

    parts: tuple[str, ...]
    role: str
    md5: str | None = None
    collection: str | None = None
    """MLHub only: the collection this archive holds; with no parts, its archive is read from
    the archive endpoint."""

    def __post_init__(self) -> None:
        if not self.parts and self.collection is None:
            raise UsageError(f"no file given for the {self.role} input")

    @property
    def local(self) -> bool:
        """Whether every part is a local path (no URL, not MLHub's archive endpoint)."""
        return bool(self.parts) and not any("://" in part for part in self.parts)

    @property
    def name(self) -> str:
        """For messages: where the bytes come from (the first part when there are several)."""
        if not self.parts:
            return describe(None, self.collection or self.role).location
        first = describe(self.parts[0], self.role).location
        return first if len(self.parts) == 1 else f"{first} (+{len(self.parts) - 1} parts)"


class Md5Check:
    """Passes bytes through, hashing them with md5; at the end of the stream the digest must equal
    the published one, else an :class:`InputDataError` naming the file stops the run.

    The outcome is kept: :attr:`matched` is True only once the last byte was read and the digest
    matched, False after a mismatch (every later read, and :meth:`InputStream.records`, raise the
    error again: a failed check seen only by a read-ahead thread is never lost), None while the
    end has not been reached."""

    def __init__(self, inner: Any, expected: str, name: str) -> None:
        self._inner = inner
        self.expected = expected.lower()
        self._name = name
        self._hash = hashlib.md5(usedforsecurity=False)
        self.matched: bool | None = None
        self.error: InputDataError | None = None

    @property
    def checked(self) -> bool:
        """Whether the end was reached and the digest compared."""
        return self.matched is not None

    def read(self, n: int = -1, /) -> bytes:
        if self.error is not None:
            raise self.error
        data: bytes = self._inner.read(n)
        if data:
            self._hash.update(data)
        elif self.matched is None and n != 0:
            got = self._hash.hexdigest()
            self.matched = got == self.expected
            if not self.matched:
                self.error = InputDataError(
                    self._name,
                    f"md5 {got} differs from the official {self.expected}: the file is damaged "
                    "or not the official one",
                )
                raise self.error
        return data


class _Chain:
    """The parts read one after the other, each opened when the previous one is exhausted."""

    def __init__(
        self, parts: tuple[str | None, ...], open_part: Callable[[str | None], CountingReader]
    ) -> None:
        self.parts = parts
        self.readers: list[CountingReader] = []
        self._open_part = open_part
        self._current: CountingReader | None = None

    def read(self, n: int = -1, /) -> bytes:
        while True:
            if self._current is None:
                if len(self.readers) == len(self.parts):
                    return b""
                self._current = self._open_part(self.parts[len(self.readers)])
                self.readers.append(self._current)
            data = self._current.read(n)
            if data or n == 0:
                return data
            self._current = None


@dataclass
class InputStream:
    """The parts of one input read as one stream (``read``), with a meter over all of them."""

    spec: InputSpec
    chain: _Chain
    check: Md5Check | None = None

    @property
    def bytes_read(self) -> int:
        return sum(r.bytes_read for r in self.chain.readers)

    @property
    def size(self) -> int | None:
        """Known once every part has been opened and reported its size."""
        sizes = [r.size for r in self.chain.readers]
        if len(sizes) < len(self.chain.parts) or None in sizes:
            return None
        return sum(s for s in sizes if s is not None)

    def read(self, n: int = -1, /) -> bytes:
        return (self.check or self.chain).read(n)

    def drain(self) -> None:
        """Read to the end of the last part (so that the md5, if any, is checked)."""
        while self.read(1 << 20):
            pass

    def records(self) -> list[dict[str, Any]]:
        """The store's ``sources`` entries: one per part read (never an API key). The last part
        records the official md5 only when the whole input was read and matched it (None: not
        verified); an md5 that failed, even where nobody read on, raises its error here."""
        if self.check is not None and self.check.error is not None:
            raise self.check.error
        out: list[dict[str, Any]] = []
        for part, reader in zip(self.chain.parts, self.chain.readers, strict=False):
            info = describe(part, self.spec.collection or self.spec.role)
            out.append({
                **({"collection": self.spec.collection} if self.spec.collection else {}),
                "role": self.spec.role,
                "kind": info.kind,
                "location": info.location,
                "bytes": reader.bytes_read,
                "sha256": reader.sha256,
            })  # fmt: skip
        if self.check is not None and out:
            out[-1]["md5"] = self.check.expected if self.check.matched else None
        return out


@contextmanager
def open_input(
    spec: InputSpec,
    *,
    policy: RetryPolicy,
    warn: Warn,
    endpoint: Endpoint | None = None,
) -> Iterator[InputStream]:
    """Open ``spec``'s parts lazily, in order, as one :class:`InputStream`."""
    with ExitStack() as stack:

        def open_part(part: str | None) -> CountingReader:
            what = spec.collection or spec.role
            return stack.enter_context(
                open_archive(part, what, endpoint or Endpoint(), policy=policy, warn=warn)
            )

        parts: tuple[str | None, ...] = spec.parts or (None,)
        chain = _Chain(parts, open_part)
        check = None if spec.md5 is None else Md5Check(chain, spec.md5, spec.name)
        yield InputStream(spec, chain, check)
