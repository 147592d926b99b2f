"""Partner streams: each partner archive (Sentinel-1, reference maps) read, decoded and staged by a
process of its own while the S2 archive streams.

The process walks its archive, pairs each patch with its S2 patch, decodes and checks it (only
the partners of selected S2 patches; a second partner of one S2 patch is an error), appends what
the staging file keeps (:meth:`~ingest.store.staging.Staging.encode`) to the run's staging file
and tells the run, in
batches, which partners the file now holds (flushed before each batch is sent, so a writer that
reads them finds them). The run indexes them in its :class:`~ingest.store.staging.Staging`
(:meth:`PartnerStreams.poll`), and a thread of the run receives the messages so that the process
never waits on a reader busy with the S2 archive.

The process holds no archive in memory: one patch at a time, and the S2 ids already staged (to
refuse a second partner). It leaves Ctrl-C to the run and exits when the run dies (kill -9): a
resumed run stages again into a fresh folder. An error (``--on-error fail``, a broken stream)
ends the process and is raised by the run's next :meth:`PartnerStreams.poll`.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np

from ..archive.members import EXAMPLES, BadItem, CollectionDoc, IgnoredMembers
from ..errors import IngestError, InputDataError
from ..processes import held_sigint, init_child, portable, rebuilt
from ..sources.download import RetryPolicy
from ..sources.endpoint import Endpoint
from ..store import zarrstore as store
from ..store.location import StoreLocation
from ..store.staging import Entry, Staging
from .feeds import open_archive_feed
from .labels import LabelIndex
from .partners import Partner
from .stage import PartnerCounts

#: Partners per message: ~20 µs of pickling and a pipe write each, which the run's receiving
#: thread unpickles (messages of 16 measured no slower than of 64 at 10,000 patches).
BATCH = 16


@dataclass(frozen=True)
class StageJob:
    """What a partner process needs (pickled to it)."""

    partner: Partner
    location: StoreLocation
    path: Path
    """The staging file."""
    raw: bool
    unselected: frozenset[str]
    """S2 patch ids the index has but the selection leaves out: their partners are not staged."""
    endpoint: Endpoint
    policy: RetryPolicy
    skip: bool
    """``--on-error skip``: a bad partner is reported and passed over, else it ends the stream."""


@dataclass
class PartnerStream:
    """The run's side of one partner process."""

    partner: Partner
    staging: Staging
    process: multiprocessing.process.BaseProcess
    counts: PartnerCounts = field(default_factory=PartnerCounts)
    done: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: IgnoredMembers = field(default_factory=IgnoredMembers)
    items: int = 0
    bytes_read: int = 0
    size: int | None = None


