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
)
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..sources.inputs import InputSpec, InputStream, open_input

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


@contextmanager
def open_archive_feed(
    spec: InputSpec,
    rule: MemberRule,
    *,
    endpoint: Endpoint,
    policy: RetryPolicy,
    warn: Callable[[str], None],
    ignored: IgnoredMembers,
) -> Iterator[ArchiveFeed]:
    """The archive ``spec`` (its parts, or MLHub's archive endpoint), read by ``rule``."""
    with open_input(spec, policy=policy, warn=warn, endpoint=endpoint) as stream:
        yield ArchiveFeed(rule, stream, ignored)
