"""Archive-first ingest of BigEarthNet (Radiant MLHub collections) into one analysis-ready
Zarr store.

The names below are the public API; user code should import them from here, not from the
sub-packages. They are imported on first use: ``import ingest`` (and every ``ingest`` command)
stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .config import RunConfig, RunReport
    from .errors import IngestError
    from .layouts.labels import Selection
    from .pipeline import run
    from .read import SampleDataset, open_store
    from .store import check

#: Public name → the module that defines it.
_LAZY = {
    "open_store": "ingest.read",
    "SampleDataset": "ingest.read",
    "run": "ingest.pipeline",
    "RunConfig": "ingest.config",
    "RunReport": "ingest.config",
    "Selection": "ingest.layouts.labels",
    "check": "ingest.store",
    "IngestError": "ingest.errors",
}

__all__ = [
    "IngestError",
    "RunConfig",
    "RunReport",
    "SampleDataset",
    "Selection",
    "__version__",
    "check",
    "open_store",
    "run",
]


def __getattr__(name: str) -> Any:
    """``ingest.open_store`` imports xarray and dask on first use only, ``ingest.run`` the
    pipeline; the others likewise."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
