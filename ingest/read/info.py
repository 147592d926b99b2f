"""``ingest info``: what a store holds, as a dict (:func:`summary`), as text (:func:`render`) and
as a figure (:func:`plot`: class frequencies and a mosaic of true-colour patches).

The summary reads metadata and the small label, flag and split arrays with zarr directly, so it
works on unfinished stores too (whose small arrays do not exist yet) and never reads a band shard.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.core.sync import sync

from ..errors import UsageError
from ..units import human_bytes
from .accessor import SPLITS, BenAccessor
from .reading import IncompleteStoreWarning, open_group, open_store

__all__ = ["plot", "render", "summary"]

#: The data variables of the contract, in the order the summary lists them.
DATA_VARIABLES = (
    "bands_10m",
    "bands_20m",
    "bands_60m",
    "bands_s1",
    "reference_map",
    "labels",
    "labels19",
    "cloud_and_shadow",
    "seasonal_snow",
)
#: The root attributes the summary repeats.
_ATTRIBUTES = (
    "title",
    "ingest_version",
    "contract_version",
    "dataset",
    "layout",
    "created",
    "counts",
)
#: Which per-pixel array shows which modality is in the store.
MODALITIES = {"s2": "bands_10m", "s1": "bands_s1", "reference_maps": "reference_map"}
_MODALITY_NAMES = {"s2": "Sentinel-2", "s1": "Sentinel-1", "reference_maps": "reference maps"}
_UNFINISHED = "NO (unfinished or interrupted: continue it with ingest run --resume)"
#: Patches in the mosaic of :func:`plot`, at most.
MOSAIC = 16


def summary(
    store: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The facts ``ingest info`` prints, JSON-serialisable.

    Keys: ``store``, ``complete``, ``samples`` (None while the store is unfinished),
    ``attributes`` (version, contract, ``dataset`` and ``layout``, creation time, title, counts,
    skipped), ``modalities`` (of ``s2``, ``s1``, ``reference_maps``: those with their arrays),
    ``classes`` (43 or 19: the store's nomenclature, 19 for ``bigearthnet-v2``),
    ``class_counts`` (name -> patches in the store's nomenclature, canonical order) and
    ``class_counts_19`` (the same for the 19 classes), ``cloud_and_shadow`` and
    ``seasonal_snow`` (patches flagged), ``split_counts`` (train/validation/test/"" -> patches, or
    None when the store has no split), ``size_bytes`` and ``layout`` (array -> shape, dtype,
    chunks, shards). Raises :class:`~ingest.errors.StoreError` when ``store`` is not a store.
    """
    group = open_group(store, storage_options)
    arrays = dict(group.arrays())
    attrs = dict(group.attrs)
    skipped = attrs.get("skipped")
    labels19 = _values(arrays, "labels19")
    # bigearthnet-v1 stores count the 43 classes, v2 stores (and unfinished ones without their
    # `label` dimension) the 19 they have.
    nineteen_only = "label" not in arrays
    labels = labels19 if nineteen_only else _values(arrays, "labels")
    return {
        "store": os.fspath(store),
        "complete": attrs.get("complete") is True,
        "samples": None if labels19 is None else int(labels19.shape[0]),
        "attributes": {key: attrs.get(key) for key in _ATTRIBUTES}
        | {"skipped": len(skipped) if isinstance(skipped, list) else 0},
        "modalities": [m for m, name in MODALITIES.items() if name in arrays],
        "classes": 19 if nineteen_only else 43,
        "class_counts": _counts(arrays, "label19" if nineteen_only else "label", labels),
        "class_counts_19": _counts(arrays, "label19", labels19),
        "cloud_and_shadow": _flag_count(arrays, "cloud_and_shadow"),
        "seasonal_snow": _flag_count(arrays, "seasonal_snow"),
        "split_counts": _split_counts(arrays),
        "size_bytes": int(sync(group.store.getsize_prefix(group.path))),
        "layout": {name: _layout(arrays[name]) for name in DATA_VARIABLES if name in arrays},
    }


def _layout(array: zarr.Array[Any]) -> dict[str, Any]:
    shards = array.shards
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": None if shards is None else list(shards),
    }


def _values(arrays: dict[str, Any], name: str) -> np.ndarray | None:
    return np.asarray(arrays[name][...]) if name in arrays else None


def _counts(arrays: dict[str, Any], dim: str, labels: np.ndarray | None) -> dict[str, int] | None:
    names = _values(arrays, dim)
    if labels is None or names is None:
        return None
    totals = labels.sum(axis=0)
    return {str(name): int(total) for name, total in zip(names, totals, strict=True)}


def _flag_count(arrays: dict[str, Any], name: str) -> int | None:
    values = _values(arrays, name)
    return None if values is None else int(values.sum())


def _split_counts(arrays: dict[str, Any]) -> dict[str, int] | None:
    values = _values(arrays, "split")
    if values is None:
        return None
    names, counts = np.unique(values.astype(object), return_counts=True)
    found = dict(zip((str(n) for n in names), (int(c) for c in counts), strict=True))
    ordered = {s: found.pop(s, 0) for s in (*SPLITS, "")}
    return ordered | found


