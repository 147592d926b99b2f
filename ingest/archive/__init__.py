"""Archive: a gzip'd tar stream read member by member (``tarstream``), its members checked and
grouped into item folders (``members``).

Public entry: :func:`iter_archive`.
"""

from .members import iter_archive

__all__ = ["iter_archive"]
