"""Archive-first ingest of BigEarthNet (Radiant MLHub collections) into one analysis-ready
Zarr store."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bigearthnet-ingest")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
