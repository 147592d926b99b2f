"""The ``zenodo-v1`` layout: ``BigEarthNet-S2-v1.0.tar.gz`` as published on Zenodo.

``BigEarthNet-v1.0/<patch>/<patch>_B01.tif … _B8A.tif`` and ``<patch>_labels_metadata.json`` in
the same folder (directory entries included; the members of a patch are contiguous, their order
inside the patch is not guaranteed). Each patch brings its own labels: the JSON's 43-class
``labels`` and its ``acquisition_date``; the flags come from the official snow and cloud lists,
country, season and split from the official tables (``bigearthnet-common``). Nothing is read
before the archive, so a patch's labels join the index as the patch arrives.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from ..archive.members import ArchiveItem, parse_json
from ..errors import InputDataError, UsageError
from ..nomenclature import CLASS_INDEX, CLASSES_43
from ..sources.inputs import InputSpec
from .base import Inputs, Sink
from .feeds import Feed, open_archive_feed
from .labels import LabelEntry, LabelIndex
from .mlhub_layout import split_of
from .partners import Partner, s1_v1
from .rules import LABELS_FILE, PatchFolderRule
from .tables import official_flags, official_tables

TOP: Final = "BigEarthNet-v1.0"
#: More than the 590,326 patches of v1.0: the store is sized to this and trimmed at the end.
CAPACITY: Final = 600_000


def parse_labels_json(data: bytes, member: str) -> tuple[int, int]:
    """(43-class mask, acquisition time) of a v1 ``labels_metadata.json``."""
    document = parse_json(data, member)
    labels = document.get("labels")
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise InputDataError(member, "labels: expected a list of class names")
    unknown = [n for n in labels if n not in CLASS_INDEX]
    if unknown:
        raise InputDataError(member, f"labels: unknown class name {unknown[0]!r}")
    if len(set(labels)) != len(labels):  # summed twice, a bit would carry into another class
        twice = next(n for n in labels if labels.count(n) > 1)
        raise InputDataError(member, f"labels: class name {twice!r} appears twice")
    when = document.get("acquisition_date")
    try:
        moment = datetime.strptime(str(when), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise InputDataError(
            member, f"acquisition_date: {when!r} is not 'YYYY-MM-DD hh:mm:ss'"
        ) from None
    return sum(1 << CLASS_INDEX[n] for n in labels), int(moment.timestamp())


class ZenodoV1:
    name = "zenodo-v1"
    dataset = "bigearthnet-v1"
    #: Each patch's labels are in its folder of the S2 archive: ``--labels-only`` reads them there.
    labels_in_source = True

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    def read_labels(self, sink: Sink) -> LabelIndex:
        return LabelIndex(CLASSES_43, self.inputs.selection)

    @property
    def source_spec(self) -> InputSpec:
        return self.inputs.s2

    def source_feed(self, index: LabelIndex, sink: Sink) -> AbstractContextManager[Feed]:
        i = self.inputs
        return open_archive_feed(i.s2, PatchFolderRule(TOP), endpoint=i.endpoint,
                                 policy=i.policy, warn=i.warn, ignored=sink.ignored_members,
                                 reader=sink.reader(i.s2))  # fmt: skip

    def join(self, item: ArchiveItem, index: LabelIndex) -> tuple[str, int | None]:
        patch = item.item_id
        data = item.files.get(LABELS_FILE)
        if data is None:
            raise InputDataError(item.folder, f"patch folder has no {patch}_{LABELS_FILE}")
        mask, time = parse_labels_json(data, item.member(LABELS_FILE))
        (cloud,), (snow,) = official_flags([patch])
        split = split_of(patch) if self.inputs.selection.split is not None else None
        entry = LabelEntry(patch, mask, bool(cloud), bool(snow), time, split)
        return patch, index.add(entry, item.folder)

    def capacity(self, index: LabelIndex) -> int:
        limit = self.inputs.selection.limit
        return CAPACITY if limit is None else min(limit, CAPACITY)

    def coordinates(
        self, index: LabelIndex, rows: list[int], patch_ids: list[str]
    ) -> dict[str, np.ndarray]:
        return official_tables(patch_ids)

    def partners(self) -> tuple[Partner, ...]:
        if self.inputs.reference_maps is not None:
            raise UsageError("reference maps belong to BigEarthNet v2.0 (reBEN), not v1.0")
        return () if self.inputs.s1 is None else (s1_v1(self.inputs.s1),)

    def title(self, collections: dict[str, Any]) -> dict[str, Any]:
        return {
            "title": "BigEarthNet v1.0",
            "license": "CDLA-Permissive-1.0",
            "citation": _CITATION_V1,
        }


_CITATION_V1: Final = (
    "G. Sumbul, M. Charfuelan, B. Demir, V. Markl, BigEarthNet: A Large-Scale Benchmark Archive "
    "for Remote Sensing Image Understanding, IEEE IGARSS 2019."
)
