"""The main job: stream the labels archive into an index, then stream the source archive, join each
source item to its labels, decode its bands and write the store — without extracting anything.

Stages (one package each): ``sources`` (bytes) → ``archive`` (members, items) → ``layouts``
(label items, label index, selection) → ``decode`` (decoded bands) → ``store`` (shards, metadata).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._version import __version__
from .archive.members import EXAMPLES as EXAMPLES_IGNORED
from .archive.members import ArchiveItem, BadItem, CollectionDoc, IgnoredMembers, Warn
from .catalog.items_feed import open_items_labels_feed, open_items_source_feed
from .config import RunConfig, RunReport
from .decode.patches import Patch, decode_patch
from .errors import InputDataError, StoreError, UsageError
from .layouts import make_layout
from .layouts.base import Inputs, Layout, detect_layout
from .layouts.feeds import Feed, Meter
from .layouts.labels import LabelIndex
from .layouts.pairing import Pairing
from .layouts.partner_stream import PartnerStreams
from .layouts.partners import Partner
from .layouts.stage import PartnerCounts
from .layouts.tables import preload
from .store import zarrstore as store
from .store.buffers import Buffers
from .store.location import StoreLocation
from .store.lock import Lock, hold
from .store.replace import Target, annotate, plan, probe_inputs, refuse_existing
from .store.space import (
    check_room,
    disk_full,
    estimate,
    local_size,
    samples_bound,
    write_failure,
)
from .store.staging import Staging, staging_directory, staging_parent
from .store.verify import NOT_COMPLETE, check
from .store.writers import InlineWriter, PoolWriter, ShardCutter, ShardWriter

EXAMPLES = 5


class Progress(Protocol):
    """Receives progress: a phase per archive, then one ``advance`` per item read."""

    def phase(self, name: str, meter: Meter) -> None: ...

    def advance(self, items: int = 1) -> None: ...

    def done(self) -> None: ...


class NoProgress:
    def phase(self, name: str, meter: Meter) -> None:
        return None

    def advance(self, items: int = 1) -> None:
        return None

    def done(self) -> None:
        return None


def _ignore(message: str) -> None:
    return None


@dataclass
class _Run:
    """Mutable state of one run."""

    config: RunConfig
    progress: Progress
    warn: Warn
    note: Warn
    started: float = field(default_factory=time.monotonic)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    sources: list[dict[str, Any]] = field(default_factory=list)
    collection: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    ignored_members: IgnoredMembers = field(default_factory=IgnoredMembers)
    source_without_labels: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    layout: Layout | None = None
    staged: list[tuple[Partner, Staging, PartnerCounts]] = field(default_factory=list)
    store_created: bool = False

    def fail_or_skip(self, error: InputDataError, item: str) -> None:
        if self.config.on_error == "fail":
            raise error
        self.skipped.append({"item": item, "reason": str(error)})
        self.warn(f"skipped {item}: {error}")

    def example(self, kind: str, name: str) -> None:
        names = self.examples.setdefault(kind, [])
        if len(names) < EXAMPLES:
            names.append(name)

    # The layouts' Sink: progress, sources, collection documents.
    def phase(self, name: str, meter: Meter) -> None:
        self.progress.phase(name, meter)

    def advance(self, items: int = 1) -> None:
        self.progress.advance(items)

    def add_sources(self, records: list[dict[str, Any]]) -> None:
        self.sources.extend(records)

    def add_collection(self, role: str, document: dict[str, Any]) -> None:
        self.collection.setdefault(role, document)


@dataclass(frozen=True)
class _ItemsApi:
    """``--via items``: MLHub's items API instead of the archives."""

    config: RunConfig
    warn: Warn

    def labels_feed(self) -> AbstractContextManager[Feed]:
        c = self.config
        return open_items_labels_feed(c.labels_collection, c.endpoint, policy=c.retry)

    def source_feed(self, index: LabelIndex) -> AbstractContextManager[Feed]:
        c = self.config
        return open_items_source_feed(
            c.source_collection, index, c.endpoint,
            limit=c.selection.limit, policy=c.retry, warn=self.warn,
        )  # fmt: skip