class PartnerStreams:
    """The partner processes of a run, started at once, polled by the S2 reader."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.streams: list[PartnerStream] = []
        self._warn = warn
        self._messages: queue.SimpleQueue[tuple[int, tuple[Any, ...]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._spare: list[tuple[BaseProcess, Connection, Connection]] = []

    def prepare(self, count: int) -> None:
        """Start ``count`` partner processes now, before their jobs are known: a process's own
        start (a Python interpreter importing the package, ~0.6 s of CPU) then overlaps the run's
        reading of the labels, on a core that would wait. (Started with its job after the
        labels, the run waited 0.76 s in ``Process.start`` for the S1 process to take its job.)
        Processes no :meth:`start` takes end with :meth:`close`."""
        self._spare.extend(_spawn() for _ in range(count))

    def start(
        self,
        partner: Partner,
        index: LabelIndex,
        location: StoreLocation,
        directory: Path,
        *,
        endpoint: Endpoint,
        policy: RetryPolicy,
        skip: bool,
    ) -> PartnerStream:
        """Start streaming ``partner``'s archive into ``directory``: in a process started by
        :meth:`prepare`, else in a new one. The job (with reBEN's S1 names, tens of MB pickled)
        is sent by a thread: the process may still be starting, and the run goes on meanwhile."""
        raw = partner.dtype == "float32"
        staging = Staging.create(store.pixel_array(location, partner.array), directory, raw=raw)
        job = StageJob(partner, location, staging.path, raw, unselected(index), endpoint, policy,
                       skip)  # fmt: skip
        process, jobs, receive = self._spare.pop(0) if self._spare else _spawn()
        sender = threading.Thread(target=_send_job, args=(jobs, job), daemon=True,
                                  name=f"send-{partner.role}")  # fmt: skip
        sender.start()
        self._threads.append(sender)
        stream = PartnerStream(partner, staging, process)
        number = len(self.streams)
        self.streams.append(stream)
        thread = threading.Thread(target=_receive, args=(number, receive, self._messages),
                                  name=f"receive-{partner.role}", daemon=True)  # fmt: skip
        thread.start()
        self._threads.append(thread)
        return stream

    @property
    def all_done(self) -> bool:
        return all(s.done for s in self.streams)

    def poll(self, timeout: float | None = None) -> bool:
        """Apply the messages received so far (waiting up to ``timeout`` seconds for one when
        there is none); raise a stream's error. True when anything arrived."""
        got = False
        while True:
            try:
                if got or timeout is None:
                    number, message = self._messages.get_nowait()
                else:
                    number, message = self._messages.get(timeout=timeout)
            except queue.Empty:
                return got
            got = True
            self._apply(self.streams[number], message)

    def wait(self, each: Callable[[], object] = lambda: None) -> None:
        """Until every stream is done, calling ``each`` after every wait."""
        while not self.all_done:
            self.poll(timeout=0.2)
            each()
            for stream in self.streams:
                if not stream.done and not stream.process.is_alive():
                    self.poll()  # its last messages may still be on their way
                    if not stream.done:
                        raise _ended(stream)

    def close(self) -> None:
        """Stop the processes (at once if still running, unused ones too) and the threads; a
        second call does nothing more."""
        spare, self._spare = self._spare, []
        for process in [s.process for s in self.streams] + [p for p, _, _ in spare]:
            if process.is_alive():
                process.terminate()
            process.join()
        for _, jobs, receive in spare:
            jobs.close()
            receive.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _apply(self, stream: PartnerStream, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "staged":
            _, entries, items, bytes_read, size = message
            stream.staging.add_entries(entries)
            stream.items, stream.bytes_read, stream.size = items, bytes_read, size
        elif kind == "skip":
            _, item, reason = message
            stream.skipped.append({"item": item, "reason": reason})
            self._warn(f"skipped {item}: {reason}")
        elif kind == "warn":
            self._warn(message[1])
        elif kind == "done":
            _, without_s2, examples, records, ignored = message
            stream.counts.without_s2 = without_s2
            stream.counts.examples = examples
            stream.counts.staged = len(stream.staging.names)
            stream.records = records
            stream.ignored = ignored
            stream.done = True
        elif kind == "error":
            raise rebuilt(message[1:], "staging a partner archive")
        elif kind == "gone" and not stream.done:
            stream.process.join(timeout=5)
            raise _ended(stream)


def _ended(stream: PartnerStream) -> IngestError:
    return IngestError(f"{stream.partner.spec.name}: the process staging it ended "
                       f"(exit code {stream.process.exitcode})")  # fmt: skip


def unselected(index: LabelIndex) -> frozenset[str]:
    """The S2 ids of ``index`` its selection leaves out (none without a selection)."""
    if index.selected_count == len(index):
        return frozenset()
    return frozenset(name for name, row in index.rows.items() if not index.selected[row])


def _spawn() -> tuple[BaseProcess, Connection, Connection]:
    """A partner process waiting for its job: the process, the job's pipe, the messages' pipe."""
    jobs_out, jobs_in = multiprocessing.Pipe(duplex=False)
    receive, send = multiprocessing.Pipe(duplex=False)
    # spawn, not fork: the run already has threads (zarr's event loop)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_main, args=(jobs_out, send), name="stage", daemon=True)
    with held_sigint():
        process.start()
    jobs_out.close()
    send.close()
    return process, jobs_in, receive


def _send_job(jobs: Connection, job: StageJob) -> None:
    """Hand ``job`` to its process; a process already gone is reported by its messages' pipe."""
    with suppress(OSError):
        jobs.send(job)
    jobs.close()


def _receive(
    number: int, connection: Connection, messages: queue.SimpleQueue[tuple[int, tuple[Any, ...]]]
) -> None:
    try:
        while True:
            message = connection.recv()
            messages.put((number, message))
            if message[0] in ("done", "error"):
                return
    except (EOFError, OSError):
        messages.put((number, ("gone",)))
    finally:
        connection.close()


def _main(jobs: Connection, connection: Connection) -> None:
    """The partner process: waits for its job, then streams."""
    init_child()  # the run stops it, and it ends with the run
    try:
        try:
            job: StageJob = jobs.recv()
        except EOFError:  # the run ended before it had a job for this process
            return
        finally:
            jobs.close()
        _stream(job, connection)
    except BaseException as error:  # every error goes to the run
        with suppress(OSError):  # unless the run is gone
            connection.send(("error", *portable(error)))
    finally:
        connection.close()


def _stream(job: StageJob, connection: Connection) -> None:
    partner = job.partner
    array = store.pixel_array(job.location, partner.array)
    staging = Staging.create(array, job.path.parent, raw=job.raw)
    out = np.empty(partner.shape, partner.dtype)
    ignored = IgnoredMembers()
    first: dict[str, str] = {}
    """S2 id → the partner staged for it."""
    without_s2, examples = 0, list[str]()
    entries: list[Entry] = []
    offset, items = 0, 0

    def warn(message: str) -> None:
        connection.send(("warn", message))

    def skip_or_raise(error: InputDataError, item: str) -> None:
        if not job.skip:
            raise error
        connection.send(("skip", item, str(error)))

    with job.path.open("wb") as file, open_archive_feed(
        partner.spec, partner.rule, endpoint=job.endpoint, policy=job.policy, warn=warn,
        ignored=ignored,
    ) as feed:  # fmt: skip
        meter = feed.meter

        def send() -> None:
            file.flush()
            connection.send(("staged", entries, items, meter.bytes_read, meter.size))

        for obj in feed.items():
            if isinstance(obj, CollectionDoc):
                continue
            items += 1
            if isinstance(obj, BadItem):
                skip_or_raise(obj.error, obj.item_id)
                continue
            try:
                s2 = partner.pair(obj)
                if s2 is None:
                    without_s2 += 1
                    if len(examples) < EXAMPLES:
                        examples.append(obj.item_id)
                    continue
                if s2 in job.unselected:
                    continue  # its S2 patch is not selected: never written
                georef = partner.decode(obj, out)
                if s2 in first:
                    raise InputDataError(obj.folder, f"a second partner of {s2} (the first was "
                                         f"{first[s2]})")  # fmt: skip
                data = staging.encode(out)
            except InputDataError as error:
                skip_or_raise(error, obj.item_id)
                continue
            file.write(data)
            first[s2] = obj.item_id
            entries.append((s2, obj.item_id, offset, len(data), *georef))
            offset += len(data)
            if len(entries) >= BATCH:
                send()
                entries = []
        send()
        records = feed.records()
    connection.send(("done", without_s2, examples, records, ignored))
