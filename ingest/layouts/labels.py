"""Labels of a release, whatever layout they come from: the selection, one entry per patch, and the
index the source archive is joined to.

A release labels each patch with a set of classes of its nomenclature (43 classes for v1, 19 for
v2), two flags, an acquisition time and, where known, a split. The :class:`LabelIndex` holds them
for every patch of the release (590,326 or 549,488), compactly: a dict of row numbers plus flat
arrays. It is filled before the source archive is read (MLHub's labels archive, reBEN's metadata)
or as the source archive delivers its patches (Zenodo v1, whose labels sit beside the bands).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, UsageError
from ..nomenclature import CLASSES_19, CLASSES_43, label_arrays

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Selection:
    """Which patches to ingest: the notebook's ``filter_item`` semantics, plus the split.

    ``classes`` matches when the patch has ANY of them (names of the release's nomenclature: 43
    classes for v1, 19 for v2); a flag of None does not filter, True/False keeps only patches whose
    flag has that value; ``split`` keeps one of ``train``, ``validation``, ``test``. ``limit`` caps
    the number of samples written.
    """

    classes: tuple[str, ...] = ()
    cloud_and_shadow: bool | None = None
    seasonal_snow: bool | None = None
    limit: int | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        known = set(CLASSES_43) | set(CLASSES_19)
        unknown = [c for c in self.classes if c not in known]
        if unknown:
            raise UsageError(f"unknown class name {unknown[0]!r} (see `ingest classes`)")
        if self.limit is not None and self.limit < 0:
            raise UsageError(f"--limit must be >= 0, got {self.limit}")
        if self.split is not None and self.split not in SPLITS:
            raise UsageError(f"--split {self.split!r}: expected train, validation or test")

    def mask_in(self, classes: tuple[str, ...]) -> int:
        """The selected classes as a bit mask over the nomenclature ``classes``; a name of the
        other nomenclature is a usage error naming it."""
        index = {name: i for i, name in enumerate(classes)}
        unknown = [c for c in self.classes if c not in index]
        if unknown:
            which = "43-class (v1)" if classes == CLASSES_43 else "19-class (v2)"
            raise UsageError(
                f"class {unknown[0]!r} is not in this release's {which} nomenclature "
                "(see `ingest classes`)"
            )
        mask = 0
        for name in self.classes:  # OR, not a sum: a class named twice is one bit
            mask |= 1 << index[name]
        return mask

    def keeps(
        self,
        label_mask: int,
        cloud: bool,
        snow: bool,
        class_mask: int | None = None,
        split: str | None = None,
    ) -> bool:
        """Whether a patch is selected; ``class_mask``: :meth:`mask_in` of the release's
        nomenclature (default the 43 classes)."""
        mask = self.mask_in(CLASSES_43) if class_mask is None else class_mask
        if self.classes and not label_mask & mask:
            return False
        if self.cloud_and_shadow is not None and cloud != self.cloud_and_shadow:
            return False
        if self.seasonal_snow is not None and snow != self.seasonal_snow:
            return False
        return self.split is None or split == self.split


@dataclass(frozen=True)
class LabelEntry:
    """What the store keeps of one patch's labels."""

    patch: str
    label_mask: int
    """Bit i set when the patch has class i of the release's nomenclature."""
    cloud_and_shadow: bool
    seasonal_snow: bool
    time: int
    """Acquisition time, seconds since the Unix epoch (UTC)."""
    split: str | None = None
    """Known up front in v2; in v1 looked up only when the selection asks for a split."""


