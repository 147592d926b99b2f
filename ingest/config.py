"""Values that configure a run and describe its outcome."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import UsageError
from .layouts.labels import Selection
from .nomenclature import LABELS_COLLECTION, SOURCE_COLLECTION
from .sources.download import RetryPolicy
from .sources.endpoint import Endpoint
from .sources.inputs import InputSpec
from .sources.official import DATASET_LAYOUTS, files_of, zenodo_url
from .store.location import StoreLocation

#: Samples per shard. Measured on this 2-core machine (README, "Shard length"): 256 writes close to
#: the best speed, keeps a batch at ~41 MB, and one sample still reads in about a millisecond.
DEFAULT_SHARD_SIZE = 256

OnError = Literal["fail", "skip"]
#: Where the items come from: the two collection archives, or the items API (only the selected
#: source items are fetched; see :mod:`ingest.catalog.items_feed`).
Via = Literal["archive", "items"]


def usable_cores() -> int:
    """The cores this process may run on (its affinity: ``taskset``, a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(partners: bool = False) -> int:
    """Writer processes: one per core this process may use, and at least two with Sentinel-1 or
    reference maps, whose writers also compress the S1 patches. Measured on 2 cores, 10,000
    reBEN patches, alternating: S2 alone 10.1-10.5 s with 2 writers against 10.8-11.5 s with 1
    (the reader waits on the archive's decompression at times, and the last batches are
    compressed on both cores); with S1 and maps 2 and 3 writers within the noise (18.9-20.9 s),
    1 writer 20.9 s against 17.9 s with 2."""
    return max(usable_cores(), 2 if partners else 1)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``ingest run`` needs; the CLI only maps its options onto this."""

    store: str | os.PathLike[str] | StoreLocation
    """A local path or an fsspec URL (``s3://bucket/bigearthnet.zarr``)."""
    labels_archive: str | tuple[str, ...] | None = None
    """MLHub's labels archive: a local path or http(s) URL (or its parts, in order); None reads
    the archive endpoint."""
    source_archive: str | tuple[str, ...] | None = None
    """The Sentinel-2 archive (MLHub: the source collection's) of any layout: a path or URL, or
    its parts in order (gzip, zstd or plain tar; recognised from the bytes)."""
    layout: str | None = None
    """``mlhub``, ``zenodo-v1`` or ``reben-v2``; None recognises it from the S2 archive."""
    metadata: tuple[str, ...] = ()
    """reBEN's metadata parquet files (paths or URLs)."""
    s1_archive: str | tuple[str, ...] | None = None
    """The Sentinel-1 archive (Zenodo v1.0 or reBEN), a path or URL or its parts."""
    reference_maps: str | tuple[str, ...] | None = None
    """reBEN's reference maps archive, a path or URL or its parts."""
    dataset: str | None = None
    """``bigearthnet-v1`` or ``bigearthnet-v2``: read the official files from Zenodo (or
    ``zenodo_url``), each md5-checked as its bytes stream by, instead of archives given by hand."""
    modalities: tuple[str, ...] = ()
    """With ``dataset``: what to read besides S2 (``s1``, ``reference-maps``)."""
    zenodo_url: str | None = None
    """With ``dataset``: the base URL (default ``INGEST_ZENODO_URL``, else Zenodo)."""
    md5sums: dict[str, str] = field(default_factory=dict)
    """With ``dataset``: md5 by file name replacing the published ones (a mirror, the test kit)."""
    labels_collection: str = LABELS_COLLECTION
    source_collection: str = SOURCE_COLLECTION
    selection: Selection = field(default_factory=Selection)
    labels_only: bool = False
    shard_size: int = DEFAULT_SHARD_SIZE
    overwrite: bool = False
    """Replace an existing store, once the new one is complete (:mod:`ingest.store.replace`)."""
    resume: bool = False
    """Continue the unfinished store at ``store`` (same options), skipping its finished shards."""
    workers: int = field(default_factory=default_workers)
    on_error: OnError = "fail"
    endpoint: Endpoint = field(default_factory=Endpoint)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    via: Via = "archive"
    storage_options: dict[str, Any] = field(default_factory=dict)
    """fsspec options for a URL ``store`` (credentials, ``client_kwargs.endpoint_url``, ...)."""
    staging_dir: str | None = None
    """Where the staging folder of S1 patches and maps goes (default: ``$INGEST_STAGING_DIR``,
    else beside a local store, else the system's temporary folder)."""
    space_check: bool = True
    """Estimate the bytes the run writes and refuse to start when a local file system lacks them."""
    cluster: str | None = None
    """Run the shard writing on dask.distributed: ``local:N`` (a LocalCluster of N workers) or a
    scheduler address; None writes with a local process pool (``workers``)."""

    @property
    def location(self) -> StoreLocation:
        return StoreLocation.of(self.store, self.storage_options)

    def __post_init__(self) -> None:
        self.location  # noqa: B018  # refuses storage options for a local path
        if self.cluster is not None and self.cluster.startswith("local:"):
            count = self.cluster.removeprefix("local:")
            if not count.isdigit() or int(count) < 1:
                raise UsageError(f"--cluster {self.cluster}: expected local:N with N >= 1 workers")
        if self.dataset is not None:
            files_of(self.dataset, self.modalities)  # refuses an unknown dataset or modality
            given = (self.source_archive, self.labels_archive, self.metadata, self.layout,
                     self.s1_archive, self.reference_maps)  # fmt: skip
            if any(given):
                raise UsageError(
                    "--dataset reads the official files: it takes no --source-archive, "
                    "--labels-archive, --metadata, --layout, --s1-archive or --reference-maps "
                    "(use --with)"
                )
        elif self.modalities:
            raise UsageError(
                "--with goes with --dataset (else give --s1-archive, --reference-maps)"
            )
        if self.labels_only and (self.s1_archive or self.reference_maps or self.modalities):
            raise UsageError("--labels-only writes no pixels: it takes no S1 or reference maps")
        if self.via == "items" and (self.labels_archive or self.source_archive):
            raise UsageError("--via items reads the items API: it takes no --labels-archive "
                             "or --source-archive")  # fmt: skip

    def s2_parts(self) -> tuple[str, ...]:
        if self.dataset is not None:
            return (self.inputs().s2.parts[0],)
        return _parts(self.source_archive)

    @property
    def forced_layout(self) -> str | None:
        """``layout``, or the official layout of ``dataset``."""
        if self.dataset is not None:
            return DATASET_LAYOUTS[self.dataset]
        return self.layout

    def inputs(self) -> _Inputs:
        """The run's inputs as :class:`~ingest.sources.inputs.InputSpec` values."""
        if self.dataset is not None:
            files: dict[str, list[InputSpec]] = {}
            base = zenodo_url(self.zenodo_url)
            for f in files_of(self.dataset, self.modalities, self.md5sums):
                files.setdefault(f.role, []).append(InputSpec((f.url(base),), f.role, f.md5))
            return _Inputs(
                s2=files["s2"][0],
                labels=InputSpec((), "labels", collection=self.labels_collection),
                metadata=tuple(files.get("metadata", ())),
                s1=files["s1"][0] if "s1" in files else None,
                reference_maps=files["reference_maps"][0] if "reference_maps" in files else None,
            )
        s2 = self.s2_parts()
        labels = _parts(self.labels_archive)
        return _Inputs(
            s2=InputSpec(s2, "s2", collection=None if s2 else self.source_collection),
            labels=InputSpec(labels, "labels", collection=self.labels_collection),
            metadata=tuple(InputSpec((m,), "metadata") for m in self.metadata),
            s1=_spec(self.s1_archive, "s1"),
            reference_maps=_spec(self.reference_maps, "reference_maps"),
        )

    def modality_names(self) -> list[str]:
        """The partner modalities of the run: ``s1``, ``reference-maps``."""
        if self.dataset is not None:
            return sorted(self.modalities)
        return [name for name, value in (("reference-maps", self.reference_maps),
                                          ("s1", self.s1_archive)) if value]  # fmt: skip

    def recorded_options(self) -> dict[str, Any]:
        """The options that shape the store's content, recorded in its attributes."""
        sel = asdict(self.selection)
        sel["classes"] = list(self.selection.classes)
        return {
            "labels_collection": self.labels_collection,
            "source_collection": self.source_collection,
            "selection": sel,
            "labels_only": self.labels_only,
            "shard_size": self.shard_size,
            "on_error": self.on_error,
            "via": self.via,
            "layout": self.forced_layout,
            "dataset": self.dataset,
            "modalities": self.modality_names(),
        }


@dataclass(frozen=True)
class RunReport:
    """What a finished run did; printed as the summary and kept in the store's attributes."""

    store: StoreLocation
    samples: int
    labels_without_source: int
    source_without_labels: int
    skipped: tuple[dict[str, str], ...]
    not_selected: int
    ignored_files: dict[str, int]
    source_read_to_end: bool
    store_bytes: int
    elapsed: float
    examples: dict[str, list[str]] = field(default_factory=dict)
    """A few names for each count (labels without source, source without labels)."""
    ignored_members: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Archive members passed over, by reason: ``{"count": n, "examples": [...]}``."""
    partners: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per partner archive (``s1``, ``reference_maps``): ``staged``, ``written``, ``without_s2``
    (patches paired with no S2 patch of the release) and ``examples`` of those."""

    @property
    def counts(self) -> dict[str, int]:
        return {
            "samples": self.samples,
            "labels_without_source": self.labels_without_source,
            "source_without_labels": self.source_without_labels,
            "skipped": len(self.skipped),
        }


def _parts(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class _Inputs:
    s2: InputSpec
    labels: InputSpec
    metadata: tuple[InputSpec, ...]
    s1: InputSpec | None = None
    reference_maps: InputSpec | None = None


def _spec(value: str | tuple[str, ...] | None, role: str) -> InputSpec | None:
    parts = _parts(value)
    return InputSpec(parts, role) if parts else None
