"""Store: the Zarr store of the contract — arrays, metadata, journal and ``complete``
(``zarrstore``), the shard encoder (``shards``), batch buffers (``buffers``) and the writers that
fill them (``writers`` in processes, ``cluster`` as dask tasks), where the store lives
(``location``) and its verification (``verify``).

Public entry: :func:`check` (what ``ingest verify`` runs); the pipeline writes through
``zarrstore`` and ``writers``.
"""

from .verify import check

__all__ = ["check"]