@dataclass
class LabelIndex:
    """Every patch's labels, in the order they came, keyed by patch name."""

    classes: tuple[str, ...] = CLASSES_43
    """The nomenclature of ``masks``."""
    selection: Selection = field(default_factory=Selection)
    rows: dict[str, int] = field(default_factory=dict)
    masks: array[int] = field(default_factory=lambda: array("Q"))
    cloud: bytearray = field(default_factory=bytearray)
    snow: bytearray = field(default_factory=bytearray)
    times: array[int] = field(default_factory=lambda: array("q"))
    selected: bytearray = field(default_factory=bytearray)
    matched: bytearray = field(default_factory=bytearray)
    class_mask: int = 0

    def __post_init__(self) -> None:
        self.class_mask = self.selection.mask_in(self.classes)

    def add(self, entry: LabelEntry, member: str) -> int:
        """Add one patch; its row. A patch given twice is an error naming ``member``."""
        if entry.patch in self.rows:
            raise InputDataError(member, f"a second label entry for patch {entry.patch}")
        row = len(self.masks)
        self.rows[entry.patch] = row
        self.masks.append(entry.label_mask)
        self.cloud.append(entry.cloud_and_shadow)
        self.snow.append(entry.seasonal_snow)
        self.times.append(entry.time)
        self.selected.append(
            self.selection.keeps(
                entry.label_mask, entry.cloud_and_shadow, entry.seasonal_snow,
                self.class_mask, entry.split,
            )
        )  # fmt: skip
        self.matched.append(False)
        return row

    def extend(
        self,
        patches: list[str],
        masks: np.ndarray,
        cloud: np.ndarray,
        snow: np.ndarray,
        times: np.ndarray,
        splits: np.ndarray,
    ) -> None:
        """Add many patches at once (no Python loop but the dict); ``splits``: object array."""
        start = len(self.masks)
        self.rows.update(zip(patches, range(start, start + len(patches)), strict=True))
        if len(self.rows) != start + len(patches):
            seen = set(self.rows)
            twice = next(p for p in patches if p in seen and patches.count(p) > 1)
            raise InputDataError(twice, f"a second label entry for patch {twice}")
        keep = np.ones(len(patches), dtype=bool)
        sel = self.selection
        if sel.classes:
            keep &= (masks.astype(np.uint64) & np.uint64(self.class_mask)) != 0
        if sel.cloud_and_shadow is not None:
            keep &= cloud == sel.cloud_and_shadow
        if sel.seasonal_snow is not None:
            keep &= snow == sel.seasonal_snow
        if sel.split is not None:
            keep &= splits == sel.split
        self.masks.frombytes(masks.astype(np.uint64).tobytes())
        self.cloud.extend(cloud.astype(np.uint8).tobytes())
        self.snow.extend(snow.astype(np.uint8).tobytes())
        self.times.frombytes(times.astype(np.int64).tobytes())
        self.selected.extend(keep.astype(np.uint8).tobytes())
        self.matched.extend(bytes(len(patches)))

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def selected_count(self) -> int:
        return self.selected.count(1)

    def unmatched_selected(self) -> list[str]:
        """Selected patches no source item was joined to, in index order."""
        sel = np.frombuffer(self.selected, dtype=np.uint8).astype(bool)
        unmatched = sel & ~np.frombuffer(self.matched, dtype=np.uint8).astype(bool)
        return self.patch_names(np.flatnonzero(unmatched).tolist())

    def unmatched_count(self) -> int:
        sel = np.frombuffer(self.selected, dtype=np.uint8).astype(bool)
        return int((sel & ~np.frombuffer(self.matched, dtype=np.uint8).astype(bool)).sum())

    def selected_rows(self) -> list[int]:
        return np.flatnonzero(np.frombuffer(self.selected, dtype=np.uint8)).tolist()

    def patch_names(self, rows: Sequence[int]) -> list[str]:
        if not rows:
            return []
        names = list(self.rows)
        return [names[r] for r in rows]

    def label_table(self, rows: Sequence[int]) -> tuple[np.ndarray | None, np.ndarray]:
        """The (n, 43) labels (None in a 19-class release) and (n, 19) labels of ``rows``."""
        if self.classes == CLASSES_43:
            return label_arrays(self.masks[r] for r in rows)
        masks = np.asarray(self.masks, dtype=np.uint64)[np.asarray(rows, dtype=np.int64)]
        bits = (masks[:, None] >> np.arange(len(CLASSES_19), dtype=np.uint64)) & np.uint64(1)
        return None, bits.astype(bool)

    def flag_table(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(cloud_and_shadow, seasonal_snow) boolean arrays of the given rows."""
        idx = np.asarray(rows, dtype=np.int64)
        cloud = np.frombuffer(self.cloud, dtype=np.uint8)[idx].astype(bool)
        snow = np.frombuffer(self.snow, dtype=np.uint8)[idx].astype(bool)
        return cloud, snow

    def time_table(self, rows: Sequence[int]) -> np.ndarray:
        return np.asarray(self.times, dtype=np.int64)[np.asarray(rows, dtype=np.int64)]