def open_layout(config: RunConfig, warn: Warn) -> Layout:
    """The layout that reads this run's inputs: forced by ``config.layout``, else the one the S2
    archive's first member names (MLHub when no archive is given: the archive endpoint)."""
    inputs = config.inputs()
    name = config.forced_layout
    if name is None:
        if config.via == "items" or not inputs.s2.parts:
            name = "mlhub"
        else:
            name = detect_layout(inputs.s2, policy=config.retry, warn=warn)
    if name != "mlhub" and (config.labels_archive or config.via == "items"):
        raise UsageError(f"the {name} layout takes no --labels-archive or --via items "
                         "(its labels come with its own files)")  # fmt: skip
    if name == "reben-v2" and not inputs.metadata:
        raise UsageError(
            "reben-v2 needs the metadata: --metadata metadata.parquet "
            "--metadata metadata_for_patches_with_snow_cloud_or_shadow.parquet"
        )
    if name != "reben-v2" and inputs.metadata:
        raise UsageError(f"--metadata is for reben-v2 archives, not {name}")
    items_api = _ItemsApi(config, warn) if config.via == "items" else None
    return make_layout(name, Inputs(
        s2=inputs.s2, selection=config.selection, endpoint=config.endpoint, policy=config.retry,
        warn=warn, labels=inputs.labels, metadata=inputs.metadata, items_api=items_api,
        s1=inputs.s1, reference_maps=inputs.reference_maps,
    ))  # fmt: skip


def run(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    warn: Warn | None = None,
    note: Warn | None = None,
) -> RunReport:
    """Ingest the labels and source archives into the store at ``config.store``.

    ``warn`` receives warnings (items skipped, bad input), ``note`` information worth a line
    (the dask dashboard's address, a stale lock taken over). The run holds the store's lock
    (:mod:`ingest.store.lock`) from before its first write to its end: a second writer is refused.
    """
    state = _Run(config, progress or NoProgress(), warn or _ignore, note or _ignore)
    with hold(config.location, note=state.note) as lock:
        return _run_locked(state, lock)


def _run_locked(state: _Run, lock: Lock) -> RunReport:
    config = state.config
    preload()  # the official tables (~3 s), read while the labels stream in
    final = config.location
    if config.resume:
        done = _resume_point(state)
    else:
        refuse_existing(final, overwrite=config.overwrite)
        done = {}
    target: Target | None = None
    staging: list[Path] = []
    staging_at = staging_parent(final, config.staging_dir)
    try:
        layout = open_layout(config, state.warn)
        state.layout = layout
        index = layout.read_labels(state)
        partners = layout.partners()
        capacity = layout.capacity(index)
        if config.space_check and not config.resume:
            _check_room(config, partners, capacity, staging_at)
        target = plan(final, overwrite=config.overwrite and not config.resume,
                      before_delete=lambda: _probe(config))  # fmt: skip
        if target.replacing:
            config = state.config = replace(config, store=target.writing)
        location = target.writing
        if not config.resume:
            state.store_created = True
            store.create(
                location,
                capacity=capacity,
                shard=config.shard_size,
                dataset=layout.dataset,
                layout=layout.name,
                labels_only=config.labels_only,
                s1=any(p.array == "bands_s1" for p in partners),
                reference_maps=any(p.array == "reference_map" for p in partners),
                attrs=_initial_attrs(state),
            )
        if config.labels_only:
            table, read_to_end = _labels_only_table(state, layout, index, capacity)
        else:
            directory = staging_directory(str(final), staging_at)
            staging.append(directory)
            streams = PartnerStreams(state.warn)
            try:
                for partner in partners:  # each in a process of its own, while S2 streams
                    streams.start(partner, index, location, directory, endpoint=config.endpoint,
                                  policy=config.retry, skip=config.on_error == "skip")  # fmt: skip
                if streams.streams:
                    table, read_to_end = ingest_overlapped(state, layout, index, done, streams)
                else:
                    table, read_to_end = _ingest_source(state, layout, index, done)
            except OSError as error:  # told while the staging files are still there to count
                full = disk_full(error, location, directory)
                if full is None:
                    raise
                raise full from error
            finally:
                streams.close()
                shutil.rmtree(directory, ignore_errors=True)
        state.progress.done()
        report = _report(state, layout, index, table, read_to_end, final)
        _finish(state, layout, index, table, report, location)
        lock.check()
        store.mark_complete(location)
        target.commit()
    except BaseException as error:
        if target is not None:
            target.discard()
        writing = target.writing if target is not None else final
        folder = staging[0] if staging else staging_at
        told = write_failure(error, writing, folder) if isinstance(error, OSError) else None
        left = _left_behind(state, target)
        if left:
            annotate(told or error, left)
        if told is not None:
            raise told from error
        raise
    return _with_size(report, state)


def _check_room(
    config: RunConfig, partners: tuple[Partner, ...], capacity: int, staging_at: Path
) -> None:
    """Refuse a run whose estimated store and staging exceed a local file system's free space."""
    arrays = tuple(p.array for p in partners)
    count = samples_bound(capacity, local_size(config.inputs().s2.parts))
    if config.selection.limit is not None:
        count = min(count, config.selection.limit)
    room = estimate(count, labels_only=config.labels_only, partners=arrays)
    check_room(room, config.location, staging_at if partners else None)


