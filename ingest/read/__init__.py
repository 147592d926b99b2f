"""Read: a finished store opened lazily with dask chunks on its shards (``reading``), the
``ds.ben`` accessor (``accessor``), ``ingest info``'s summary and figure (``info``), the shard
reader they all share (``shards``: the layout and the one rule for shard indexes; ``decoding``:
the chunk decoder; ``files``: byte ranges of shard objects), and for training the fast sample
reader (``samples``, its planned reads in ``prepared``), the shard-aware epoch engine
(``epochs``) and the map-style dataset over them (``dataset``).

Public entries: :func:`open_store` (analysis) and :class:`SampleDataset` (training).
"""

from .dataset import SampleDataset
from .reading import open_store

__all__ = ["SampleDataset", "open_store"]
