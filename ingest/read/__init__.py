"""Read: a finished store opened lazily with dask chunks on its shards (``reading``), the
``ds.ben`` accessor (``accessor``), ``ingest info``'s summary and figure (``info``), and for
training the fast sample reader (``samples``), the shard-aware epoch engine (``epochs``) and the
map-style dataset over them (``dataset``).

Public entries: :func:`open_store` (analysis) and :class:`SampleDataset` (training).
"""

from .dataset import SampleDataset
from .reading import open_store

__all__ = ["SampleDataset", "open_store"]
