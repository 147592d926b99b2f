"""The ``--via items`` feeds: a filtered subset from the items API instead of the archives.

The source archive is 71 GB; a selection of a few thousand patches needs a few hundred MB of it.
With ``ingest run --via items`` the pipeline reads the same :class:`~ingest.layouts.feeds.Feed`
protocol from two other feeds, and validates, joins, decodes and writes exactly as from archives:

- :class:`ItemsLabelsFeed` pages through ``collections/{labels}/items`` (:data:`PAGE_SIZE` items
  a page) after ``collections/{labels}``; every feature is serialised back to JSON and yielded as
  the ``stac.json`` of an :class:`~ingest.archive.members.ArchiveItem`, so label validation is
  unchanged.
- :class:`ItemsSourceFeed` fetches, for each *selected* label entry only, in label order, the
  source item ``collections/{source}/items/bigearthnet_v1_source_<patch>`` (the inverse of the
  join key, :func:`~ingest.nomenclature.patch_of`) and its 12 band assets, and yields
  ``ArchiveItem(files={"stac.json": ..., "B01.tif": ..., ...})``. Downloads run on a pool of
  :data:`CONCURRENCY` threads (one radiant-mlhub session each) with at most that many items in
  flight, a sliding window, so memory stays bounded; items are still yielded in label order.
  With ``--limit N`` at most N + 1 items are fetched ahead (the pipeline reads one past the
  limit to know it was reached), plus one per missing item; further ones only on demand, when
  the pipeline skipped bad items.

What differs from the archive route, by design: samples are in **label-item order** (the archive
route writes source-archive order); source items without a label item are never requested, so
``source_without_labels`` is 0; assets other than the 12 BigEarthNet bands (the API lists a B10)
are not downloaded, so ``ignored_files`` stays empty; a selected label whose source item does not
exist (404) counts as a label without source, and a missing band asset is a missing band.

Each feed's :meth:`record` keeps ``{collection, kind: "items", location, bytes, sha256, items}``:
the items URL (never the key), the bytes of every response body received and their sha256 in the
order the pipeline consumed them, and the number of items yielded.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

from radiant_mlhub.session import Session

from ..archive.members import ArchiveItem, BadItem, CollectionDoc, Limits
from ..decode.patches import band_file
from ..errors import InputDataError, NetworkError, NotFoundError
from ..layouts.feeds import FeedObject
from ..layouts.labels import LabelIndex
from ..nomenclature import BANDS, SOURCE_COLLECTION
from ..sources.download import RetryPolicy, redact
from ..sources.endpoint import Endpoint
from .browse import api_request, get_document, item_path, iter_pages, json_object, to_json_line
from .fetch import fetch_bytes

#: Label items per page (sent as ``limit``): 5,904 requests for the 590,326 label items.
PAGE_SIZE = 100
#: Source items downloaded at once (each: its item document, then its 12 bands one by one).
CONCURRENCY = 8

Warn = Callable[[str], None]
_LIMITS = Limits()


class ByteMeter:
    """Bytes received so far (the total is unknown in advance) and their sha256."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.size: int | None = None
        self._hash = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.bytes_read += len(data)
        self._hash.update(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def _items_url(session: Session, collection: str) -> str:
    return redact(f"{session.root_url}collections/{quote(collection)}/items")


def _collection_doc(
    session: Session, collection: str, policy: RetryPolicy, meter: ByteMeter
) -> CollectionDoc:
    what = f"collection {collection!r}"
    document, response = get_document(session, f"collections/{quote(collection)}", what=what,
                                      policy=policy)  # fmt: skip
    meter.add(response.content)
    return CollectionDoc(collection, document)


def _record(collection: str, location: str, meter: ByteMeter, items: int) -> dict[str, Any]:
    return {
        "collection": collection,
        "kind": "items",
        "location": location,
        "bytes": meter.bytes_read,
        "sha256": meter.sha256,
        "items": items,
    }


# --- labels ------------------------------------------------------------------------------------


def label_item(collection: str, feature: Any, position: int) -> ArchiveItem | BadItem:
    """One feature of a page as the archive would hold it: its ``stac.json``."""
    if not isinstance(feature, dict):
        name = f"item #{position + 1}"
        return BadItem(collection, name, InputDataError(name, "a feature that is not an object"))
    item_id = str(feature.get("id") or f"item #{position + 1}")
    return ArchiveItem(collection, item_id, {"stac.json": to_json_line(feature).encode()})


@dataclass
class ItemsLabelsFeed:
    """The label items of ``collection``, page by page, in API order."""

    collection: str
    session: Session
    policy: RetryPolicy
    page_size: int = PAGE_SIZE
    meter: ByteMeter = field(default_factory=ByteMeter)
    count: int = 0

    def items(self) -> Iterator[FeedObject]:
        yield _collection_doc(self.session, self.collection, self.policy, self.meter)
        pages = iter_pages(self.session, self.collection, page_size=self.page_size,
                           policy=self.policy)  # fmt: skip
        for page, body in pages:
            self.meter.add(body)
            for feature in page["features"]:
                yield label_item(self.collection, feature, self.count)
                self.count += 1

    def records(self) -> list[dict[str, Any]]:
        url = _items_url(self.session, self.collection)
        return [{"role": "labels", **_record(self.collection, url, self.meter, self.count)}]


@contextmanager
def open_items_labels_feed(
    collection: str, endpoint: Endpoint, *, policy: RetryPolicy, page_size: int = PAGE_SIZE
) -> Iterator[ItemsLabelsFeed]:
    """The label items of ``collection`` from the items endpoint."""
    with endpoint.session() as session:
        yield ItemsLabelsFeed(collection, session, policy, page_size)


# --- sources -----------------------------------------------------------------------------------


class _Sessions:
    """One radiant-mlhub session per thread (requests does not promise a session is safe to
    share between threads), all closed together at the end."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Session] = []

    def get(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._endpoint.session()
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._all = self._all, []
        for session in sessions:
            session.close()


@dataclass(frozen=True)
class _Fetched:
    """One source item as a worker fetched it, with every body received (for the meter)."""

    item: ArchiveItem | BadItem | None
    """None: the source item does not exist."""
    bodies: tuple[bytes, ...] = ()


def source_item_id(patch: str) -> str:
    """The id of a patch's source item (``patch_of`` inverted)."""
    return f"{SOURCE_COLLECTION}_{patch}"


def selected_patches(index: LabelIndex) -> Iterator[str]:
    """The patch names of the selected label entries, in label order (lazily)."""
    return (name for name, keep in zip(index.rows, index.selected, strict=True) if keep)


@dataclass
class ItemsSourceFeed:
    """The source items of the selected patches, fetched in parallel, yielded in label order."""

    collection: str
    location: str
    patches: Iterable[str]
    sessions: _Sessions
    policy: RetryPolicy
    warn: Warn
    limit: int | None = None
    concurrency: int = CONCURRENCY
    meter: ByteMeter = field(default_factory=ByteMeter)
    count: int = 0
    missing: int = 0
    _submitted: int = 0

    def items(self) -> Iterator[FeedObject]:
        yield _collection_doc(self.sessions.get(), self.collection, self.policy, self.meter)
        names = iter(self.patches)
        pending: deque[Future[_Fetched]] = deque()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ingest-items")
        try:
            while True:
                self._fill(pool, pending, names, on_demand=True)
                if not pending:
                    return
                fetched = pending.popleft().result()
                for body in fetched.bodies:
                    self.meter.add(body)
                self.missing += fetched.item is None
                # Keep downloading while the pipeline decodes, within the look-ahead only: the
                # pipeline may stop at this item (--limit).
                self._fill(pool, pending, names, on_demand=False)
                if fetched.item is not None:
                    self.count += 1
                    yield fetched.item
        finally:  # also when the pipeline stops early (--limit) or fails
            pool.shutdown(wait=True, cancel_futures=True)

    def _fill(
        self,
        pool: ThreadPoolExecutor,
        pending: deque[Future[_Fetched]],
        names: Iterator[str],
        *,
        on_demand: bool,
    ) -> None:
        """Submit items until the window is full; past the look-ahead only ``on_demand`` and
        only one (the pipeline asked for the next item and none is in flight)."""
        while len(pending) < self.concurrency and (
            self._look_ahead() or (on_demand and not pending)
        ):
            patch = next(names, None)
            if patch is None:
                return
            self._submitted += 1
            pending.append(pool.submit(self._fetch, patch))

    def _look_ahead(self) -> bool:
        return self.limit is None or self._submitted < self.limit + 1 + self.missing

    def _fetch(self, patch: str) -> _Fetched:
        """Runs in a worker thread: the item document, then its band assets."""
        session = self.sessions.get()
        item_id = source_item_id(patch)
        what = f"source item {item_id!r}"
        try:
            response = api_request(session, item_path(self.collection, item_id), what=what,
                                   policy=self.policy)  # fmt: skip
        except NotFoundError:
            return _Fetched(None)
        try:
            document = json_object(response, what)
        except NetworkError as error:
            bad = InputDataError(f"{self.collection}/{item_id}/stac.json", str(error))
            return _Fetched(BadItem(self.collection, item_id, bad), (response.content,))
        files = {"stac.json": response.content}
        for key, href in _band_hrefs(document):
            try:
                files[band_file(key)] = fetch_bytes(
                    session, urljoin(response.url, href), what=f"asset {key!r} of {item_id!r}",
                    policy=self.policy, limit=_LIMITS.asset_bytes, warn=self.warn,
                )  # fmt: skip
            except NotFoundError:
                continue  # the pipeline reports the missing band, naming the item
            except InputDataError as error:  # oversized: a bad item, like in an archive
                return _Fetched(BadItem(self.collection, item_id, error), tuple(files.values()))
        found_id = document.get("id")
        item = ArchiveItem(self.collection, found_id if isinstance(found_id, str) else item_id,
                           files)  # fmt: skip
        return _Fetched(item, tuple(files.values()))

    def records(self) -> list[dict[str, Any]]:
        return [{"role": "s2", **_record(self.collection, self.location, self.meter, self.count)}]


def _band_hrefs(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(band, href) of the assets that are BigEarthNet v1 bands (not B10), in band order."""
    assets = document.get("assets") or {}
    found = []
    for band in BANDS:
        asset = assets.get(band)
        if isinstance(asset, dict) and isinstance(asset.get("href"), str) and asset["href"]:
            found.append((band, str(asset["href"])))
    return found


@contextmanager
def open_items_source_feed(
    collection: str,
    index: LabelIndex,
    endpoint: Endpoint,
    *,
    limit: int | None,
    policy: RetryPolicy,
    warn: Warn,
    concurrency: int = CONCURRENCY,
) -> Iterator[ItemsSourceFeed]:
    """The source items of ``index``'s selected entries from the items endpoint."""
    sessions = _Sessions(endpoint)
    try:
        # Resolve the key now: a missing key fails before any thread starts.
        location = _items_url(sessions.get(), collection)
        yield ItemsSourceFeed(collection, location, selected_patches(index), sessions, policy,
                              warn, limit, concurrency)  # fmt: skip
    finally:
        sessions.close()
