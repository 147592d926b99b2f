"""Catalog: browsing and downloading like the BigEarthNet notebook, against the items API —
collections and filtered items (``browse``), item assets and whole archives (``fetch``) — and the
items API as the ingest's item feed (``items_feed``).

Public entry: the notebook's functions, :func:`list_collections`, :func:`find_items`,
:func:`download_item` and :func:`download_archive`.
"""

from .browse import find_items, list_collections
from .fetch import download_archive, download_item

__all__ = ["download_archive", "download_item", "find_items", "list_collections"]
