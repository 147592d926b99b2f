"""Items: label items validated against ``schemas/label-item.schema.json``, the label index they
build, and the notebook's selection semantics.

The labels archive is read first, in full, into a :class:`LabelIndex`: for each patch its 43-class
labels (a bit mask), its two flags, its acquisition time and whether the selection keeps it. The
source archive is then joined to it patch by patch. The join key is the patch name, taken from the
label item's single ``rel: source`` link (relative inside an archive, absolute through the API).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastjsonschema
import jsonschema
import numpy as np
from jsonschema.exceptions import ValidationError, best_match

from .. import schemas
from ..errors import InputDataError, UsageError
from ..nomenclature import CLASS_INDEX, label_arrays, patch_of

#: A source link: the last path segment that names an item (``.../<item_id>/stac.json`` inside an
#: archive, ``.../items/<item_id>`` through the API).
_SOURCE_HREF = re.compile(r"(?:^|/)(?P<item>[^/]+?)(?:/stac\.json)?/?$")


@dataclass(frozen=True)
class Selection:
    """Which patches to ingest: the notebook's ``filter_item`` semantics.

    ``classes`` matches when the patch has ANY of them; a flag of None does not filter, True/False
    keeps only patches whose flag has that value. ``limit`` caps the number of samples written.
    """

    classes: tuple[str, ...] = ()
    cloud_and_shadow: bool | None = None
    seasonal_snow: bool | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in CLASS_INDEX]
        if unknown:
            raise UsageError(f"unknown class name {unknown[0]!r} (see `ingest classes`)")
        if self.limit is not None and self.limit < 0:
            raise UsageError(f"--limit must be >= 0, got {self.limit}")

    @property
    def class_mask(self) -> int:
        return sum(1 << CLASS_INDEX[c] for c in self.classes)

    def keeps(self, label_mask: int, cloud: bool, snow: bool) -> bool:
        if self.classes and not label_mask & self.class_mask:
            return False
        if self.cloud_and_shadow is not None and cloud != self.cloud_and_shadow:
            return False
        return self.seasonal_snow is None or snow == self.seasonal_snow


@dataclass(frozen=True)
class LabelEntry:
    """What the store keeps of one label item."""

    patch: str
    label_mask: int
    cloud_and_shadow: bool
    seasonal_snow: bool
    time: int
    """Acquisition time, seconds since the Unix epoch (UTC)."""


@cache
def _schema_validator() -> jsonschema.protocols.Validator:
    """The reference validator (draft 2020-12), used to word the message of an invalid item."""
    schema = schemas.load(schemas.LABEL_ITEM)
    validator: jsonschema.protocols.Validator = jsonschema.validators.validator_for(schema)(schema)
    return validator


@cache
def _fast_validator() -> Callable[[Any], Any]:
    """The same schema compiled to Python by fastjsonschema: 18 µs per item instead of 175 µs
    (590,326 items: 11 s instead of 103 s). It knows drafts up to 7, so the 2020-12 rule
    "exactly one source link" (minContains/maxContains) is counted by :func:`_is_valid`."""
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schemas.load(schemas.LABEL_ITEM))
    return compiled


def _is_valid(document: dict[str, Any]) -> bool:
    try:
        _fast_validator()(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return sum(1 for link in document["links"] if link.get("rel") == "source") == 1


def parse_label_item(document: dict[str, Any], member: str) -> LabelEntry:
    """Validate a label item's ``stac.json`` and reduce it to a :class:`LabelEntry`.

    Errors name ``member`` and say what is wrong in one line (an unknown class name, a flag that is
    neither boolean nor "true"/"false", a missing ``labels``, not exactly one source link, ...).
    """
    if not _is_valid(document):
        error = best_match(_schema_validator().iter_errors(document))
        if error is not None:
            raise InputDataError(member, describe(error))
    props = document["properties"]
    (link,) = (lnk for lnk in document["links"] if lnk.get("rel") == "source")
    match = _SOURCE_HREF.search(link["href"])
    if match is None:
        raise InputDataError(member, f"source link {link['href']!r} names no item")
    return LabelEntry(
        patch=patch_of(match["item"]),
        label_mask=sum(1 << CLASS_INDEX[name] for name in props["labels"]),
        cloud_and_shadow=as_flag(props["cloud_and_shadow"]),
        seasonal_snow=as_flag(props["seasonal_snow"]),
        time=parse_time(props["datetime"], member),
    )


def as_flag(value: bool | str) -> bool:
    """A flag sent as a boolean or as the string "true"/"false" (both occur in MLHub's items)."""
    return value if isinstance(value, bool) else value == "true"


def parse_time(text: str, member: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputDataError(
            member, f"properties.datetime: {text!r} is not an ISO date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def describe(error: ValidationError) -> str:
    """One line saying where and what, without dumping the 43-name enum."""
    where = ".".join(str(p) for p in error.absolute_path) or "item"
    if error.validator == "enum" and error.absolute_path and "labels" in error.absolute_path:
        return f"{where}: unknown class name {error.instance!r}"
    if where.endswith(("cloud_and_shadow", "seasonal_snow")):
        return f"{where}: {error.instance!r} is neither a boolean nor 'true'/'false'"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator in ("contains", "minContains", "maxContains"):
        links: list[Any] = error.instance if isinstance(error.instance, list) else []
        count = sum(1 for link in links if isinstance(link, dict) and link.get("rel") == "source")
        return f"links: expected exactly one 'source' link, found {count}"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"{where}: {message}"


@dataclass
class LabelIndex:
    """Every label item of the labels archive, in archive order, keyed by patch name.

    Kept compact (a dict of row numbers plus flat arrays) because it holds 590,326 entries.
    """

    rows: dict[str, int] = field(default_factory=dict)
    masks: list[int] = field(default_factory=list)
    cloud: bytearray = field(default_factory=bytearray)
    snow: bytearray = field(default_factory=bytearray)
    times: array[int] = field(default_factory=lambda: array("q"))
    selected: bytearray = field(default_factory=bytearray)
    matched: bytearray = field(default_factory=bytearray)

    def add(self, entry: LabelEntry, selection: Selection, member: str) -> None:
        if entry.patch in self.rows:
            raise InputDataError(member, f"a second label item for patch {entry.patch}")
        self.rows[entry.patch] = len(self.masks)
        self.masks.append(entry.label_mask)
        self.cloud.append(entry.cloud_and_shadow)
        self.snow.append(entry.seasonal_snow)
        self.times.append(entry.time)
        self.selected.append(
            selection.keeps(entry.label_mask, entry.cloud_and_shadow, entry.seasonal_snow)
        )
        self.matched.append(False)

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def selected_count(self) -> int:
        return self.selected.count(1)

    def unmatched_selected(self) -> list[str]:
        """Selected patches no source item was joined to, in label archive order."""
        names = list(self.rows)
        return [names[i] for i in range(len(names)) if self.selected[i] and not self.matched[i]]

    def selected_rows(self) -> list[int]:
        return [i for i, s in enumerate(self.selected) if s]

    def patch_names(self, rows: Sequence[int]) -> list[str]:
        names = list(self.rows)
        return [names[r] for r in rows]

    def label_table(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The (n, 43) and (n, 19) boolean label arrays of the given rows."""
        return label_arrays(self.masks[r] for r in rows)

    def flag_table(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(cloud_and_shadow, seasonal_snow) boolean arrays of the given rows."""
        idx = np.asarray(rows, dtype=np.int64)
        cloud = np.frombuffer(self.cloud, dtype=np.uint8)[idx].astype(bool)
        snow = np.frombuffer(self.snow, dtype=np.uint8)[idx].astype(bool)
        return cloud, snow

    def time_table(self, rows: Sequence[int]) -> np.ndarray:
        return np.asarray(self.times, dtype=np.int64)[np.asarray(rows, dtype=np.int64)]
