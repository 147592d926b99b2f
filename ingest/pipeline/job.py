"""The main job, end to end: lock the store, read the labels, start the partner streams, stream the
S2 archive, finish and check the store; on failure say what was left behind."""

from __future__ import annotations

import gc
import shutil
from dataclasses import replace
from pathlib import Path

from ..archive.members import Warn
from ..config import RunConfig, RunReport
from ..layouts.partner_stream import PartnerStreams
from ..layouts.tables import preload
from ..processes import keep_freed_memory
from ..store import zarrstore as store
from ..store.lock import Lock, hold
from ..store.replace import Target, annotate, plan, refuse_existing
from ..store.space import disk_full, write_failure
from ..store.staging import staging_directory, staging_parent
from ..store.writers import start_pool
from .overlap import ingest_overlapped
from .report import finish_store, initial_attrs, left_behind, make_report, with_size
from .s2_pass import ingest_source, labels_only_table
from .start import check_space, open_layout, probe, resume_point
from .state import NoProgress, Progress, RunState, ignore


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
    Its process keeps the memory it frees, as the processes it starts do
    (:func:`~ingest.processes.keep_freed_memory`).
    """
    keep_freed_memory()
    state = RunState(config, progress or NoProgress(), warn or ignore, note or ignore)
    try:
        with hold(config.location, note=state.note) as lock:
            return _run_locked(state, lock)
    finally:
        gc.unfreeze()  # (frozen once the labels are read)


def _run_locked(state: RunState, lock: Lock) -> RunReport:
    config = state.config
    preload()  # the official tables (~3 s), read while the labels stream in
    final = config.location
    if config.resume:
        done = resume_point(state)
    else:
        refuse_existing(final, overwrite=config.overwrite)
        done = {}
    target: Target | None = None
    staging: list[Path] = []
    staging_at = staging_parent(final, config.staging_dir)
    streams = PartnerStreams(state.warn)
    try:
        layout = open_layout(config, state.warn)
        state.layout = layout
        if not config.labels_only:  # their start-up while the labels are read (a core idles)
            # The S2 archive read ahead meanwhile: from local files only (a download held back
            # as long as the labels are read would stall), and not for a --limit run (which may
            # need a few patches of the 256 MiB read ahead).
            spec = layout.source_spec
            if spec is not None and spec.local and config.selection.limit is None:
                state.read_ahead(spec)
            streams.prepare(len(config.modality_names()))
            if config.cluster is None and config.workers > 0:
                state.pool = start_pool(config.workers)
        index = layout.read_labels(state)
        # The label index (550,000 ids for reBEN) and the modules live as long as the run: out of
        # the collector's sight, whose full passes over them cost the S2 reader 0.2 CPU-s (perf).
        gc.freeze()
        partners = layout.partners()
        capacity = layout.capacity(index)
        if config.space_check and not config.resume:
            check_space(config, partners, capacity, staging_at)
        target = plan(final, overwrite=config.overwrite and not config.resume,
                      before_delete=lambda: probe(config))  # fmt: skip
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
                attrs=initial_attrs(state),
            )
        if config.labels_only:
            table, read_to_end = labels_only_table(state, layout, index, capacity)
        else:
            directory = staging_directory(str(final), staging_at)
            staging.append(directory)
            try:
                for partner in partners:  # each in a process of its own, while S2 streams
                    streams.start(partner, index, location, directory, endpoint=config.endpoint,
                                  policy=config.retry, skip=config.on_error == "skip")  # fmt: skip
                if streams.streams:
                    table, read_to_end = ingest_overlapped(state, layout, index, done, streams)
                else:
                    table, read_to_end = ingest_source(state, layout, index, done)
            except OSError as error:  # told while the staging files are still there to count
                full = disk_full(error, location, directory)
                if full is None:
                    raise
                raise full from error
            finally:
                streams.close()
                shutil.rmtree(directory, ignore_errors=True)
        state.progress.done()
        report = make_report(state, layout, index, table, read_to_end, final)
        finish_store(state, layout, index, table, report, location)
        lock.check()
        store.mark_complete(location)
        target.commit()
    except BaseException as error:
        streams.close()
        state.close_readers()
        _stop_pool(state)
        if target is not None:
            target.discard()
        writing = target.writing if target is not None else final
        folder = staging[0] if staging else staging_at
        told = write_failure(error, writing, folder) if isinstance(error, OSError) else None
        left = left_behind(state, target)
        if left:
            annotate(told or error, left)
        if told is not None:
            raise told from error
        raise
    state.close_readers()
    _stop_pool(state)
    return with_size(report, state)


def _stop_pool(state: RunState) -> None:
    """Shut the writer processes down if no S2 pass took them."""
    pool = state.take_pool()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
