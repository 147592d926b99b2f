"""Downloads like the notebook's: one item's assets (and its source items'), or a whole archive.

Bytes always come through :class:`~ingest.sources.download.ResumableBody`, so a connection broken
mid-body is resumed with ``Range`` and a 429/503 waits for its ``Retry-After``. Files are streamed
to disk in 1 MiB pieces: memory stays constant whatever their size.

**Item assets** (:func:`download_item`) go to ``OUT/<item id>/<name>``, where ``<name>`` is the
last path segment of the server's final URL for the asset (after redirects), as the notebook named
them; the item-id folder mirrors the archive layout and keeps the files of several items (a label
item and its source item both have assets) apart.

**Archives** (:func:`download_archive`) are downloaded so that an interrupted download continues
and a truncated file never looks complete:

- ``OUT/<name>.partial`` holds the bytes received so far, always a prefix of the archive;
- ``OUT/<name>.partial.json`` records the size and ETag of the archive that prefix belongs to;
- ``OUT/<name>`` appears only by renaming a ``.partial`` whose size equals the server's.

A second run asks the server (HEAD, redirects followed) for the size, ETag and file name, then
continues the ``.partial`` with ``Range: bytes=<its size>-`` and ``If-Range: <ETag>``; if the
archive changed meanwhile (another size or ETag) it starts over. So does a download whose resumed
answer turns out to come from another file (a server that ignores ``If-Range``: another ETag,
Last-Modified or total length), once, with a note; a second change is an error. A smaller file at
``OUT/<name>`` itself is taken for one left by radiant-mlhub's ``download_archive`` (which writes in
place) and is continued the same way. ``overwrite=True`` starts from nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests

from ..errors import InputDataError, NetworkError, NotFoundError, UsageError
from ..sources.download import FileChanged, ResumableBody, RetryPolicy, redact
from ..sources.endpoint import DEFAULT_POLICY, Endpoint
from .browse import JSON, api_request, get_document, item_path

_CHUNK = 1 << 20
PARTIAL_SUFFIX = ".partial"
STATE_SUFFIX = ".partial.json"

#: Called with (bytes on disk, size of the archive) as an archive download advances.
Progress = Callable[[int, int], None]
Warn = Callable[[str], None]


def _ignore(message: str) -> None:
    return None


def file_name(url: str) -> str:
    """The file name a URL gives: its last path segment, unquoted; never a path."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not _is_plain_name(name):
        raise NetworkError(f"{redact(url)}: the URL names no file")
    return name


def _is_plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


# --- one file --------------------------------------------------------------------------------


def download_file(
    session: requests.Session,
    url: str,
    directory: Path,
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    warn: Warn = _ignore,
) -> Path:
    """Stream ``url`` into ``directory``, named by the final URL; returns the file's path.

    Written as ``<name>.partial`` and renamed once complete (an asset is small: a failed one is
    fetched again whole, not continued).
    """
    try:
        body = ResumableBody(session, url, what=what, policy=policy, warn=warn)
    except NotFoundError:
        raise NotFoundError(f"{what} does not exist") from None
    try:
        target = directory / file_name(body.url)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            with partial.open("wb") as out:
                _copy(body, out, 0, body.length, what)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        body.close()
    return target


def fetch_bytes(
    session: requests.Session,
    url: str,
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    limit: int = 64 << 20,
    warn: Warn = _ignore,
) -> bytes:
    """The whole body of ``url`` in memory (for small assets), at most ``limit`` bytes."""
    body = ResumableBody(session, url, what=what, policy=policy, warn=warn)
    try:
        parts: list[bytes] = []
        size = 0
        while chunk := body.read(1 << 16):
            size += len(chunk)
            if size > limit:
                raise InputDataError(what, f"more than the limit of {limit:,} bytes")
            parts.append(chunk)
        return b"".join(parts)
    finally:
        body.close()


def _copy(body: ResumableBody, out: IO[bytes], done: int, total: int | None, what: str,
          progress: Progress | None = None) -> int:  # fmt: skip
    """Append the rest of ``body`` to ``out`` piece by piece; the bytes on disk afterwards."""
    while chunk := body.read(_CHUNK):
        done += len(chunk)
        if total is not None and done > total:
            raise NetworkError(f"{what}: more bytes than the {total:,} the server announced")
        out.write(chunk)
        if progress is not None and total is not None:
            progress(done, total)
    out.flush()
    os.fsync(out.fileno())  # the rename that follows must not publish unwritten bytes
    return done


# --- one item ----------------------------------------------------------------------------------


def source_links(item: JSON) -> list[str]:
    """The hrefs of an item's ``rel: source`` links (absolute API URLs through the API)."""
    return [
        str(link["href"])
        for link in item.get("links") or ()
        if isinstance(link, dict) and link.get("rel") == "source" and link.get("href")
    ]


