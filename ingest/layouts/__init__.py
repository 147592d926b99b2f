"""Layouts: how one distribution of BigEarthNet lays out its items — today MLHub's two STAC
collections (``mlhub``: label items, label index, selection) and the official tables shipped with
``bigearthnet-common`` (``tables``) — and the feeds that deliver those items (``feeds``).

Public entry: :func:`open_archive_feed`.
"""

from .feeds import open_archive_feed

__all__ = ["open_archive_feed"]
