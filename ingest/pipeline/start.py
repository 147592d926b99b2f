"""Before a run streams: which layout reads its inputs, whether they open, whether the store fits,
and where a resumed run stands."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ..archive.members import Warn
from ..catalog.items_feed import open_items_labels_feed, open_items_source_feed
from ..config import RunConfig
from ..errors import UsageError
from ..layouts import make_layout
from ..layouts.base import Inputs, Layout, detect_layout
from ..layouts.feeds import Feed
from ..layouts.labels import LabelIndex
from ..layouts.partners import Partner
from ..store import zarrstore as store
from ..store.replace import probe_inputs
from ..store.space import check_room, estimate, local_size, samples_bound
from .state import RunState


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


def probe(config: RunConfig) -> None:
    """Every input opened and its first bytes read (before an old store is deleted)."""
    inputs = config.inputs()
    specs = [inputs.s2, *inputs.metadata, *(s for s in (inputs.s1, inputs.reference_maps) if s)]
    if inputs.labels.parts or config.forced_layout == "mlhub":
        specs.append(inputs.labels)
    probe_inputs(specs, policy=config.retry, endpoint=config.endpoint)


def check_space(
    config: RunConfig, partners: tuple[Partner, ...], capacity: int, staging_at: Path
) -> None:
    """Refuse a run whose estimated store and staging exceed a local file system's free space."""
    arrays = tuple(p.array for p in partners)
    count = samples_bound(capacity, local_size(config.inputs().s2.parts))
    if config.selection.limit is not None:
        count = min(count, config.selection.limit)
    room = estimate(count, labels_only=config.labels_only, partners=arrays)
    check_room(room, config.location, staging_at if partners else None)


def resume_point(state: RunState) -> dict[int, store.ShardRecord]:
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
