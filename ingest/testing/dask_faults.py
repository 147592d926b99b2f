"""Faults for the scale-out tests: a dask worker that dies while it writes a shard.

Registered on a cluster, :class:`DieWritingShard` kills the worker process (``os._exit``, as an
OOM kill or a lost machine would: no cleanup, no exception) the first time any worker starts a
shard-writing task, once per marker file. The marker records which task it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..store.cluster import TASK_PREFIX


class DieWritingShard(WorkerPlugin):  # type: ignore[misc]  # distributed is untyped here
    """Kill the worker that first starts a shard task (one kill per ``marker``)."""

    def __init__(self, marker: str | os.PathLike[str]) -> None:
        self.marker = os.fspath(marker)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or not str(key).startswith(TASK_PREFIX):
            return
        try:
            with open(self.marker, "x", encoding="utf-8") as out:  # only the first one dies
                out.write(str(key))
        except FileExistsError:
            return
        os._exit(1)


def killed_task(marker: str | os.PathLike[str]) -> str | None:
    """The key of the task whose worker was killed, or None if none was."""
    path = Path(marker)
    return path.read_text(encoding="utf-8") if path.exists() else None
