"""The ``mlhub`` layout: Radiant MLHub's two collection archives (or its items API).

The labels archive ``bigearthnet_v1_labels`` is read first, in full, into the label index (label
items validated by :mod:`ingest.layouts.mlhub`); the source archive ``bigearthnet_v1_source`` is
then joined to it item by item through the label item's ``rel: source`` link. Country, season and
split come from the official tables of ``bigearthnet-common``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..archive.members import (
    COLLECTION_JSON,
    ArchiveItem,
    BadItem,
    CollectionDoc,
    Place,
    parse_item_json,
)
from ..errors import InputDataError, UsageError
from ..nomenclature import CLASSES_43, LABELS_COLLECTION, SOURCE_COLLECTION, patch_of
from ..sources.inputs import InputSpec
from .base import Inputs, Sink
from .feeds import Feed, open_archive_feed
from .labels import LabelIndex
from .mlhub import parse_label_item
from .partners import Partner
from .tables import official_tables


@dataclass(frozen=True)
class CollectionRule:
    """An MLHub collection archive: ``{collection}/collection.json`` and
    ``{collection}/{item_id}/{file}``."""

    top: str

    def place(self, parts: tuple[str, ...]) -> Place | str:
        if len(parts) == 1:
            return COLLECTION_JSON if parts[0] == "collection.json" else "not part of any item"
        if len(parts) > 2 or parts[0] == "_common":
            return "not an item file"
        return Place(parts[0], parts[1], f"{self.top}/{parts[0]}")


def split_of(patch: str) -> str:
    """A v1 patch's official split ("" for none)."""
    return str(official_tables([patch])["split"][0])


class MlhubLayout:
    name = "mlhub"
    dataset = "bigearthnet-v1"

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.labels_collection = (
            inputs.labels.collection if inputs.labels and inputs.labels.collection
            else LABELS_COLLECTION
        )  # fmt: skip
        self.source_collection = inputs.s2.collection or SOURCE_COLLECTION

    def _labels_feed(self, sink: Sink) -> AbstractContextManager[Feed]:
        i = self.inputs
        if i.items_api is not None:
            return i.items_api.labels_feed()
        spec = i.labels or InputSpec((), "labels", collection=self.labels_collection)
        return open_archive_feed(spec, CollectionRule(self.labels_collection),
                                 endpoint=i.endpoint, policy=i.policy, warn=i.warn,
                                 ignored=sink.ignored_members)  # fmt: skip

    def read_labels(self, sink: Sink) -> LabelIndex:
        index = LabelIndex(CLASSES_43, self.inputs.selection)
        wants_split = self.inputs.selection.split is not None
        with self._labels_feed(sink) as feed:
            sink.phase(self.labels_collection, feed.meter)
            for obj in feed.items():
                if isinstance(obj, CollectionDoc):
                    sink.add_collection("labels", obj.document)
                    continue
                sink.advance()
                if isinstance(obj, BadItem):
                    sink.fail_or_skip(obj.error, obj.item_id)
                    continue
                member = obj.member("stac.json")
                try:
                    entry = parse_label_item(parse_item_json(obj), member)
                    if wants_split:
                        entry = replace(entry, split=split_of(entry.patch))
                    index.add(entry, member)
                except InputDataError as error:
                    sink.fail_or_skip(error, obj.item_id)
            sink.add_sources(feed.records())
        return index

    @property
    def source_spec(self) -> InputSpec | None:
        if self.inputs.items_api is not None:
            return None
        return replace(self.inputs.s2, collection=self.source_collection)  # recorded with it

    def source_feed(self, index: LabelIndex, sink: Sink) -> AbstractContextManager[Feed]:
        i = self.inputs
        spec = self.source_spec
        if spec is None:
            assert i.items_api is not None
            return i.items_api.source_feed(index)
        return open_archive_feed(spec, CollectionRule(self.source_collection),
                                 endpoint=i.endpoint, policy=i.policy, warn=i.warn,
                                 ignored=sink.ignored_members,
                                 reader=sink.reader(spec))  # fmt: skip

    def join(self, item: ArchiveItem, index: LabelIndex) -> tuple[str, int | None]:
        patch = patch_of(item.item_id)
        row = index.rows.get(patch)
        if row is not None and index.selected[row]:
            parse_item_json(item)  # a source item must have its stac.json
        return patch, row

    def capacity(self, index: LabelIndex) -> int:
        return index.selected_count

    def coordinates(
        self, index: LabelIndex, rows: list[int], patch_ids: list[str]
    ) -> dict[str, np.ndarray]:
        return official_tables(patch_ids)

    def partners(self) -> tuple[Partner, ...]:
        if self.inputs.s1 is not None or self.inputs.reference_maps is not None:
            raise UsageError("MLHub's collections have no Sentinel-1 or reference maps: use the "
                             "Zenodo v1.0 archives for S1")  # fmt: skip
        return ()

    def title(self, collections: dict[str, Any]) -> dict[str, Any]:
        doc = collections.get("s2") or collections.get("labels") or {}
        return {
            "title": doc.get("title") or doc.get("description") or "BigEarthNet v1.0",
            "license": doc.get("license"),
            "citation": doc.get("sci:citation"),
        }
