"""Batch buffers: what the shard writers (:mod:`~ingest.store.writers` in processes,
:mod:`~ingest.store.cluster` as dask tasks) hand out to be filled, their shapes, and how many a
writer keeps beyond one per worker. Both writers import this module; neither imports the other."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..nomenclature import BAND_GROUPS

#: Batch buffers beyond one per worker: the reader fills one while each worker writes one, and a
#: spare absorbs jitter (measured: 2 spares ~5% faster than 1 on 2 cores, more gave nothing).
SPARE_BUFFERS = 2
Buffers = dict[str, np.ndarray]
"""Band array name → a (shard length, bands, y, x) uint16 array to fill with samples."""


def shapes(length: int) -> dict[str, tuple[int, ...]]:
    return {g.array_name: (length, len(g.bands), g.size, g.size) for g in BAND_GROUPS}


class Written(Protocol):
    """A submitted shard write (a process pool's or a dask future): done yet, and its result
    (raising its error)."""

    def done(self) -> bool: ...

    def result(self, timeout: float | None = None) -> Any: ...
