"""The official BigEarthNet tables: country, season and train/validation/test split of each patch.

They ship as resources of the ``bigearthnet-common`` wheel (the dataset authors' package), read
with :mod:`importlib.resources` without importing its modules:

- ``train.csv.bz2``, ``val.csv.bz2``, ``test.csv.bz2``: one patch name per line, no header, CRLF
  line endings (269,695 / 123,723 / 125,866 names);
- ``s1_s2_name_country_season.csv.bz2``: a header ``s1_name,s2_name,country,season``, then one
  row per patch (590,326), LF line endings.

Splits are named ``train``, ``validation`` and ``test`` (the wheel's file says ``val``; reBEN and
the store contract say ``validation``); a patch in no split (the 70,987 snowy or cloudy and the 55
19-class-less ones) gets ``""``, as does a patch missing from the country/season table.

Reading the wheel's tables costs ≈ 2.9 s of CPU (1.8 s of bz2, then parsing) and a transient
≈ 300 MiB, so the result (one sorted array of names plus a small code per column, ≈ 21 MB; dicts of
590,326 str keys would hold ≈ 150 MB for the life of the process) is kept in a cache file,
``tables-<format>-<bigearthnet-common version>.npz`` in ``$INGEST_CACHE_DIR`` (default
``$XDG_CACHE_HOME/bigearthnet-ingest``, else ``~/.cache/bigearthnet-ingest``), which loads in
milliseconds. The cache is only ever an optimisation: a missing, stale or damaged file is rebuilt
from the wheel, and a cache directory that cannot be written is left alone. Every lookup is a
vectorised binary search. :func:`preload` loads the tables in a background thread, so that an
ingest overlaps it with its labels phase instead of paying it at the end.
"""

from __future__ import annotations

import bz2
import functools
import importlib.metadata
import importlib.resources
import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

import numpy as np

__all__ = ["SPLIT_FILES", "official_flags", "official_s1", "official_tables", "preload"]

_PACKAGE: Final = "bigearthnet_common"
#: Split name -> the wheel's resource listing its patches.
SPLIT_FILES: Final = {
    "train": "train.csv.bz2",
    "validation": "val.csv.bz2",
    "test": "test.csv.bz2",
}
_COUNTRY_SEASON: Final = "s1_s2_name_country_season.csv.bz2"
_HEADER: Final = "s1_name,s2_name,country,season"
_SNOW: Final = "patches_with_seasonal_snow.csv.bz2"
_CLOUD: Final = "patches_with_cloud_and_shadow.csv.bz2"
_CACHE_FORMAT: Final = 3  # bump when _Tables changes


@dataclass(frozen=True)
class _Tables:
    """Every patch of the country/season table, sorted by name, with its three values as codes."""

    names: np.ndarray
    """Sorted patch names, fixed-width bytes."""
    country: np.ndarray
    """uint8 index into ``countries`` per name; likewise ``season`` and ``split``."""
    season: np.ndarray
    split: np.ndarray
    countries: np.ndarray
    """The distinct values, object arrays of str; ``splits[0]`` is ``""``."""
    seasons: np.ndarray
    splits: np.ndarray
    flags: np.ndarray
    """uint8 per name: bit 0 seasonal snow, bit 1 cloud or shadow."""
    s1: np.ndarray
    """The paired Sentinel-1 patch name of each name, fixed-width bytes."""


