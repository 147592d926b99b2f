"""The partner phase: each partner archive (Sentinel-1, reference maps) read before the S2 archive,
its patches decoded, checked and staged by their S2 patch id (:mod:`ingest.store.staging`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..archive.members import EXAMPLES, BadItem, CollectionDoc
from ..errors import InputDataError
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..store import zarrstore as store
from ..store.location import StoreLocation
from ..store.staging import Staging
from .base import Sink
from .feeds import open_archive_feed
from .labels import LabelIndex
from .partners import Partner


@dataclass
class PartnerCounts:
    """What the partner phase saw besides the staged patches."""

    staged: int = 0
    without_s2: int = 0
    """Partner patches no S2 patch of the release is paired with (counted, not fatal)."""
    examples: list[str] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        return {"staged": self.staged, "without_s2": self.without_s2,
                "examples": list(self.examples)}  # fmt: skip


def stage(
    partner: Partner,
    index: LabelIndex,
    sink: Sink,
    location: StoreLocation,
    directory: Path,
    *,
    endpoint: Endpoint,
    policy: RetryPolicy,
    warn: Callable[[str], None],
) -> tuple[Staging, PartnerCounts]:
    """Read ``partner``'s archive: decode, check and stage every patch whose S2 patch may be
    written (in ``index`` and selected; every one when the index fills later, as in Zenodo v1)."""
    array = store.pixel_array(location, partner.array)
    staging = Staging.create(array, directory, raw=partner.dtype == "float32")
    counts = PartnerCounts()
    out = np.empty(partner.shape, partner.dtype)
    try:
        with open_archive_feed(partner.spec, partner.rule, endpoint=endpoint, policy=policy,
                               warn=warn, ignored=sink.ignored_members) as feed:  # fmt: skip
            sink.phase(partner.spec.name.rsplit("/", 1)[-1], feed.meter)
            for obj in feed.items():
                if isinstance(obj, CollectionDoc):
                    continue
                sink.advance()
                if isinstance(obj, BadItem):
                    sink.fail_or_skip(obj.error, obj.item_id)
                    continue
                try:
                    s2 = partner.pair(obj)
                    if s2 is None:
                        counts.without_s2 += 1
                        if len(counts.examples) < EXAMPLES:
                            counts.examples.append(obj.item_id)
                        continue
                    row = index.rows.get(s2)
                    if row is not None and not index.selected[row]:
                        continue  # its S2 patch is not selected: never written
                    georef = partner.decode(obj, out)
                    staging.add(s2, obj.item_id, out, georef, obj.folder)
                except InputDataError as error:
                    sink.fail_or_skip(error, obj.item_id)
            sink.add_sources(feed.records())
    finally:
        staging.close_file()
    counts.staged = len(staging.names)
    return staging, counts
