"""What a run reports and records: the report, the store's final attributes and small arrays, and
what a failed run left behind."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from .._version import __version__
from ..config import RunReport
from ..errors import StoreError
from ..layouts.base import Layout
from ..layouts.labels import LabelIndex
from ..layouts.partners import Partner
from ..layouts.stage import PartnerCounts
from ..store import zarrstore as store
from ..store.location import StoreLocation
from ..store.replace import Target
from ..store.staging import Staging
from ..store.verify import NOT_COMPLETE, check
from .state import EXAMPLES, RunState


def finish_store(
    state: RunState,
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


def make_report(
    state: RunState,
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


def left_behind(state: RunState, target: Target | None) -> str | None:
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


def _empty_reason(state: RunState, index: LabelIndex, report: RunReport) -> str:
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


def initial_attrs(state: RunState) -> dict[str, Any]:
    assert state.layout is not None
    return {
        "ingest_version": __version__,
        "created": state.created,
        "contract_version": 2,
        "dataset": state.layout.dataset,
        "layout": state.layout.name,
        "options": state.config.recorded_options(),
    }


def _final_attrs(state: RunState, report: RunReport) -> dict[str, Any]:
    assert state.layout is not None
    return {
        **initial_attrs(state),
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


def with_size(report: RunReport, state: RunState) -> RunReport:
    return replace(
        report,
        store_bytes=report.store.size(),
        elapsed=time.monotonic() - state.started,
    )
