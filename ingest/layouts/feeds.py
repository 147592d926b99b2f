"""Item feeds: where the items of one collection come from, as the pipeline consumes them.

A feed yields :class:`~ingest.archive.members.ArchiveItem` (the files of one item folder),
:class:`~ingest.archive.members.BadItem` and :class:`~ingest.archive.members.CollectionDoc` values,
in order, and says how far it got (for the progress line) and what the store should record about
where the items came from. The archive feed reads an archive (its parts, each a local file or URL,
or the MLHub archive endpoint) as one stream, its members placed by the layout's rule; other feeds
(e.g. the items API) plug in behind the same :class:`Feed` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..archive.members import (
    ArchiveItem,
    BadItem,
    CollectionDoc,
    IgnoredMembers,
    MemberRule,
    iter_archive,
    iter_tar,
)
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..sources.inputs import InputSpec, InputStream, open_input
from ..sources.reader_process import ArchiveReader

FeedObject = ArchiveItem | BadItem | CollectionDoc


class Meter(Protocol):
    """How far a feed got: bytes so far and in all (None when unknown)."""

    @property
    def bytes_read(self) -> int: ...

    @property
    def size(self) -> int | None: ...


class Feed(Protocol):
    """The items of one collection, in order."""

    @property
    def meter(self) -> Meter: ...

    def items(self) -> Iterator[FeedObject]: ...

    def records(self) -> list[dict[str, Any]]:
        """What the store's ``sources`` attribute keeps, one entry per file read (never an API
        key); valid once :meth:`items` is exhausted or left."""
        ...


@dataclass
class ArchiveFeed:
    """An archive read as one stream (nothing extracted), its members placed by a layout's rule."""

    rule: MemberRule
    stream: InputStream
    ignored: IgnoredMembers

    @property
    def meter(self) -> Meter:
        return self.stream

    def items(self) -> Iterator[FeedObject]:
        yield from iter_archive(
            self.stream, self.rule, culprit=self.stream.spec.name, ignored=self.ignored
        )
        self.stream.drain()  # to the last byte of the last part: the md5 is checked there

    def records(self) -> list[dict[str, Any]]:
        return self.stream.records()


@dataclass
class ReaderFeed:
    """An archive read by a process of its own (:mod:`ingest.sources.reader_process`)."""

    rule: MemberRule
    reader: ArchiveReader
    ignored: IgnoredMembers

    @property
    def meter(self) -> Meter:
        return self.reader

    def items(self) -> Iterator[FeedObject]:
        # the process reads to the last byte of the last part once the tar stream ends
        yield from iter_tar(self.reader.stream(), self.rule, culprit=self.reader.spec.name,
                            ignored=self.ignored)  # fmt: skip

    def records(self) -> list[dict[str, Any]]:
        return self.reader.records()


@contextmanager
def open_archive_feed(
    spec: InputSpec,
    rule: MemberRule,
    *,
    endpoint: Endpoint,
    policy: RetryPolicy,
    warn: Callable[[str], None],
    ignored: IgnoredMembers,
    reader: ArchiveReader | None = None,
) -> Iterator[ArchiveFeed | ReaderFeed]:
    """The archive ``spec`` (its parts, or MLHub's archive endpoint), read by ``rule``: by
    ``reader`` (a process reading ``spec``, closed here) when given, else in this process."""
    if reader is not None:
        try:
            yield ReaderFeed(rule, reader, ignored)
        finally:
            reader.close()
        return
    with open_input(spec, policy=policy, warn=warn, endpoint=endpoint) as stream:
        yield ArchiveFeed(rule, stream, ignored)
