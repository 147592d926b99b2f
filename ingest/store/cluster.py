"""Scale-out: the shard writes of a run as tasks on a dask.distributed cluster.

The client (this process) still owns the archive stream: it reads, joins and decodes each patch into
a batch of exactly one shard, as in a local run (decoding is where a bad patch is found, and whether
it is skipped decides every later sample's number). Each batch becomes one task that compresses and
writes its own shard objects and journal entry (:func:`ingest.store.zarrstore.write_shard`), so no
two tasks ever touch one shard and no locks are needed. At most ``in_flight`` tasks are outstanding:
the reader waits for one to finish before it fills another batch (backpressure).

The batch travels inside the task, not as scattered data: if a worker dies the scheduler still
holds the task and reruns it on another worker (rewriting a shard gives the same bytes), whereas
scattered data would die with the worker. A lost client leaves the journal of the shards written
so far, so ``--resume`` continues the store.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import dask
import numpy as np
from distributed import Client, Future, LocalCluster, wait

from ..errors import StoreError, UsageError
from . import zarrstore as store
from .buffers import SPARE_BUFFERS, Buffers, Written, shapes
from .location import StoreLocation
from .staging import Staged

#: Task retries after an exception in the task itself (a worker's death is retried by the
#: scheduler, up to ``distributed.scheduler.allowed-failures`` times).
RETRIES = 2
LOCAL_PREFIX = "local:"
#: Keys of the shard-writing tasks start with this (then the shard index and a run token).
TASK_PREFIX = "ingest-shard-"
#: How long to try reaching a scheduler given by address.
CONNECT_TIMEOUT = "20s"


def connect(cluster: str) -> tuple[Client, LocalCluster | None]:
    """A client for ``local:N`` (a new LocalCluster of N one-thread worker processes, on
    loopback) or a scheduler address; the LocalCluster is returned so it can be closed."""
    if cluster.startswith(LOCAL_PREFIX):  # N >= 1 checked by RunConfig
        # Its worker processes start with Ctrl-C ignored (a disposition they inherit), so that a
        # Ctrl-C at the terminal reaches the client alone, which closes the cluster; one pressed
        # during these few seconds of start-up is lost.
        with _ignored_sigint():
            local = LocalCluster(
                n_workers=int(cluster.removeprefix(LOCAL_PREFIX)),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
        return Client(local), local
    try:
        return Client(cluster, timeout=CONNECT_TIMEOUT), None
    except OSError as exc:
        raise UsageError(f"--cluster {cluster}: cannot reach the scheduler ({exc})") from None


@contextmanager
def _ignored_sigint() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class DaskWriter:
    """A :class:`~ingest.store.writers.ShardWriter` whose batches are written by dask tasks."""

    def __init__(
        self,
        client: Client,
        location: StoreLocation,
        length: int,
        *,
        in_flight: int | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._location = location
        self._shapes = shapes(length)
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        self._limit = in_flight or workers + SPARE_BUFFERS
        self._pending: deque[Future] = deque()
        self._run = uuid.uuid4().hex[:8]
        self._on_close = on_close

    @property
    def dashboard_link(self) -> str:
        return str(self._client.dashboard_link)

    def buffers(self) -> Buffers:
        while len(self._pending) >= self._limit:
            wait(list(self._pending), return_when="FIRST_COMPLETED")
            self._collect()
        # Fresh arrays each time: the task's arguments are sent after ``submit`` returns, from
        # memory that must not be refilled meanwhile.
        return {name: np.empty(shape, np.uint16) for name, shape in self._shapes.items()}

    def submit(
        self,
        buffers: Buffers,
        start: int,
        record: store.ShardRecord,
        staged: Staged,
        *,
        journal: bool = True,
    ) -> Written:
        count = len(record.patch_ids)
        bands = {name: array[:count] for name, array in buffers.items()}
        # The workers may not see this machine's staging files: the chunks travel as bytes.
        carried = {name: chunks.loaded() for name, chunks in staged.items()}
        # A batch is ~41 MB and is meant to travel with its task (see the module docstring).
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GB"}):
            future: Future = self._client.submit(
                store.write_shard,
                self._location,
                start,
                bands,
                record,
                carried,
                journal=journal,
                key=f"{TASK_PREFIX}{record.index:07d}-{self._run}",
                retries=RETRIES,
                pure=False,
            )
        self._pending.append(future)
        written: Written = future
        return written

    def submit_partners(self, start: int, record: store.ShardRecord, staged: Staged) -> Written:
        """The partner arrays' shard and the journal entry, as a task of its own (its chunks
        carried as bytes, like :meth:`submit`'s)."""
        carried = {name: chunks.loaded() for name, chunks in staged.items()}
        future: Future = self._client.submit(
            store.write_shard,
            self._location,
            start,
            {},
            record,
            carried,
            key=f"{TASK_PREFIX}{record.index:07d}-partners-{self._run}",
            retries=RETRIES,
            pure=False,
        )
        self._pending.append(future)
        written: Written = future
        return written

    def close(self) -> None:
        try:
            while self._pending:
                wait(list(self._pending))
                self._collect()
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Cancel what is queued; shards already written stay journalled (resumable). Never
        raises: it runs while an error or a Ctrl-C is on its way up (after which the cluster's
        loop may already be closed)."""
        with suppress(Exception):
            self._client.cancel(list(self._pending))
        self._pending.clear()
        with suppress(Exception):
            self._shutdown()

    def _collect(self) -> None:
        """Drop finished tasks, raising the first task's error."""
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            if future.status == "error":
                error = future.exception()
                raise (
                    error
                    if isinstance(error, StoreError)
                    else StoreError(
                        f"{self._location}: writing a shard failed on the cluster: {error}"
                    )
                )
            future.result()

    def _shutdown(self) -> None:
        self._client.close()
        if self._on_close is not None:
            self._on_close()


def make_dask_writer(
    cluster: str, location: StoreLocation, length: int, note: Callable[[str], None]
) -> DaskWriter:
    """Connect to ``cluster`` and announce its dashboard."""
    if location.is_local and not cluster.startswith(LOCAL_PREFIX):
        note(f"note: the workers of {cluster} must see {location} at the same path")
    client, local = connect(cluster)
    writer = DaskWriter(client, location, length, on_close=None if local is None else local.close)
    note(f"dask dashboard: {writer.dashboard_link}")
    return writer