def _finish(
    state: _Run,
    layout: Layout,
    index: LabelIndex,
    table: store.SampleTable,
    report: RunReport,
    location: StoreLocation,
) -> None:
    """The final attributes (with why a store is empty, when it is) and the small arrays; the
    written store must pass its checks (all but ``complete``)."""
    attrs = _final_attrs(state, report)
    if len(table) == 0:
        reason = _empty_reason(state, index, report)
        state.warn(f"{report.store}: no sample written: {reason}")
        attrs["report"]["empty"] = reason
    hint = getattr(layout, "unlabelled_hint", None)
    if report.source_without_labels and isinstance(hint, str):
        state.warn(f"{report.source_without_labels:,} source patch(es) left out without "
                   f"labels: {hint}")  # fmt: skip
    store.finish(location, table, attrs)
    problems = [p for p in check(location) if p != NOT_COMPLETE]
    if problems:
        raise StoreError(f"{location}: the written store fails its checks: {problems[0]}")


def _probe(config: RunConfig) -> None:
    """Every input opened and its first bytes read (before an old store is deleted)."""
    inputs = config.inputs()
    specs = [inputs.s2, *inputs.metadata, *(s for s in (inputs.s1, inputs.reference_maps) if s)]
    if inputs.labels.parts or config.forced_layout == "mlhub":
        specs.append(inputs.labels)
    probe_inputs(specs, policy=config.retry, endpoint=config.endpoint)


def _report(
    state: _Run,
    layout: Layout,
    index: LabelIndex,
    table: store.SampleTable,
    read_to_end: bool,
    final: StoreLocation,
) -> RunReport:
    config = state.config
    for name in index.unmatched_selected()[:EXAMPLES] if not config.labels_only else ():
        state.example("labels_without_source", name)
    return RunReport(
        store=final,
        samples=len(table),
        labels_without_source=0 if config.labels_only else index.unmatched_count(),
        source_without_labels=state.source_without_labels,
        skipped=tuple(state.skipped),
        not_selected=len(index) - index.selected_count,
        ignored_files=dict(state.ignored),
        ignored_members=state.ignored_members.report(),
        partners={
            p.role: _partner_report(p, staging, counts, index)
            for p, staging, counts in state.staged
        },
        source_read_to_end=read_to_end,
        store_bytes=0,
        elapsed=0.0,
        examples=state.examples,
    )


def _left_behind(state: _Run, target: Target | None) -> str | None:
    """What a failed run leaves and what to do next (None: nothing was written)."""
    final = state.config.location if target is None else target.final
    if target is None and state.config.overwrite and final.exists():
        return f"{final} is unchanged"
    if target is not None and target.replacing:
        return (f"{final} is unchanged (the unfinished replacement was removed); "
                "run again with --overwrite")  # fmt: skip
    if not (state.store_created or state.config.resume):
        return None
    deleted = " (the old store was deleted by --overwrite)" if target and target.deleted_old else ""
    return (f"{final} is left unfinished{deleted}: continue it with --resume and the same "
            "options, or start over with --overwrite")  # fmt: skip


def _empty_reason(state: _Run, index: LabelIndex, report: RunReport) -> str:
    """Why a run wrote no sample, in a few words."""
    selection = state.config.selection
    if selection.limit == 0:
        return "--limit 0"
    if report.skipped:
        return f"all {len(report.skipped)} item(s) were bad and skipped (--on-error skip)"
    if len(index) == 0:
        if state.source_without_labels:
            return (f"none of the {state.source_without_labels:,} source patch(es) has labels "
                    "in the labels given")  # fmt: skip
        return "the inputs hold no labelled patch"
    if index.selected_count == 0:
        return f"the selection matches none of the {len(index):,} labelled patches"
    return (f"none of the {index.selected_count:,} selected patches is in the source archive "
            f"({report.source_without_labels:,} source patch(es) without labels)")  # fmt: skip


def _labels_only_table(
    state: _Run, layout: Layout, index: LabelIndex, capacity: int
) -> tuple[store.SampleTable, bool]:
    """``--labels-only``: the labels known before the S2 archive, or, for a layout whose labels
    come with each patch of the S2 archive (Zenodo v1.0's JSON), the labels read from it (the
    archive is streamed, no band decoded)."""
    if not getattr(layout, "labels_in_source", False):
        return _table(layout, index, index.selected_rows()[:capacity]), True
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
    return _table(layout, index, rows), read_to_end


