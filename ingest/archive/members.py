"""Archive members: an archive's byte stream → safe tar members → items.

Every distribution of BigEarthNet is a tar (gzip, zstd or plain: :mod:`ingest.sources.decompress`)
holding one top folder and, below it, one folder per item (a patch) whose files arrive together:
MLHub's ``{collection}/{item_id}/B01.tif``, Zenodo v1's
``BigEarthNet-v1.0/{patch}/{patch}_B01.tif``, reBEN's
``BigEarthNet-S2/{tile}/{patch}/{patch}_B01.tif``. This module reads such a stream strictly
sequentially (:mod:`ingest.archive.tarstream`: never seeked, so it can come straight from an HTTP
response), passes over members that are not plain files inside the top folder (counted by reason in
:class:`IgnoredMembers`, never one line each), enforces size limits, and groups the members of each
item folder into one :class:`ArchiveItem` as they arrive. Where a member belongs is the layout's
:class:`MemberRule`. Member names are only ever parsed, never used as filesystem paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final, Protocol

from ..errors import InputDataError
from ..sources.decompress import DECOMPRESSION_ERRORS, Readable, corrupt, open_decompressed
from .tarstream import HEADER_BYTES, Member, TarReader

#: How many member names each reason for ignoring members keeps as examples.
EXAMPLES: Final = 5


@dataclass(frozen=True)
class Limits:
    """Size limits guarding against decompression bombs and absurd members."""

    json_bytes: int = 8 << 20
    """Largest ``stac.json``/``labels.geojson`` of one item."""
    collection_json_bytes: int = 1 << 30
    """Largest ``collection.json`` (it lists every item: ~60 MB for 590k items)."""
    asset_bytes: int = 64 << 20
    """Largest asset file (a real band file is at most 29,192 bytes)."""
    item_bytes: int = 256 << 20
    """Largest sum of the member sizes of one item."""
    header_bytes: int = HEADER_BYTES
    """Largest sum of the extended headers (GNU long names, pax records) before one member."""


@dataclass(frozen=True)
class ArchiveItem:
    """The members of one item folder, in archive order."""

    collection: str
    item_id: str
    files: dict[str, bytes] = field(repr=False)
    """File key → bytes (``stac.json``, ``B01.tif``, ``labels_metadata.json``, ...): the file
    name inside the item folder less the layout's per-patch ``prefix``."""
    path: str = ""
    """The item folder's path in the archive (default ``{collection}/{item_id}``)."""
    prefix: str = ""
    """What precedes each file key in its member name (``{patch}_`` in the Zenodo and reBEN
    layouts)."""

    @property
    def folder(self) -> str:
        return self.path or f"{self.collection}/{self.item_id}"

    def member(self, file: str) -> str:
        """The archive member name of one of the item's files, for messages."""
        return f"{self.folder}/{self.prefix}{file}"


@dataclass(frozen=True)
class BadItem:
    """An item folder that cannot be used (a repeated folder or member, an oversized member):
    the caller decides whether to stop or to skip it. The stream itself stays readable."""

    collection: str
    item_id: str
    error: InputDataError


@dataclass(frozen=True)
class CollectionDoc:
    """The archive's ``collection.json``, parsed."""

    collection: str
    document: dict[str, Any] = field(repr=False)


Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a member belongs: the file ``file`` of item ``item_id``."""

    item_id: str
    file: str
    folder: str
    """The item folder's path in the archive."""
    prefix: str = ""


#: What a rule returns for the archive's ``collection.json`` (MLHub).
COLLECTION_JSON: Final = "collection.json"


class MemberRule(Protocol):
    """A layout's reading of member names: which item and file a member is, or why it is not.

    ``place`` gets the path parts below the top folder and returns a :class:`Place`,
    :data:`COLLECTION_JSON`, or a reason (any other string) for passing the member over.
    """

    @property
    def top(self) -> str: ...

    def place(self, parts: tuple[str, ...]) -> Place | str: ...