def official_tables(patch_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """``country``, ``season`` and ``split`` of each patch, as object arrays of str in the order
    of ``patch_ids`` ("" where the tables have no entry). Fast for any number of ids once the
    tables are loaded (first call in a process)."""
    if len(patch_ids) == 0:
        return {key: np.array([], dtype=object) for key in ("country", "season", "split")}
    tables = _tables()
    where, found = _lookup(tables.names, patch_ids)
    return {
        "country": _column(tables.countries, tables.country[where], found),
        "season": _column(tables.seasons, tables.season[where], found),
        "split": _column(tables.splits, tables.split[where], found),
    }


def official_flags(patch_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(cloud_and_shadow, seasonal_snow) of each patch from the official lists (False for a name
    the tables do not know)."""
    if len(patch_ids) == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    tables = _tables()
    where, found = _lookup(tables.names, patch_ids)
    flags = np.where(found, tables.flags[where], 0)
    return (flags & 2).astype(bool), (flags & 1).astype(bool)


def official_s1(patch_ids: Sequence[str]) -> list[str]:
    """The official Sentinel-1 partner of each v1 patch ("" for a name the table does not know)."""
    if len(patch_ids) == 0:
        return []
    tables = _tables()
    where, found = _lookup(tables.names, patch_ids)
    return [s.decode() if ok else "" for s, ok in zip(tables.s1[where], found, strict=True)]


def _lookup(names: np.ndarray, patch_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Where each id sits in the sorted ``names``, and whether it is there. The ids come from
    archives: one longer than the names (which would widen the whole table to its length for
    the search: 8 MB of JSON asked for terabytes) or not encodable is never found."""
    width = names.dtype.itemsize
    encoded = [p.encode("utf-8", "surrogatepass") for p in patch_ids]
    fits = np.array([len(e) <= width for e in encoded], dtype=bool)
    wanted = np.array([e if len(e) <= width else b"" for e in encoded], dtype=names.dtype)
    where = np.minimum(np.searchsorted(names, wanted), len(names) - 1)
    return where, (names[where] == wanted) & fits


def _column(values: np.ndarray, codes: np.ndarray, found: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.where(found, values[codes], "").astype(object)
    return out


_LOCK = threading.Lock()


def preload() -> None:
    """Start reading the tables in a daemon thread; the first lookup waits for it."""
    threading.Thread(target=_tables, name="official-tables", daemon=True).start()


def _tables() -> _Tables:
    with _LOCK:  # one reading, even when a lookup comes while preload() is still reading
        return _read_tables()


@functools.cache
def _read_tables() -> _Tables:
    path = cache_file()
    cached = _load(path)
    if cached is not None:
        return cached
    tables = _parse_tables()
    _save(tables, path)
    return tables


def cache_file() -> Path:
    """Where the parsed tables are cached, for this version of bigearthnet-common."""
    folder = os.environ.get("INGEST_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "bigearthnet-ingest"
    )
    version = importlib.metadata.version("bigearthnet-common")
    return Path(folder, f"tables-{_CACHE_FORMAT}-{version}.npz")


def _load(path: Path) -> _Tables | None:
    """The cached tables, or None when the file is missing, damaged or not of this format."""
    try:
        # Our own handle: np.load leaks the one it opens when the file is not a valid zip.
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
            arrays = {f.name: npz[f.name] for f in fields(_Tables)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    names = arrays["names"]
    if names.dtype.kind != "S" or names.ndim != 1 or len(names) == 0:
        return None
    if any(arrays[c].shape != names.shape for c in ("country", "season", "split", "flags", "s1")):
        return None
    for codes, values in (("country", "countries"), ("season", "seasons"), ("split", "splits")):
        if arrays[codes].dtype != np.uint8 or int(arrays[codes].max()) >= len(arrays[values]):
            return None
    for values in ("countries", "seasons", "splits"):
        arrays[values] = arrays[values].astype(object)
    return _Tables(**arrays)


def _save(tables: _Tables, path: Path) -> None:
    """Write the cache atomically (a temporary file renamed into place); failing is harmless."""
    arrays = {f.name: getattr(tables, f.name) for f in fields(_Tables)}
    for values in ("countries", "seasons", "splits"):
        arrays[values] = arrays[values].astype(str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)


def _parse_tables() -> _Tables:
    text = _text(_COUNTRY_SEASON)
    header, _, body = text.partition("\n")
    if header != _HEADER:
        raise ValueError(f"{_COUNTRY_SEASON}: unexpected header {header[:80]!r}")
    # One C-level split of the whole table, then every 4th field: 590,326 str.split calls on
    # lines cost ~1 s more.
    fields = body.replace("\n", ",").split(",")
    if len(fields) % 4:
        raise ValueError(f"{_COUNTRY_SEASON}: a row does not have 4 fields")
    names = np.array(fields[1::4], dtype="S")
    order = np.argsort(names, kind="stable")
    names = names[order]
    countries, country = _codes(fields[2::4])
    seasons, season = _codes(fields[3::4])
    split = np.zeros(len(names), dtype=np.uint8)
    for code, resource in enumerate(SPLIT_FILES.values(), start=1):
        members = np.array(_text(resource).split(), dtype="S")
        where = np.minimum(np.searchsorted(names, members), len(names) - 1)
        split[where[names[where] == members]] = code
    return _Tables(
        names=names,
        country=country[order],
        season=season[order],
        split=split,
        countries=countries,
        seasons=seasons,
        splits=np.array(["", *SPLIT_FILES], dtype=object),
        flags=_flags(names),
        s1=np.array(fields[0::4], dtype="S")[order],
    )


def _flags(names: np.ndarray) -> np.ndarray:
    """uint8 per name: bit 0 seasonal snow, bit 1 cloud or shadow (the official lists)."""
    flags = np.zeros(len(names), dtype=np.uint8)
    for bit, resource in ((1, _SNOW), (2, _CLOUD)):
        members = np.array(_text(resource).split(), dtype="S")
        where = np.minimum(np.searchsorted(names, members), len(names) - 1)
        flags[where[names[where] == members]] |= bit
    return flags


def _codes(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (object array) and the uint8 code of each value."""
    distinct = sorted(set(values))
    code = {value: i for i, value in enumerate(distinct)}
    codes = np.fromiter((code[v] for v in values), dtype=np.uint8, count=len(values))
    return np.array(distinct, dtype=object), codes


def _text(resource: str) -> str:
    """One of the wheel's bz2 text tables, decoded, surrounding whitespace stripped."""
    data = bz2.decompress((importlib.resources.files(_PACKAGE) / resource).read_bytes())
    return data.decode("ascii").strip()
