"""The layout seam: what one distribution of BigEarthNet must tell the pipeline, and how the
distribution of an archive is recognised from its own first member.

A :class:`Layout` turns its inputs into the two things the pipeline consumes whatever the
distribution: a :class:`~ingest.layouts.labels.LabelIndex` and a feed of patch items (the files of
one patch folder). One module per distribution implements it (``mlhub``, ``zenodo_v1``,
``reben_v2``); :func:`ingest.layouts.make_layout` picks one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np

from ..archive.members import ArchiveItem, IgnoredMembers, first_member
from ..errors import InputDataError
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..sources.inputs import InputSpec, open_input
from ..sources.reader_process import ArchiveReader
from .feeds import Feed, Meter
from .labels import LabelIndex, Selection
from .partners import Partner

Warn = Callable[[str], None]

#: Layout name → the top folders its S2 archive starts with.
TOP_FOLDERS: Final = {
    "mlhub": ("bigearthnet_v1_source", "bigearthnet_v1_labels"),
    "zenodo-v1": ("BigEarthNet-v1.0",),
    "reben-v2": ("BigEarthNet-S2",),
}
#: Top folders of archives that hold another modality than Sentinel-2.
OTHER_MODALITIES: Final = {
    "BigEarthNet-S1-v1.0": "the Sentinel-1 archive of v1.0",
    "BigEarthNet-S1": "the Sentinel-1 archive of v2.0",
    "Reference_Maps": "the reference maps of v2.0",
}
LAYOUTS: Final = tuple(TOP_FOLDERS)


class Sink(Protocol):
    """What a layout reports to the run while it reads."""

    ignored_members: IgnoredMembers

    def phase(self, name: str, meter: Meter) -> None: ...

    def advance(self, items: int = 1) -> None: ...

    def fail_or_skip(self, error: InputDataError, item: str) -> None: ...

    def add_sources(self, records: list[dict[str, Any]]) -> None: ...

    def add_collection(self, role: str, document: dict[str, Any]) -> None: ...

    def reader(self, spec: InputSpec) -> ArchiveReader | None:
        """A process reading ``spec`` for the layout's feed (perhaps started while the labels
        were read), or None: read it in this process."""
        ...


@dataclass(frozen=True)
class Inputs:
    """What the run gives a layout to read."""

    s2: InputSpec
    """The Sentinel-2 (MLHub: source) archive."""
    selection: Selection
    endpoint: Endpoint
    policy: RetryPolicy
    warn: Warn
    labels: InputSpec | None = None
    """MLHub only: the labels archive."""
    metadata: tuple[InputSpec, ...] = ()
    """reBEN only: the metadata parquet files."""
    s1: InputSpec | None = None
    """The Sentinel-1 archive (Zenodo v1, reBEN)."""
    reference_maps: InputSpec | None = None
    """reBEN only: the reference maps archive."""
    items_api: ItemsApi | None = None
    """MLHub only: read the items API instead of the archives (``ingest run --via items``)."""


class ItemsApi(Protocol):
    """The feeds of MLHub's items API (:mod:`ingest.catalog.items_feed`, which sits above the
    layouts: the pipeline builds them)."""

    def labels_feed(self) -> AbstractContextManager[Feed]: ...

    def source_feed(self, index: LabelIndex) -> AbstractContextManager[Feed]: ...


class Layout(Protocol):
    """One distribution's reading of its inputs."""

    @property
    def name(self) -> str:
        """The store's ``layout`` attribute."""
        ...

    @property
    def dataset(self) -> str:
        """The store's ``dataset`` attribute (``bigearthnet-v1`` or ``bigearthnet-v2``)."""
        ...

    def read_labels(self, sink: Sink) -> LabelIndex:
        """The labels known before the S2 archive is read (possibly none yet)."""
        ...

    @property
    def source_spec(self) -> InputSpec | None:
        """The archive :meth:`source_feed` reads (None: none, MLHub's items API), which the run
        may start reading before the labels (:meth:`Sink.reader`)."""
        ...

    def source_feed(self, index: LabelIndex, sink: Sink) -> AbstractContextManager[Feed]:
        """The patch items of the S2 archive."""
        ...

    def join(self, item: ArchiveItem, index: LabelIndex) -> tuple[str, int | None]:
        """The item's patch id and its row in ``index`` (None: the index has no labels for it).
        May add the item's own labels to the index; an InputDataError names a bad item."""
        ...

    def capacity(self, index: LabelIndex) -> int:
        """At least the number of samples the run can write (the store is sized to it first)."""
        ...

    def coordinates(
        self, index: LabelIndex, rows: list[int], patch_ids: list[str]
    ) -> dict[str, np.ndarray]:
        """The optional per-sample string coordinates (``split``, ``country``, ...)."""
        ...

    def title(self, collections: dict[str, Any]) -> dict[str, Any]:
        """The store's ``title``, ``license`` and ``citation``."""
        ...

    def partners(self) -> tuple[Partner, ...]:
        """The partner archives of the run (after :meth:`read_labels`); a usage error when the
        distribution has no such modality."""
        ...


def detect_layout(spec: InputSpec, *, policy: RetryPolicy, warn: Warn) -> str:
    """The layout of the archive ``spec``, from the top folder of its first member.

    An archive of another modality or of no known layout is refused with one line saying what was
    found and what each layout starts with.
    """
    with open_input(spec, policy=policy, warn=warn) as stream:
        name = first_member(stream, spec.name)
    top = name.lstrip("./").split("/", 1)[0]
    for layout, tops in TOP_FOLDERS.items():
        if top in tops:
            return layout
    expected = "; ".join(f"{k} with {' or '.join(f'{t}/' for t in v)}" for k, v in
                         TOP_FOLDERS.items())  # fmt: skip
    if top in OTHER_MODALITIES:
        raise InputDataError(
            spec.name,
            f"this is {OTHER_MODALITIES[top]} (it starts with {top}/), not a Sentinel-2 archive",
        )
    raise InputDataError(
        spec.name, f"archive of unknown layout: its first member is {name!r} ({expected})"
    )
