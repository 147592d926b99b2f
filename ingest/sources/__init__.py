"""Sources: the bytes of a collection archive — a local file, an http(s) URL or the MLHub archive
endpoint (``endpoint``) — with broken connections resumed by ``Range`` (``download``).

Public entry: :func:`open_archive`.
"""

from .endpoint import open_archive

__all__ = ["open_archive"]