def download_item(
    collection: str,
    item_id: str,
    *,
    assets: Sequence[str] | None = None,
    out_dir: Path = Path(),
    sources: bool = False,
    endpoint: Endpoint = Endpoint(),  # noqa: B008 - frozen, hence a safe default
    policy: RetryPolicy = DEFAULT_POLICY,
    on_item: Callable[[JSON], None] | None = None,
    warn: Warn = _ignore,
) -> list[Path]:
    """Download the assets of one item into ``out_dir/<item id>/``; the files written, in order.

    ``assets`` picks asset keys (default: all). With ``sources`` the item's ``rel: source``
    links are followed and the linked items' assets downloaded too, each into its own folder;
    ``assets`` then picks among all of them (e.g. ``labels`` and ``B02``, ``B03``, ``B04``) and
    a key found in none is a :class:`UsageError`, raised before anything is downloaded.
    ``on_item`` sees each item document before its assets are fetched (for summaries).
    """
    with endpoint.session() as session:
        what = f"item {item_id!r} of collection {collection!r}"
        item, response = get_document(session, item_path(collection, item_id), what=what,
                                      policy=policy)  # fmt: skip
        documents = [(item, response.url)]
        for href in source_links(item) if sources else ():
            url = urljoin(response.url, href)
            source, answer = get_document(
                session, url, what=f"source item {redact(href)}", policy=policy
            )
            documents.append((source, answer.url))
        wanted = _wanted_assets([doc for doc, _ in documents], assets, item_id, sources)
        paths = []
        for document, url in documents:
            if on_item is not None:
                on_item(document)
            folder = out_dir / _folder_name(document, url)
            for key, asset in _assets(document).items():
                if wanted is not None and key not in wanted:
                    continue
                target = asset.get("href")
                if not isinstance(target, str) or not target:
                    raise InputDataError(str(document.get("id")), f"asset {key!r} has no href")
                paths.append(download_file(
                    session, urljoin(url, target), folder,
                    what=f"asset {key!r} of item {document.get('id')!r}", policy=policy, warn=warn,
                ))  # fmt: skip
    return paths


def _assets(document: JSON) -> dict[str, dict[str, Any]]:
    assets = document.get("assets") or {}
    return {str(k): v for k, v in assets.items() if isinstance(v, dict)}


def _wanted_assets(
    documents: list[JSON], assets: Sequence[str] | None, item_id: str, sources: bool
) -> frozenset[str] | None:
    if assets is None:
        return None
    present = [key for document in documents for key in _assets(document)]
    missing = [key for key in assets if key not in present]
    if missing:
        where = f"item {item_id!r}" + (" or its source items" if sources else "")
        raise UsageError(
            f"no asset {missing[0]!r} in {where} (assets: {', '.join(present) or 'none'})"
        )
    return frozenset(assets)


def _folder_name(document: JSON, url: str) -> str:
    name = str(document.get("id") or "")
    if not _is_plain_name(name):
        raise InputDataError(redact(url), f"item id {name!r} cannot name a folder")
    return name


# --- a whole archive ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """What a HEAD of the archive endpoint says about the archive."""

    url: str
    """The final URL after redirects (may carry the key: redact before showing)."""
    name: str
    size: int
    etag: str | None


def archive_head(
    session: requests.Session, collection: str, *, policy: RetryPolicy = DEFAULT_POLICY
) -> RemoteFile:
    """HEAD ``archive/{collection}``, following its redirect to the blob."""
    what = f"archive {collection!r}"
    response = api_request(
        session, f"archive/{quote(collection)}", what=what, policy=policy, method="HEAD",
        missing=f"archive {collection!r} does not exist (it may still be generating)",
    )  # fmt: skip
    return _remote_file(response, what, "archive")


def download_archive(
    collection: str,
    *,
    out_dir: Path = Path(),
    overwrite: bool = False,
    endpoint: Endpoint = Endpoint(),  # noqa: B008
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: Progress | None = None,
    warn: Warn = _ignore,
) -> Path:
    """Download the archive of ``collection`` into ``out_dir``, continuing a partial download
    (see the module docstring); returns the complete file, its size checked against the
    server's. A missing archive is a :class:`NotFoundError` saying it may still be generating."""
    with endpoint.session() as session:
        remote = archive_head(session, collection, policy=policy)
        return _download_resumably(
            session, f"archive/{quote(collection)}", remote, out_dir / remote.name,
            what=f"archive {collection!r}", overwrite=overwrite, policy=policy,
            progress=progress, warn=warn,
            head=lambda: archive_head(session, collection, policy=policy),
        )  # fmt: skip


def url_head(
    session: requests.Session, url: str, *, what: str, policy: RetryPolicy = DEFAULT_POLICY
) -> RemoteFile:
    """HEAD any URL (redirects followed): its final URL, file name, size and ETag."""
    response = api_request(session, url, what=what, policy=policy, method="HEAD")
    return _remote_file(response, what, "file")


def _remote_file(response: requests.Response, what: str, kind: str) -> RemoteFile:
    """The final URL, file name, size and ETag a HEAD answered; a missing size is an error."""
    length = response.headers.get("Content-Length", "")
    if not length.isdigit():
        raise NetworkError(f"{what}: the server did not say the {kind}'s size")
    return RemoteFile(response.url, file_name(response.url), int(length),
                      response.headers.get("ETag"))  # fmt: skip


