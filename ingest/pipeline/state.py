"""A run's state: its options, where progress and warnings go, and what it has seen so far."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..archive.members import IgnoredMembers, Warn
from ..config import RunConfig, usable_cores
from ..errors import InputDataError
from ..layouts.base import Layout
from ..layouts.feeds import Meter
from ..layouts.partners import Partner
from ..layouts.stage import PartnerCounts
from ..sources.inputs import InputSpec
from ..sources.reader_process import ArchiveReader, room_for_ring
from ..store.staging import Staging

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


def ignore(message: str) -> None:
    return None


@dataclass
class RunState:
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
    pool: ProcessPoolExecutor | None = None
    """The shard writers' processes, started ahead (:func:`~ingest.store.writers.start_pool`):
    the first S2 pass takes them, and the run shuts them down if none does."""

    readers: list[ArchiveReader] = field(default_factory=list)
    """Every archive reader process the run started (:meth:`reader`), closed when it ends."""
    ahead: ArchiveReader | None = None
    """The S2 archive's reader, started before the labels are read (:meth:`read_ahead`)."""

    def read_ahead(self, spec: InputSpec) -> None:
        """Start reading ``spec`` now, in a process (if the run reads in processes): it reads
        ahead into its ring while the run reads the labels."""
        self.ahead = self._new_reader(spec)

    def reader(self, spec: InputSpec) -> ArchiveReader | None:
        """The Sink's reader of ``spec``: the one started ahead for it, else a new one; None when
        the run reads in its own process (``--workers 0``, fewer than 3 cores, no room in shared
        memory)."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead.spec == spec:
            return ahead
        if ahead is not None:
            ahead.close()
        return self._new_reader(spec)

    def close_readers(self) -> None:
        """Stop every reader process still running (at the run's end, or its failure)."""
        self.ahead = None
        for reader in self.readers:
            reader.close()
        self.readers.clear()

    def _new_reader(self, spec: InputSpec) -> ArchiveReader | None:
        c = self.config
        if c.workers <= 0 and c.cluster is None:
            return None
        # A reader process only with cores to spare for it. On two, the run is CPU-bound from
        # its first S2 patch to its last and the process costs CPU (its start, the copy into the
        # ring): 10,000 reBEN patches, alternating, medians of 4: S2 only 9.4-9.7 s either way,
        # with S1 and maps 16.33 s against 15.99 s in the run's process (+1.2 CPU-s). Its gain is
        # the reader's chain, 5.5 -> 4.2 s (benchmarks/bench_reader.py), which bounds a run once
        # the writers have cores of their own. On one core it is all cost (S2 only 16.4 -> 17.7
        # s under `taskset -c 0`, two runs of bench_partners).
        if usable_cores() < 3:
            return None
        if not room_for_ring():
            self.note("/dev/shm is nearly full: the archives are read in the run's own process")
            return None
        reader = ArchiveReader(spec, policy=c.retry, endpoint=c.endpoint, warn=self.warn)
        self.readers.append(reader)
        return reader

    def take_pool(self) -> ProcessPoolExecutor | None:
        pool, self.pool = self.pool, None
        return pool

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
