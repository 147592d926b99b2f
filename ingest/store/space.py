"""Room on disk: what a run will write (before it starts), and a full disk told in one line.

The estimate counts samples, not archive bytes, because the store's size follows the samples
written whatever the archives' compression: per sample, the three S2 band arrays take 160,000
bytes raw and 0.675 of that with the store's codec (README, "Codec"), ``bands_s1`` 115,200 bytes
raw and about 0.85 of that, a reference map about 2 kB; the small arrays a few hundred bytes.
Staging holds S1 patches raw and maps compressed (:mod:`ingest.store.staging`). For all of reBEN
with S1 and maps that is about 115 GB of store and 64 GB of staging (the README's 63 GB). With a
selection the count is the layout's capacity, an upper bound (all 600,000 slots for Zenodo v1.0,
whose labels arrive with the archive), but never more than the S2 archive's size can hold.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..units import human_bytes
from .location import StoreLocation

#: Store bytes per sample of each per-pixel array, and of the small arrays of a sample.
STORE_BYTES = {"s2": 108_000, "bands_s1": 98_000, "reference_map": 2_000}
SMALL_BYTES = 300
#: Staging bytes per sample of each partner array.
STAGING_BYTES = {"bands_s1": 115_200, "reference_map": 2_000}
#: Fewest bytes one patch takes in an S2 archive (Zenodo's v1.0 archive: 66 GB for 590,326 patches,
#: 112 kB each; reBEN's zstd archive about as much), with a margin: an archive of B bytes holds at
#: most B / this many patches.
ARCHIVE_BYTES_PER_PATCH = 80_000
#: Errors of a full file system: no space left, disk quota exceeded.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class Estimate:
    """Bytes a run will write: into the store and into its staging folder."""

    store: int
    staging: int


def estimate(samples: int, *, labels_only: bool, partners: tuple[str, ...]) -> Estimate:
    """What ``samples`` samples with the partner arrays ``partners`` (``bands_s1``,
    ``reference_map``) take in the store and in staging."""
    per_sample = SMALL_BYTES
    if not labels_only:
        per_sample += STORE_BYTES["s2"] + sum(STORE_BYTES[p] for p in partners)
    staging = sum(STAGING_BYTES[p] for p in partners)
    return Estimate(samples * per_sample, samples * staging)


def samples_bound(capacity: int, archive_bytes: int | None) -> int:
    """How many samples to estimate for: the layout's ``capacity`` (the labels known, or its
    upper bound), but no more than an S2 archive of ``archive_bytes`` (when known) can hold — a
    sample of the archive with the full official metadata, or Zenodo's 600,000 slots."""
    if archive_bytes is None:
        return capacity
    return min(capacity, archive_bytes // ARCHIVE_BYTES_PER_PATCH + 1)


def local_size(parts: tuple[str, ...]) -> int | None:
    """Bytes of an archive given as local files or http(s) URLs (a HEAD each, 10 s at most, no
    retries: this is only an estimate); None for the endpoint, a missing file, a URL whose size
    does not come back."""
    if not parts:
        return None
    total = 0
    for part in parts:
        if part.startswith(("http://", "https://")):
            size = _url_size(part)
            if size is None:
                return None
            total += size
        elif "://" in part:
            return None
        else:
            try:
                total += os.stat(os.path.expanduser(part)).st_size
            except OSError:
                return None
    return total


def _url_size(url: str) -> int | None:
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=10)
    except requests.RequestException:
        return None
    length = response.headers.get("Content-Length", "")
    return int(length) if response.ok and length.isdigit() else None


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (where a folder not made yet will be)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(existing_ancestor(path)).free)


def check_room(estimated: Estimate, store: StoreLocation, staging: Path | None) -> None:
    """Refuse (:class:`StoreError`) when a local file system lacks the room ``estimated`` says the
    run needs; the store and the staging folder count together when they share one. A store on
    object storage is not checked (no free space to ask for)."""
    needs: dict[int, tuple[Path, int, list[str]]] = {}
    wanted: list[tuple[Path, int, str]] = []
    if store.is_local and estimated.store:
        wanted.append((Path(store.zarr_url), estimated.store, "store"))
    if staging is not None and estimated.staging:
        wanted.append((staging, estimated.staging, "staging"))
    for path, size, what in wanted:
        device = os.stat(existing_ancestor(path)).st_dev
        first, total, parts = needs.get(device, (path, 0, []))
        needs[device] = (first, total + size, [*parts, f"{human_bytes(size)} {what}"])
    for path, total, parts in needs.values():
        free = free_bytes(path)
        if free < total:
            raise StoreError(
                f"{path}: the run needs about {human_bytes(total)} ({' + '.join(parts)}) but its "
                f"file system has {human_bytes(free)} free: make room, put the staging folder "
                "elsewhere (--staging-dir), or skip this estimate with --no-space-check"
            )


def disk_full(error: OSError, store: StoreLocation, staging: Path | None) -> StoreError | None:
    """The one-line error for a full file system (or quota) under the store or the staging
    folder: which path, the bytes written there, the space left; None for any other error."""
    if error.errno not in FULL_ERRNOS:
        return None
    path = _culprit(error, store, staging)
    written = _bytes_under(path) if path is not None else None
    where = str(path) if path is not None else str(store)
    what = "disk quota exceeded" if error.errno == errno.EDQUOT else "no space left on device"
    free = f", {human_bytes(free_bytes(path))} free" if path is not None else ""
    wrote = f" after writing {human_bytes(written)} there" if written is not None else ""
    return StoreError(f"{where}: {what}{wrote}{free}")


def write_failure(error: OSError, store: StoreLocation, staging: Path | None) -> StoreError:
    """The one-line error for an OS error while writing: a full disk (:func:`disk_full`), or
    what the file system or object store said once its retries were spent."""
    full = disk_full(error, store, staging)
    if full is not None:
        return full
    where = error.filename or store
    reason = error.strerror or str(error) or type(error).__name__
    return StoreError(f"{where}: writing failed: {' '.join(str(reason).split())}")


def _culprit(error: OSError, store: StoreLocation, staging: Path | None) -> Path | None:
    """The folder that filled up: the one the error names, else the fuller of the two (the
    store when they share a file system)."""
    candidates = [p for p in (Path(store.zarr_url) if store.is_local else None, staging) if p]
    named = str(error.filename) if error.filename else ""
    for path in candidates:
        if named.startswith(str(path)):
            return path
    existing = [p for p in candidates if p.exists()]
    return min(existing, key=free_bytes) if existing else None


def _bytes_under(path: Path) -> int:
    """Bytes of the files under ``path`` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total
