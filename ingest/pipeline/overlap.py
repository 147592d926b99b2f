"""The S2 pass while the partner streams stage, and what starting it again takes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..archive.members import EXAMPLES as EXAMPLES_IGNORED
from ..archive.members import IgnoredMembers
from ..layouts.base import Layout
from ..layouts.labels import LabelIndex
from ..layouts.pairing import Pairing
from ..layouts.partner_stream import PartnerStreams
from ..store import zarrstore as store
from .s2_pass import ingest_source
from .state import RunState


def ingest_overlapped(
    state: RunState,
    layout: Layout,
    index: LabelIndex,
    done: dict[int, store.ShardRecord],
    streams: PartnerStreams,
) -> tuple[store.SampleTable, bool]:
    """The S2 pass while the partner ``streams`` stage (:mod:`ingest.layouts.pairing`). Should a
    partner mismatch void it (``--on-error skip``: the sample was numbered yet is skipped), the
    S2 pass runs again once the partners are all staged, checking each sample before numbering
    it, as a resumed run keeping the shards journalled so far."""
    mark = _Mark.of(state, index)
    pairing = Pairing(streams.streams, skip=state.config.on_error == "skip")
    table, read_to_end = ingest_source(state, layout, index, done, pairing, streams)
    if pairing.mismatch is not None:
        mark.restore(state, index)
        location = state.config.location
        table, read_to_end = ingest_source(state, layout, index, store.journal(location))
        shards = -(-len(table) // state.config.shard_size)
        left = sorted({i for i in pairing.s2_shards if i >= shards})
        store.drop_shards(location, store.S2_ARRAYS, left)
    mark.add_partners(state, streams)
    return table, read_to_end


@dataclass(frozen=True)
class _Mark:
    """What the S2 pass changes in the run and the index, as it was before: to start it again,
    and to put the partner streams' reports where a serial run had them (before the S2 pass's).
    The S2 pass counts its ignored members apart (``state.ignored_members`` is a fresh one)."""

    skipped: int
    sources: int
    ignored: Counter[str]
    without_labels: int
    examples: dict[str, list[str]]
    collection: dict[str, Any]
    members: IgnoredMembers
    rows: int
    matched: bytes

    @classmethod
    def of(cls, state: RunState, index: LabelIndex) -> _Mark:
        examples = {k: list(v) for k, v in state.examples.items()}
        mark = cls(len(state.skipped), len(state.sources), Counter(state.ignored),
                   state.source_without_labels, examples, dict(state.collection),
                   state.ignored_members, len(index), bytes(index.matched))  # fmt: skip
        state.ignored_members = IgnoredMembers()
        return mark

    def restore(self, state: RunState, index: LabelIndex) -> None:
        del state.skipped[self.skipped :], state.sources[self.sources :]
        state.ignored = Counter(self.ignored)
        state.source_without_labels = self.without_labels
        state.examples = {k: list(v) for k, v in self.examples.items()}
        state.collection = dict(self.collection)
        state.ignored_members = IgnoredMembers()
        if len(index) > self.rows:  # labels that came with the S2 items (Zenodo v1)
            index.rows = {k: v for k, v in index.rows.items() if v < self.rows}
            for column in (index.masks, index.cloud, index.snow, index.times, index.selected):
                del column[self.rows :]
        index.matched = bytearray(self.matched)

    def add_partners(self, state: RunState, streams: PartnerStreams) -> None:
        """The streams' skipped items, sources and ignored members, before the S2 pass's."""
        state.skipped[self.skipped : self.skipped] = [i for s in streams.streams for i in s.skipped]
        state.sources[self.sources : self.sources] = [r for s in streams.streams for r in s.records]
        merged = self.members
        for part in [*(s.ignored for s in streams.streams), state.ignored_members]:
            for reason, count in part.counts.items():
                merged.counts[reason] = merged.counts.get(reason, 0) + count
                names = merged.examples.setdefault(reason, [])
                names.extend(part.examples.get(reason, [])[: EXAMPLES_IGNORED - len(names)])
        state.ignored_members = merged
