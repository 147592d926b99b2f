"""Item feeds: where the items of one collection come from, as the pipeline consumes them.

A feed yields :class:`~ingest.archive.members.ArchiveItem` (the files of one item folder,
``stac.json`` included), :class:`~ingest.archive.members.BadItem` and
:class:`~ingest.archive.members.CollectionDoc` values, in order, and says how far it got (for the
progress line) and what the store should record about where the items came from. The archive feed
reads a collection archive (local file, URL or the MLHub archive endpoint) as one stream; other
feeds (e.g. the items API) plug in behind the same :class:`Feed` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..archive.members import ArchiveItem, BadItem, CollectionDoc, iter_archive
from ..sources.download import RetryPolicy
from ..sources.endpoint import CountingReader, Endpoint, describe, open_archive

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

    def record(self) -> dict[str, Any]:
        """What the store's ``sources`` attribute keeps (never an API key); valid once
        :meth:`items` is exhausted or left."""
        ...


@dataclass
class ArchiveFeed:
    """A collection archive read as one stream (nothing extracted)."""

    collection: str
    spec: str | None
    reader: CountingReader
    warn: Callable[[str], None]

    @property
    def meter(self) -> Meter:
        return self.reader

    def items(self) -> Iterator[FeedObject]:
        culprit = describe(self.spec, self.collection).location
        return iter_archive(self.reader, self.collection, culprit=culprit, warn=self.warn)

    def record(self) -> dict[str, Any]:
        info = describe(self.spec, self.collection)
        return {
            "collection": self.collection,
            "kind": info.kind,
            "location": info.location,
            "bytes": self.reader.bytes_read,
            "sha256": self.reader.sha256,
        }


@contextmanager
def open_archive_feed(
    spec: str | None,
    collection: str,
    endpoint: Endpoint,
    *,
    policy: RetryPolicy,
    warn: Callable[[str], None],
) -> Iterator[ArchiveFeed]:
    """The archive of ``collection``: ``spec`` (a path or URL) or the MLHub archive endpoint."""
    with open_archive(spec, collection, endpoint, policy=policy, warn=warn) as reader:
        yield ArchiveFeed(collection, spec, reader, warn)
