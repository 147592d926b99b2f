"""The S2 pass: stream the S2 archive, join each item to its labels, decode its bands into the
writers' batch buffers and hand whole shards to them (with ``--labels-only``, join only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from ..archive.members import ArchiveItem, BadItem, CollectionDoc
from ..config import RunConfig
from ..decode.patches import Patch, decode_patch
from ..errors import InputDataError
from ..layouts.base import Layout
from ..layouts.labels import LabelIndex
from ..layouts.pairing import Pairing
from ..layouts.partner_stream import PartnerStreams
from ..store import zarrstore as store
from ..store.buffers import Buffers
from ..store.writers import InlineWriter, PoolWriter, ShardCutter, ShardWriter
from .state import RunState


def make_writer(
    config: RunConfig, note: Callable[[str], None], pool: ProcessPoolExecutor | None = None
) -> ShardWriter:
    """The writer ``config`` asks for: a dask cluster's tasks, worker processes (``pool``, when
    started ahead: :func:`~ingest.store.writers.start_pool`), or inline."""
    location, length = config.location, config.shard_size
    if config.cluster is not None:
        from ..store.cluster import make_dask_writer  # dask.distributed only when asked for

        return make_dask_writer(config.cluster, location, length, note)
    if config.workers <= 0:
        return InlineWriter(location, length)
    return PoolWriter(location, length, config.workers, pool)


def ingest_source(
    state: RunState,
    layout: Layout,
    index: LabelIndex,
    done: dict[int, store.ShardRecord],
    pairing: Pairing | None = None,
    streams: PartnerStreams | None = None,
) -> tuple[store.SampleTable, bool]:
    """Stream the S2 archive: join, decode, and write every shard not already ``done``.

    With ``pairing``, the partners are still streaming (``streams``): each shard's S2 arrays are
    written at once, its partner arrays once ``pairing`` has checked its samples; the pass stops
    early at a partner mismatch with ``--on-error skip`` (``pairing.mismatch``: the caller
    starts again)."""
    config = state.config
    limit = config.selection.limit
    rows: list[int] = []
    geo: list[tuple[int, float, float]] = []
    read_to_end = True
    writer = make_writer(config, state.note, state.take_pool())
    items: Iterator[Any] | None = None
    try:
        cutter = ShardCutter(writer, config.shard_size, done, config.location,
                             partners=tuple(staging for _, staging, _ in state.staged))  # fmt: skip
        if pairing is not None:
            pairing.writer, cutter.deferred = writer, pairing.written
        with layout.source_feed(index, state) as feed:
            state.progress.phase(_phase_name(config), feed.meter)
            items = feed.items()
            for obj in items:
                if streams is not None and pairing is not None and paired(state, streams, pairing):
                    break  # a partner mismatch with --on-error skip: this pass is void
                if isinstance(obj, CollectionDoc):
                    state.collection["s2"] = obj.document
                    continue
                if limit is not None and len(rows) >= limit:  # without --limit, read it all:
                    read_to_end = False  # duplicates and unlabelled items come to light only so
                    break
                state.progress.advance()
                if isinstance(obj, BadItem):
                    state.fail_or_skip(obj.error, obj.item_id)
                    continue
                joined = _join_and_decode(state, layout, index, obj, cutter.slot(len(rows)))
                if joined is None:
                    continue
                patch, row = joined
                if pairing is not None:
                    grid = (patch.epsg, patch.x_ul, patch.y_ul)
                    pairing.accept(len(rows), patch.patch_id, grid, obj.folder)
                cutter.accept(len(rows), patch.patch_id)
                index.matched[row] = True
                rows.append(row)
                geo.append((patch.epsg, patch.x_ul, patch.y_ul))
            if pairing is None or pairing.mismatch is None:
                cutter.flush()
            if streams is not None and pairing is not None:
                finish_pairing(state, streams, pairing)
            writer.close()
            if pairing is not None and pairing.mismatch is not None:
                _close(items)
                return sample_table(layout, index, []), False  # void: the caller starts again
            cutter.check_done(len(rows))
            _close(items)
            state.sources.extend(feed.records())
    except BaseException:
        writer.abort()
        if items is not None:  # its threads and stream now, not whenever it is collected
            _close(items)
        raise
    epsg, x_ul, y_ul = zip(*geo, strict=True) if geo else ((), (), ())
    table = replace(
        sample_table(layout, index, rows, state),
        epsg=np.asarray(epsg, np.int32),
        x_ul=np.asarray(x_ul, np.float64),
        y_ul=np.asarray(y_ul, np.float64),
    )
    return table, read_to_end


def _close(items: Iterator[Any]) -> None:
    """Stop a feed's generator left early (at --limit), releasing its stream and threads."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _phase_name(config: RunConfig) -> str:
    """The progress line's name of the S2 phase."""
    parts = config.s2_parts()
    return config.source_collection if not parts else parts[0].rstrip("/").rsplit("/", 1)[-1]


