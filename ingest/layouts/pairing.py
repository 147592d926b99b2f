"""Pairing while the partners stream: each S2 sample's partners checked once they are staged, and
each shard's partner arrays written once all its samples' partners are.

The S2 stream numbers its samples as if every partner were there (as it is in a good release) and
writes each shard's S2 arrays at once, without a journal entry. :class:`Pairing` follows the
samples with a cursor: the next sample is checked when each partner stream has staged its partner
(as the reader used to check it before decoding: present, and on its patch's grid for the
reference maps), or found missing once the stream ended. Every shard the cursor has passed, whose
S2 arrays are written, gets its partner arrays and then its journal entry (one task of the
writer), so a journal entry still means a whole shard and ``--resume`` works at any point.

A sample that fails its check is an error with ``--on-error fail`` (the message the serial check
gave). With ``--on-error skip`` it would have been skipped before it was numbered, renumbering every
later sample: :meth:`Pairing.check` returns it, and the run writes the S2 samples from there again
once the partners are all staged (:mod:`ingest.pipeline`), keeping the shards already journalled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..errors import InputDataError
from ..store import zarrstore as store
from ..store.buffers import Written
from ..store.staging import Staging
from ..store.writers import ShardWriter
from .partner_stream import PartnerStream


@dataclass(frozen=True)
class Sample:
    """An accepted S2 sample waiting for its partners' check."""

    number: int
    patch_id: str
    grid: tuple[int, float, float]
    folder: str


@dataclass(frozen=True)
class Mismatch:
    """The first sample whose partners fail their check (``--on-error skip``)."""

    number: int
    item_id: str
    error: InputDataError


@dataclass
class Pairing:
    """The cursor over the S2 samples and the shards waiting for their partner arrays."""

    streams: list[PartnerStream]
    writer: ShardWriter | None = None
    """The S2 pass's writer (set when it starts)."""
    waiting: deque[Sample] = field(default_factory=deque)
    shards: deque[tuple[int, store.ShardRecord, Written]] = field(default_factory=deque)
    checked: int = 0
    """Samples checked so far (the cursor)."""
    skip: bool = False
    mismatch: Mismatch | None = None
    s2_shards: list[int] = field(default_factory=list)
    """Every shard whose S2 arrays were submitted."""

    def accept(
        self, number: int, patch_id: str, grid: tuple[int, float, float], folder: str
    ) -> None:
        self.waiting.append(Sample(number, patch_id, grid, folder))

    def written(self, start: int, record: store.ShardRecord, write: Written) -> None:
        """The S2 arrays of the shard at ``start`` are submitted (:class:`ShardCutter`)."""
        self.shards.append((start, record, write))
        self.s2_shards.append(record.index)

    def check(self) -> Mismatch | None:
        """Check the samples whose partners are staged, submit the shards that became whole;
        the first mismatch with ``--on-error skip`` (then nothing further is checked)."""
        while self.waiting and self.mismatch is None:
            sample = self.waiting[0]
            try:
                if not self._ready(sample):
                    break
            except InputDataError as error:
                if not self.skip:
                    raise
                self.mismatch = Mismatch(sample.number, sample.folder.rsplit("/", 1)[-1], error)
                break
            for stream in self.streams:
                stream.staging.use(sample.patch_id)
            self.waiting.popleft()
            self.checked = sample.number + 1
        self._submit_ready()
        return self.mismatch

    def _ready(self, sample: Sample) -> bool:
        """Whether every partner of ``sample`` is staged; InputDataError when one is missing
        from an ended stream or lies on another grid."""
        for stream in self.streams:
            staging, partner = stream.staging, stream.partner
            if sample.patch_id not in staging:
                if stream.done:
                    raise InputDataError(sample.folder, f"no {partner.label} of "
                                         f"{sample.patch_id} in {partner.spec.name}")  # fmt: skip
                return False
        for stream in self.streams:
            staging, partner = stream.staging, stream.partner
            if partner.same_grid and staging.georef_of(sample.patch_id) != sample.grid:
                at = staging.georef_of(sample.patch_id)
                raise InputDataError(
                    f"{partner.spec.name}: {staging.name_of(sample.patch_id)}",
                    f"{partner.label} on the grid EPSG:{at[0]} {at[1:]}, its patch on "
                    f"EPSG:{sample.grid[0]} {sample.grid[1:]}",
                )
        return True

    def _submit_ready(self) -> None:
        """The partner arrays of each shard whose samples are all checked and whose S2 arrays
        are written, in shard order."""
        while self.shards:
            start, record, write = self.shards[0]
            if start + len(record.patch_ids) > self.checked or not write.done():
                return
            write.result()  # its error, if any, before a journal entry could claim the shard
            self.shards.popleft()
            staged = {s.staging.array: s.staging.chunks(record.patch_ids) for s in self.streams}
            assert self.writer is not None
            self.writer.submit_partners(start, record, staged)

    def finish(self) -> Mismatch | None:
        """After the S2 stream, the partner streams all done: check what is left, wait for the
        shards' S2 writes; every shard before a mismatch gets its partner arrays."""
        mismatch = self.check()
        for start, record, write in self.shards:
            if start + len(record.patch_ids) > self.checked:
                break
            write.result()
        self._submit_ready()
        return mismatch

    @property
    def stagings(self) -> tuple[Staging, ...]:
        return tuple(s.staging for s in self.streams)
