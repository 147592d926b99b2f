"""Archive-first ingest of BigEarthNet (Radiant MLHub collections) into one analysis-ready
Zarr store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .read import open_store

__all__ = ["__version__", "open_store"]


def __getattr__(name: str) -> Any:
    """``ingest.open_store`` imports xarray and dask on first use only: ``import ingest`` (and
    every ``ingest`` command) stays light."""
    if name == "open_store":
        from .read import open_store

        return open_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