def _join_and_decode(
    state: RunState, layout: Layout, index: LabelIndex, item: ArchiveItem, out: Buffers
) -> tuple[Patch, int] | None:
    """Decode an S2 item's bands into ``out``; None when it has no selected label or is
    skipped."""
    try:
        patch_id, row = layout.join(item, index)
    except InputDataError as error:
        state.fail_or_skip(error, item.item_id)
        return None
    if row is None:
        state.source_without_labels += 1
        state.example("source_without_labels", item.item_id)
        return None
    if not index.selected[row]:
        return None
    try:
        if index.matched[row]:
            raise InputDataError(item.folder, f"a second source item for patch {patch_id}")
        for partner, staging, _ in state.staged:
            if patch_id not in staging:
                raise InputDataError(item.folder, f"no {partner.label} of {patch_id} in "
                                     f"{partner.spec.name}")  # fmt: skip
        patch = decode_patch(item, patch_id, out)
        for partner, staging, _ in state.staged:
            grid = (patch.epsg, patch.x_ul, patch.y_ul)
            if partner.same_grid and staging.georef_of(patch_id) != grid:
                raise InputDataError(
                    f"{partner.spec.name}: {staging.name_of(patch_id)}",
                    f"{partner.label} on the grid EPSG:{staging.georef_of(patch_id)[0]} "
                    f"{staging.georef_of(patch_id)[1:]}, its patch on EPSG:{grid[0]} {grid[1:]}",
                )
    except InputDataError as error:
        state.fail_or_skip(error, item.item_id)
        return None
    for name in patch.ignored:
        state.ignored[name] += 1
    return patch, row


def sample_table(
    layout: Layout, index: LabelIndex, rows: list[int], state: RunState | None = None
) -> store.SampleTable:
    """The small per-sample arrays, with the layout's optional coordinates and the S1 names."""
    labels43, labels19 = index.label_table(rows)
    cloud, snow = index.flag_table(rows)
    patch_ids = index.patch_names(rows)
    optional = layout.coordinates(index, rows, patch_ids)
    for partner, staging, _ in state.staged if state is not None else ():
        if partner.array == "bands_s1":
            names = [staging.name_of(p) for p in patch_ids]
            optional["s1_patch_id"] = np.asarray(names, dtype=object)
    return store.SampleTable(
        patch_id=patch_ids,
        time=index.time_table(rows),
        labels=labels43,
        labels19=labels19,
        cloud_and_shadow=cloud,
        seasonal_snow=snow,
        optional=optional,
    )


def labels_only_table(
    state: RunState, layout: Layout, index: LabelIndex, capacity: int
) -> tuple[store.SampleTable, bool]:
    """``--labels-only``: the labels known before the S2 archive, or, for a layout whose labels
    come with each patch of the S2 archive (Zenodo v1.0's JSON), the labels read from it (the
    archive is streamed, no band decoded)."""
    if not getattr(layout, "labels_in_source", False):
        return sample_table(layout, index, index.selected_rows()[:capacity]), True
    limit = state.config.selection.limit
    rows: list[int] = []
    read_to_end = True
    with layout.source_feed(index, state) as feed:
        state.progress.phase(_phase_name(state.config), feed.meter)
        items = feed.items()
        try:
            for obj in items:
                if isinstance(obj, CollectionDoc):
                    continue
                if limit is not None and len(rows) >= limit:
                    read_to_end = False
                    break
                state.progress.advance()
                if isinstance(obj, BadItem):
                    state.fail_or_skip(obj.error, obj.item_id)
                    continue
                try:
                    _, row = layout.join(obj, index)
                except InputDataError as error:
                    state.fail_or_skip(error, obj.item_id)
                    continue
                if row is None or not index.selected[row]:
                    continue
                index.matched[row] = True
                rows.append(row)
        finally:
            _close(items)
        state.sources.extend(feed.records())
    return sample_table(layout, index, rows), read_to_end


def paired(state: RunState, streams: PartnerStreams, pairing: Pairing) -> bool:
    """Take in what the partner streams staged; True at a mismatch that voids the pass. Once the
    partners are all staged and every sample so far checked, each next sample is checked before
    it is numbered (``state.staged``), as in a serial run: a missing partner is then skipped
    without starting again."""
    streams.poll()
    if pairing.check() is not None:
        return True
    if not state.staged and not pairing.waiting and streams.all_done:
        state.staged = [(s.partner, s.staging, s.counts) for s in streams.streams]
    return False


def finish_pairing(state: RunState, streams: PartnerStreams, pairing: Pairing) -> None:
    """After the S2 stream: wait for the partner streams (their progress on the line), checking
    and writing the shards that become whole meanwhile."""
    shown: list[Any] = [None, 0]

    def each() -> None:
        pairing.check()
        stream = next((s for s in streams.streams if not s.done), None)
        if stream is None:
            return
        if shown[0] is not stream:
            state.progress.phase(stream.partner.spec.name.rsplit("/", 1)[-1], stream)
            shown[:] = [stream, stream.items]
        state.progress.advance(stream.items - shown[1])
        shown[1] = stream.items

    streams.wait(each)
    pairing.finish()
    state.staged = [(s.partner, s.staging, s.counts) for s in streams.streams]