def download_url(
    url: str,
    target: Path,
    *,
    what: str,
    overwrite: bool = False,
    session: requests.Session | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: Progress | None = None,
    warn: Warn = _ignore,
) -> Path:
    """Download ``url`` (no API key; e.g. a Zenodo file) to ``target`` exactly as
    :func:`download_archive` downloads an archive: ``.partial`` continued with ``Range``, the
    size checked before the rename. ``what`` names the file in messages."""
    with session or requests.Session() as http:
        remote = url_head(http, url, what=what, policy=policy)
        return _download_resumably(
            http, url, remote, target, what=what, overwrite=overwrite, policy=policy,
            progress=progress, warn=warn,
            head=lambda: url_head(http, url, what=what, policy=policy),
        )  # fmt: skip


def _download_resumably(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    target: Path,
    *,
    what: str,
    overwrite: bool,
    policy: RetryPolicy,
    progress: Progress | None,
    warn: Warn,
    head: Callable[[], RemoteFile],
) -> Path:
    """Download ``remote`` to ``target`` (see the module docstring); when the file changes on
    the server during the download, ask ``head`` again and start over, once."""
    try:
        return _download_once(session, url, remote, target, what=what, overwrite=overwrite,
                              policy=policy, progress=progress, warn=warn)  # fmt: skip
    except FileChanged as changed:
        warn(f"{target}: {changed}; starting over")
    return _download_once(session, url, head(), target, what=what, overwrite=True,
                          policy=policy, progress=progress, warn=warn)  # fmt: skip


def _download_once(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    target: Path,
    *,
    what: str,
    overwrite: bool,
    policy: RetryPolicy,
    progress: Progress | None,
    warn: Warn,
) -> Path:
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    state = target.with_name(target.name + STATE_SUFFIX)
    if overwrite:
        for path in (target, partial, state):
            path.unlink(missing_ok=True)
    elif _complete_already(target, partial, remote, warn):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = _resume_point(partial, state, remote, warn)
    if progress is not None:
        progress(start, remote.size)
    if start < remote.size:
        try:
            _fetch_rest(session, url, partial, start, remote,
                        what=what, policy=policy, progress=progress, warn=warn)  # fmt: skip
        except FileChanged:
            partial.unlink(missing_ok=True)
            state.unlink(missing_ok=True)
            raise
    size = partial.stat().st_size
    if size != remote.size:
        raise NetworkError(f"{what}: {size:,} bytes on disk, the server said {remote.size:,}")
    partial.replace(target)
    state.unlink(missing_ok=True)
    return target


def _complete_already(target: Path, partial: Path, remote: RemoteFile, warn: Warn) -> bool:
    """Whether ``target`` is the complete archive; a smaller one becomes the partial file."""
    if not target.exists():
        return False
    size = target.stat().st_size
    if size == remote.size:
        warn(f"{target}: already downloaded ({size:,} bytes, the server's size)")
        return True
    if size > remote.size or partial.exists():
        raise UsageError(
            f"{target} exists with {size:,} bytes but the server's archive has {remote.size:,}: "
            "use --overwrite to download it again"
        )
    warn(f"{target}: {size:,} of {remote.size:,} bytes, left by an interrupted download")
    target.replace(partial)
    return False


def _resume_point(partial: Path, state: Path, remote: RemoteFile, warn: Warn) -> int:
    """Bytes already in ``partial`` that belong to this archive (0: start afresh)."""
    have = partial.stat().st_size if partial.exists() else 0
    recorded = _read_state(state)
    changed = recorded is not None and (
        recorded.get("size") != remote.size
        or bool(recorded.get("etag") and remote.etag and recorded["etag"] != remote.etag)
    )
    if changed or have > remote.size:
        warn(f"{partial}: the archive changed on the server since this download began; "
             "starting over")  # fmt: skip
        partial.unlink()
        have = 0
    if have == 0 or recorded is None or changed:
        state.write_text(json.dumps({"size": remote.size, "etag": remote.etag}))
    if have:
        warn(f"{partial}: continuing at byte {have:,} of {remote.size:,}")
    return have


def _read_state(state: Path) -> dict[str, Any] | None:
    try:
        recorded = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _fetch_rest(
    session: requests.Session,
    url: str,
    partial: Path,
    start: int,
    remote: RemoteFile,
    *,
    what: str,
    policy: RetryPolicy,
    progress: Progress | None,
    warn: Warn,
) -> None:
    """Append bytes ``start``- of the archive to ``partial``."""
    with partial.open("ab") as out:
        # From byte 0 a plain GET: the final size check catches a change since the HEAD.
        body = ResumableBody(
            session, url, what=what, policy=policy, warn=warn, start=start,
            etag=remote.etag if start else None,
        )  # fmt: skip
        try:
            _copy(body, out, start, remote.size, what, progress)
        finally:
            body.close()
