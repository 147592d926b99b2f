"""Layouts: how each distribution of BigEarthNet lays out its labels and patches, behind one seam
(``base``: the :class:`~ingest.layouts.base.Layout` protocol and the recognition of an archive by
its first member). One module per distribution: ``mlhub_layout`` (MLHub's two STAC collections;
``mlhub`` validates their label items), ``zenodo_v1`` (``BigEarthNet-S2-v1.0.tar.gz``),
``reben_v2`` (``BigEarthNet-S2.tar.zst`` with the ``metadata`` parquet files). Beside them:
``labels`` (selection, label index), ``tables`` (the official v1 tables of ``bigearthnet-common``)
and ``feeds`` (what delivers the items).

Public entry: :func:`make_layout`.
"""

from __future__ import annotations

from .base import LAYOUTS, Inputs, Layout
from .mlhub_layout import MlhubLayout
from .reben_v2 import RebenV2
from .zenodo_v1 import ZenodoV1

__all__ = ["LAYOUTS", "make_layout"]


def make_layout(name: str, inputs: Inputs) -> Layout:
    """The layout called ``name`` (one of :data:`LAYOUTS`) over ``inputs``."""
    layouts: dict[str, type[MlhubLayout] | type[ZenodoV1] | type[RebenV2]] = {
        "mlhub": MlhubLayout,
        "zenodo-v1": ZenodoV1,
        "reben-v2": RebenV2,
    }
    return layouts[name](inputs)
