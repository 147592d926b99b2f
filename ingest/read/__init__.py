"""Read: a finished store opened lazily with dask chunks on its shards (``reading``), the
``ds.ben`` accessor (``accessor``) and ``ingest info``'s summary and figure (``info``).

Public entry: :func:`open_store`.
"""

from .reading import open_store

__all__ = ["open_store"]