def render(facts: dict[str, Any]) -> str:
    """The summary as the text ``ingest info`` prints."""
    attrs = facts["attributes"]
    samples = facts["samples"]
    lines = [
        f"store:            {facts['store']}",
        f"complete:         {'yes' if facts['complete'] else _UNFINISHED}",
        f"samples:          {'unknown (not finished)' if samples is None else f'{samples:,}'}",
        f"size on disk:     {human_bytes(facts['size_bytes'])}",
        f"ingest version:   {attrs.get('ingest_version') or '-'}"
        f" (contract {attrs.get('contract_version') or '-'})",
        f"dataset:          {attrs.get('dataset') or '-'} (layout {attrs.get('layout') or '-'})",
        f"modalities:       {', '.join(_MODALITY_NAMES[m] for m in facts['modalities']) or '-'}",
        f"created:          {attrs.get('created') or '-'}",
        f"skipped items:    {attrs.get('skipped', 0):,}",
    ]
    for flag in ("cloud_and_shadow", "seasonal_snow"):
        if facts[flag] is not None:
            lines.append(f"{flag + ':':<18}{facts[flag]:,} {_share(facts[flag], samples)}")
    if facts["split_counts"] is not None:
        parts = [f"{name or 'none'} {count:,}" for name, count in facts["split_counts"].items()]
        lines.append(f"splits:           {', '.join(parts)}")
    lines.append("layout:")
    for name, layout in facts["layout"].items():
        shards = layout["shards"]
        lines.append(
            f"  {name:<17}{_shape(layout['shape']):<23}{layout['dtype']:<7}"
            f"chunk {_shape(layout['chunks'])}"
            + ("" if shards is None else f", shard {_shape(shards)}")
        )
    if facts["class_counts"] is not None:
        lines.append(f"classes ({facts['classes']}, canonical order):")
        width = max(len(f"{c:,}") for c in facts["class_counts"].values())
        for index, (name, count) in enumerate(facts["class_counts"].items()):
            lines.append(f"  {index:2d}  {count:>{width},}  {name}")
    return "\n".join(lines)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _share(count: int, total: int | None) -> str:
    return f"({100 * count / total:.1f}%)" if total else ""


def plot(
    store: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write a PNG (1600 × 900 px): class frequencies on the left, and on the right a mosaic of up
    to 16 true-colour patches (evenly spaced through the store, :meth:`BenAccessor.rgb` stretch)
    titled with their classes (in the store's nomenclature: 19 classes for a ``bigearthnet-v2``
    store)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    facts = summary(store, storage_options)
    figure = Figure(figsize=(16, 9), dpi=100)
    FigureCanvasAgg(figure)  # Agg: renders to a file, needs no display
    # Left: the class frequencies (43 or 19: the store's nomenclature); right: a 4 × 4 mosaic.
    bars = figure.add_subplot(figure.add_gridspec(1, 1, left=0.2, right=0.47, top=0.93)[0])
    counts = facts["class_counts"] or {}
    bars.barh(range(len(counts)), list(counts.values()), color="#4a7f4a")
    bars.set_yticks(range(len(counts)), [textwrap.shorten(n, 48) for n in counts], fontsize=6)
    bars.invert_yaxis()
    bars.set_xlabel("patches")
    bars.set_title(
        f"class frequencies ({facts['samples'] or 0:,} patches, {facts['classes']} classes)",
        fontsize=10,
    )
    cells = figure.add_gridspec(
        4, 4, left=0.52, right=0.98, top=0.95, bottom=0.02, hspace=0.4, wspace=0.06
    )
    samples = _mosaic_samples(facts)
    ben = BenAccessor(_open_quietly(store, storage_options)) if samples else None
    for k, i in enumerate(samples):
        assert ben is not None
        axes = figure.add_subplot(cells[k // 4, k % 4])
        axes.imshow(ben.rgb(i), interpolation="nearest")
        axes.set_axis_off()
        title = "; ".join(ben.labels_of(i)) or "(no class)"
        axes.set_title(textwrap.fill(textwrap.shorten(title, 100), 40), fontsize=6)
    try:
        figure.savefig(os.fspath(png_path), format="png")
    except OSError as exc:
        raise UsageError(f"{png_path}: cannot write the figure ({exc.strerror})") from None


def _mosaic_samples(facts: dict[str, Any]) -> list[int]:
    samples = facts["samples"] or 0
    if "bands_10m" not in facts["layout"] or samples == 0:
        return []
    return sorted({round(x) for x in np.linspace(0, samples - 1, min(MOSAIC, samples))})


def _open_quietly(
    store: str | os.PathLike[str], storage_options: dict[str, Any] | None
) -> xr.Dataset:
    with warnings.catch_warnings():
        # The summary already says when the store is unfinished; the figure shows what is there.
        warnings.simplefilter("ignore", IncompleteStoreWarning)
        return open_store(store, storage_options=storage_options)
