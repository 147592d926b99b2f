"""Decode: band GeoTIFF bytes to pixels (``geotiff``) and an item's 12 bands to one validated patch
(``patches``).

Public entry: :func:`decode_patch`.
"""

from .patches import decode_patch

__all__ = ["decode_patch"]