@dataclass
class IgnoredMembers:
    """Members passed over, counted by reason with a few example names (never one line each:
    the real archives would give millions)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        names = self.examples.setdefault(reason, [])
        if len(names) < EXAMPLES:
            names.append(name)

    def report(self) -> dict[str, dict[str, Any]]:
        """``{reason: {"count": n, "examples": [...]}}`` for the store and the summary."""
        return {r: {"count": n, "examples": self.examples[r]} for r, n in self.counts.items()}

    def lines(self) -> list[str]:
        return [
            f"{n:,} member(s) ignored: {r} (e.g. {', '.join(repr(e) for e in self.examples[r])})"
            for r, n in self.counts.items()
        ]


def open_tar_stream(
    raw: Readable, culprit: str, header_limit: int = HEADER_BYTES
) -> tuple[TarReader, IO[bytes]]:
    """Open a tar stream (gzip, zstd or plain; see :mod:`ingest.sources.decompress`) for strictly
    sequential reading. Returns the tar reader and the decompressed stream under it (to drain it,
    see :func:`_drain`). Close the stream when done: that stops its decompression thread.
    """
    stream = open_decompressed(raw, culprit)
    return TarReader(stream, culprit, header_limit), stream


def first_member(raw: Readable, culprit: str) -> str:
    """The name of the archive's first member (a directory entry counts): what tells the layouts
    apart. Reads only the first header."""
    tar, stream = open_tar_stream(raw, culprit)
    try:
        member = next(iter(tar), None)
    except DECOMPRESSION_ERRORS as exc:
        raise corrupt(culprit, exc) from None
    finally:
        stream.close()
    if member is None:
        raise InputDataError(culprit, "archive is empty")
    return member.name


def iter_archive(
    raw: Readable,
    rule: MemberRule,
    *,
    culprit: str,
    ignored: IgnoredMembers,
    limits: Limits = Limits(),
) -> Iterator[ArchiveItem | BadItem | CollectionDoc]:
    """Yield the archive's ``collection.json`` (if any) and its items, one per folder, in order.

    ``culprit`` names the archive in errors. Members outside ``rule.top``, links, devices and
    members the rule does not place are counted in ``ignored``. A folder that appears twice, a
    repeated member and an oversized member (never read into memory) make a :class:`BadItem`. A
    truncated or corrupt stream, and an archive without any item, are errors.
    """
    yield from iter_tar(open_decompressed(raw, culprit), rule, culprit=culprit, ignored=ignored,
                        limits=limits)  # fmt: skip


def iter_tar(
    stream: IO[bytes],
    rule: MemberRule,
    *,
    culprit: str,
    ignored: IgnoredMembers,
    limits: Limits = Limits(),
) -> Iterator[ArchiveItem | BadItem | CollectionDoc]:
    """:func:`iter_archive` of a tar stream already decompressed (by a reader process:
    :mod:`ingest.sources.reader_process`); the stream is closed when done."""
    try:
        yield from _items(TarReader(stream, culprit, limits.header_bytes), stream, rule, culprit,
                          ignored, limits)  # fmt: skip
    finally:
        stream.close()


def _items(
    tar: TarReader,
    stream: IO[bytes],
    rule: MemberRule,
    culprit: str,
    ignored: IgnoredMembers,
    limits: Limits,
) -> Iterator[ArchiveItem | BadItem | CollectionDoc]:
    current: _Pending | None = None
    done: set[str] = set()
    items = 0
    for info, place in _safe_members(tar, rule, culprit, ignored):
        if place == COLLECTION_JSON:
            if info.size > limits.collection_json_bytes:
                raise InputDataError(
                    info.name,
                    f"member of {info.size:,} bytes exceeds the limit of "
                    f"{limits.collection_json_bytes:,}",
                )
            data = _read(tar, info, culprit)
            yield CollectionDoc(rule.top, parse_collection(data, info.name))
            continue
        assert isinstance(place, Place)
        if current is not None and current.item_id != place.item_id:
            done.add(current.item_id)
            items += 1
            yield current.finish()
            current = None
        if current is None:
            current = _Pending(rule.top, place.item_id, place.folder, place.prefix, limits)
            if place.item_id in done:
                current.fail(InputDataError(current.folder, "item appears twice in the archive"))
        if current.problem is None:
            current.add(tar, info, place.file, culprit)
    if current is not None:
        items += 1
        yield current.finish()
    _drain(stream, culprit)
    if items == 0:
        raise InputDataError(culprit, f"archive holds no items under {rule.top}/")


@dataclass
class _Pending:
    collection: str
    item_id: str
    folder: str
    prefix: str
    limits: Limits
    files: dict[str, bytes] = field(default_factory=dict)
    total: int = 0
    problem: InputDataError | None = None

    def fail(self, problem: InputDataError) -> None:
        """Mark the item bad; its remaining members are passed over unread."""
        self.problem = problem
        self.files.clear()

    def limit_for(self, file: str) -> int:
        cap = (
            self.limits.json_bytes
            if file.endswith((".json", ".geojson"))
            else self.limits.asset_bytes
        )
        return min(cap, self.limits.item_bytes - self.total)

    def add(self, tar: TarReader, info: Member, file: str, culprit: str) -> None:
        limit = self.limit_for(file)
        if file in self.files:
            self.fail(InputDataError(info.name, "member appears twice in the archive"))
        elif info.size > limit:
            self.fail(
                InputDataError(
                    info.name, f"member of {info.size:,} bytes exceeds the limit of {limit:,}"
                )
            )
        else:
            self.files[file] = _read(tar, info, culprit)
            self.total += info.size

    def finish(self) -> ArchiveItem | BadItem:
        if self.problem is not None:
            return BadItem(self.collection, self.item_id, self.problem)
        return ArchiveItem(self.collection, self.item_id, self.files, self.folder, self.prefix)


def _safe_members(
    tar: TarReader, rule: MemberRule, culprit: str, ignored: IgnoredMembers
) -> Iterator[tuple[Member, Place | str]]:
    """Regular files inside the top folder that the rule places, with their place."""
    members = iter(tar)
    top = rule.top
    while True:
        try:
            info = next(members, None)
        except DECOMPRESSION_ERRORS as exc:
            raise corrupt(culprit, exc) from None
        if info is None:
            return
        if info.isdir:
            continue
        parts = member_parts(info.name, top)
        if parts is None:
            ignored.add(f"outside the {top}/ folder", info.name)
            continue
        if not info.isfile:
            ignored.add(f"{info.kind}, not a regular file", info.name)
            continue
        place = rule.place(parts)
        if isinstance(place, Place) or place == COLLECTION_JSON:
            yield info, place
        else:
            ignored.add(place, info.name)


def _drain(stream: IO[bytes], culprit: str) -> None:
    """Read the stream to its end so that gzip checks its trailer (CRC-32 and length) and zstd its
    content checksum.

    The tar reader stops at the end-of-archive marker, before the compressed trailer: without
    this, a corrupted stream that still decompresses would go unnoticed.
    """
    try:
        while stream.read(1 << 20):
            pass
    except DECOMPRESSION_ERRORS as exc:
        raise corrupt(culprit, exc) from None


def member_parts(name: str, collection: str) -> tuple[str, ...] | None:
    """The path parts of a member below ``{collection}/``, or None when it is not safely inside.

    Absolute names, ``..`` components, empty components and backslashes are never inside.
    """
    if name.startswith("/") or "\\" in name:
        return None
    split = name.split("/")
    if "" in split or "." in split:
        split = [p for p in split if p not in ("", ".")]
    # Without "..", the first component normpath would give is split[0]: nothing more to check.
    if ".." in split or len(split) < 2 or split[0] != collection:
        return None
    return tuple(split[1:])


def _read(tar: TarReader, info: Member, culprit: str) -> bytes:
    try:
        return tar.read(info)
    except DECOMPRESSION_ERRORS as exc:
        raise corrupt(culprit, exc) from None


def parse_json(data: bytes, member: str) -> dict[str, Any]:
    """A JSON object from a member's bytes; anything else is an InputDataError naming it.

    Its size is bounded by the member limits; its depth by the interpreter's recursion limit
    (the decoder's C recursion raises RecursionError there: an error, never a crash)."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(member, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InputDataError(member, "invalid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise InputDataError(member, "invalid JSON: expected an object")
    return document


def parse_collection(data: bytes, member: str) -> dict[str, Any]:
    """Parse ``collection.json`` without its ``rel: item`` links.

    A real collection lists every item: 590,326 links, 55 MB of JSON, 220 MiB once parsed, kept
    for the whole run. The links are replaced by None as the decoder builds them (so they never
    pile up) and then dropped; the ingest needs the collection's metadata, not the list.
    """
    try:
        document = json.loads(data, object_pairs_hook=_drop_item_links)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(member, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InputDataError(member, "invalid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise InputDataError(member, "invalid JSON: expected an object")
    if isinstance(document.get("links"), list):
        document["links"] = [link for link in document["links"] if link is not None]
    return document


def _drop_item_links(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    if len(pairs) <= 4 and ("rel", "item") in pairs:
        return None
    return dict(pairs)


def parse_item_json(item: ArchiveItem, file: str = "stac.json") -> dict[str, Any]:
    """Parse one JSON file of an item; missing or malformed is an InputDataError naming it."""
    data = item.files.get(file)
    if data is None:
        raise InputDataError(item.folder, f"item has no {file}")
    return parse_json(data, item.member(file))