def _resume_point(state: _Run) -> dict[int, store.ShardRecord]:
    """Check that the store can be resumed with these options; its finished shards."""
    config = state.config
    location = config.location
    if not location.exists("zarr.json"):
        raise UsageError(f"{location}: no store to resume (run without --resume to start one)")
    attrs = store.root_attrs(location)
    if attrs.get("complete") is True:
        raise UsageError(f"{location} is already complete: nothing to resume")
    recorded = attrs.get("options")
    wanted = config.recorded_options()
    if not isinstance(recorded, dict) or "shard_size" not in recorded:
        raise UsageError(f"{location} was not started by `ingest run`: cannot resume it")
    for key in sorted(set(recorded) | set(wanted)):
        if recorded.get(key) != wanted.get(key):
            raise UsageError(
                f"--resume with different options: {key} is {recorded.get(key)!r} in "
                f"{location} but {wanted.get(key)!r} now"
            )
    state.created = str(attrs.get("created", state.created))
    return store.journal(location)


def make_writer(config: RunConfig, note: Callable[[str], None]) -> ShardWriter:
    """The writer ``config`` asks for: a dask cluster's tasks, worker processes, or inline."""
    location, length = config.location, config.shard_size
    if config.cluster is not None:
        from .store.cluster import make_dask_writer  # dask.distributed only when asked for

        return make_dask_writer(config.cluster, location, length, note)
    if config.workers <= 0:
        return InlineWriter(location, length)
    return PoolWriter(location, length, config.workers)


def _ingest_source(
    state: _Run,
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
    writer = make_writer(config, state.note)
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
                if streams is not None and pairing is not None and _paired(state, streams, pairing):
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
                return _table(layout, index, []), False  # void: the caller starts again
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
        _table(layout, index, rows, state),
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
    state: _Run, layout: Layout, index: LabelIndex, item: ArchiveItem, out: Buffers
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


def _table(
    layout: Layout, index: LabelIndex, rows: list[int], state: _Run | None = None
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


def _partner_report(
    partner: Partner, staging: Staging, counts: PartnerCounts, index: LabelIndex
) -> dict[str, Any]:
    """What became of a partner archive's patches: staged, written, without an S2 patch of the
    release (counted at pairing, or paired with an S2 id the S2 archive never held)."""
    strays = [name for s2, name in staging.unused() if s2 not in index.rows]
    report = counts.report()
    report["written"] = int(sum(staging.used))
    report["without_s2"] = counts.without_s2 + len(strays)
    report["examples"] = (counts.examples + strays)[:EXAMPLES]
    return report


def _initial_attrs(state: _Run) -> dict[str, Any]:
    assert state.layout is not None
    return {
        "ingest_version": __version__,
        "created": state.created,
        "contract_version": 2,
        "dataset": state.layout.dataset,
        "layout": state.layout.name,
        "options": state.config.recorded_options(),
    }


def _final_attrs(state: _Run, report: RunReport) -> dict[str, Any]:
    assert state.layout is not None
    return {
        **_initial_attrs(state),
        **state.layout.title(state.collection),
        "sources": state.sources,
        "counts": report.counts,
        "skipped": list(report.skipped),
        "report": {
            "not_selected": report.not_selected,
            "ignored_files": report.ignored_files,
            "ignored_members": report.ignored_members,
            "partners": report.partners,
            "source_read_to_end": report.source_read_to_end,
            "examples": report.examples,
        },
    }


def _with_size(report: RunReport, state: _Run) -> RunReport:
    return replace(
        report,
        store_bytes=report.store.size(),
        elapsed=time.monotonic() - state.started,
    )


def ingest_overlapped(
    state: _Run,
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
    table, read_to_end = _ingest_source(state, layout, index, done, pairing, streams)
    if pairing.mismatch is not None:
        mark.restore(state, index)
        location = state.config.location
        table, read_to_end = _ingest_source(state, layout, index, store.journal(location))
        shards = -(-len(table) // state.config.shard_size)
        left = sorted({i for i in pairing.s2_shards if i >= shards})
        store.drop_shards(location, store.S2_ARRAYS, left)
    mark.add_partners(state, streams)
    return table, read_to_end


def _paired(state: _Run, streams: PartnerStreams, pairing: Pairing) -> bool:
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


def finish_pairing(state: _Run, streams: PartnerStreams, pairing: Pairing) -> None:
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
    def of(cls, state: _Run, index: LabelIndex) -> _Mark:
        examples = {k: list(v) for k, v in state.examples.items()}
        mark = cls(len(state.skipped), len(state.sources), Counter(state.ignored),
                   state.source_without_labels, examples, dict(state.collection),
                   state.ignored_members, len(index), bytes(index.matched))  # fmt: skip
        state.ignored_members = IgnoredMembers()
        return mark

    def restore(self, state: _Run, index: LabelIndex) -> None:
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

    def add_partners(self, state: _Run, streams: PartnerStreams) -> None:
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
