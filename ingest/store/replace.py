"""An existing store: what it is, what to do with it, and ``--overwrite`` that never destroys first.

Without ``--overwrite`` or ``--resume`` an existing store is refused (exit 5) with what it is (a
complete store, an unfinished one that ``--resume`` continues, something that is not a store) and
what to do. With ``--overwrite``:

- a **local** store is written beside the old one (``STORE.ingest-replacement``) and swapped in
  by two renames once it is complete; until then the old store is untouched, and a run that fails
  removes its unfinished replacement. The file system needs room for both meanwhile.
- on **object storage** there is no rename of a whole store: every input is first opened and its
  first bytes read (the S2 archive's layout recognised, the labels or metadata read whole), and
  only then is the old store deleted. What remains at risk is what shows only later in the
  stream: an archive damaged or cut short past its first bytes, an md5 mismatch (known at the last
  byte), a bad item. The new, unfinished store is then resumable (``--resume``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import zarr

from ..errors import IngestError, StoreError, caused_by_interrupt
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..sources.inputs import InputSpec, open_input
from .location import StoreLocation
from .zarrstore import journal

REPLACEMENT_SUFFIX = ".ingest-replacement"
OLD_SUFFIX = ".ingest-old"


def describe_existing(location: StoreLocation) -> str:
    """What is at ``location`` and what the user can do about it (for an existing path)."""
    if not location.exists("zarr.json"):
        return f"{location} exists and is not a Zarr store: refusing to touch it"
    try:
        attrs = dict(location.open_group(mode="r", use_consolidated=False).attrs)
    except (OSError, ValueError, zarr.errors.GroupNotFoundError) as exc:
        return f"{location} exists and is not a readable Zarr store ({exc}): refusing to touch it"
    if attrs.get("complete") is True:
        return f"{location} already exists and is complete: use --overwrite to replace it"
    if not isinstance(attrs.get("options"), dict):
        return (
            f"{location} already exists, unfinished, and was not started by `ingest run`: "
            "use --overwrite to replace it"
        )
    shards = len(journal(location))
    started = attrs.get("created", "?")
    return (
        f"{location} already exists, unfinished ({shards} shard(s) written by a run started "
        f"{started}): continue it with --resume and that run's options, or start over with "
        "--overwrite"
    )


def refuse_existing(location: StoreLocation, *, overwrite: bool) -> None:
    """An existing store without ``overwrite`` is a :class:`StoreError` saying what to do; with
    ``overwrite``, something that is not a Zarr store is refused all the same."""
    if not location.exists():
        return
    if not overwrite or not location.exists("zarr.json"):
        raise StoreError(describe_existing(location))


def probe_inputs(specs: Iterable[InputSpec], *, policy: RetryPolicy, endpoint: Endpoint) -> None:
    """Open every part of every input and read its first bytes: a missing file, a dead URL, a
    refused key is an error now, before anything is deleted."""
    for spec in specs:
        for part in spec.parts or (None,):
            single = InputSpec((part,) if part is not None else (), spec.role,
                               collection=spec.collection)  # fmt: skip
            with open_input(single, policy=policy, warn=_ignore, endpoint=endpoint) as stream:
                stream.read(1)


def _ignore(message: str) -> None:
    return None


@dataclass
class Target:
    """Where a run writes (``writing``) the store that ends at ``final``."""

    final: StoreLocation
    writing: StoreLocation
    deleted_old: bool = False

    @property
    def replacing(self) -> bool:
        """A local store written beside the old one, swapped in by :meth:`commit`."""
        return self.writing != self.final

    def commit(self) -> None:
        """Put the finished replacement in place of the old store (two renames), then delete the
        old one."""
        if not self.replacing:
            return
        final, new = Path(self.final.zarr_url), Path(self.writing.zarr_url)
        old = final.with_name(final.name + OLD_SUFFIX)
        _remove(old)
        os.rename(final, old)
        os.rename(new, final)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """After a failure: remove an unfinished replacement (the old store stays)."""
        if self.replacing:
            _remove(Path(self.writing.zarr_url))


def plan(
    final: StoreLocation,
    *,
    overwrite: bool,
    before_delete: Callable[[], None],
) -> Target:
    """Where to write. A new store: at ``final``. ``overwrite`` of a local store: beside it. Of a
    store on object storage: at ``final``, after ``before_delete`` (the inputs' check) passed and
    the old store was deleted."""
    if not overwrite or not final.exists():
        return Target(final, final)
    if final.is_local:
        path = Path(final.zarr_url.rstrip("/"))
        replacement = path.with_name(path.name + REPLACEMENT_SUFFIX)
        _remove(replacement)  # left by a killed --overwrite run
        return Target(final, StoreLocation(str(replacement)))
    before_delete()
    final.delete()
    return Target(final, final, deleted_old=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def annotate(error: BaseException, note: str) -> BaseException:
    """``error`` with ``note`` added (the CLI prints an error's notes on its line)."""
    if isinstance(error, IngestError | OSError) or caused_by_interrupt(error):
        error.add_note(note)
    return error
