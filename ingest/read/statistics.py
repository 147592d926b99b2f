"""Per-band statistics from the store: mean and standard deviation over the selected samples, as a
model sees the bands (after resampling to one size), computed with dask and recorded in the store.

Published statistics (ConfigILM's table) are for the official train split of the whole release,
at three sizes and three interpolations; a store holding a subset (a class, a country, no snow),
another size, or torchgeo's resampling needs its own. Each dask chunk (one shard of samples) is
resampled with the same kernels the model-ready samples use (:mod:`ingest.read.resample`) and
reduced to a count, a mean and a sum of squared deviations per band in float64; the chunks'
partials are merged with Chan et al.'s pairwise formula, so the result is the two-pass value
over all pixels (to float64 rounding) whether it runs on one machine or a cluster. The standard
deviation is the population one (``ddof=0``); over millions of pixels the difference is nil.

Recorded as the root attribute ``statistics`` (a list; one entry per split, size and
interpolation, replaced when computed again) and consolidated, so that ``ingest info`` lists
them and ``SampleDataset(..., normalize="store")`` finds them.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import StoreError, UsageError
from .accessor import SPLITS
from .conventions import Statistics
from .resample import INTERPOLATIONS, gdal_axis, resize_into, torch_axis

__all__ = ["MODES", "StoreStatistics", "compute", "merge", "partials", "record", "recorded"]

#: Interpolations statistics can be computed for: torch's three (ConfigILM) and ``gdal``
#: (torchgeo's GDAL bilinear, rounded to integers).
MODES = (*INTERPOLATIONS, "gdal")
#: The per-pixel arrays whose bands get statistics.
_BAND_ARRAYS = ("bands_10m", "bands_20m", "bands_60m", "bands_s1")


@dataclass(frozen=True)
class StoreStatistics:
    split: str | None
    """The split the samples were taken from, None for all samples."""
    size: int
    interpolation: str
    samples: int
    mean: dict[str, float]
    std: dict[str, float]

    def entry(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "size": self.size,
            "interpolation": self.interpolation,
            "samples": self.samples,
            "bands": {b: {"mean": self.mean[b], "std": self.std[b]} for b in self.mean},
            "ddof": 0,
            "computed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "ingest_version": __version__,
        }


def partials(block: np.ndarray, size: int, mode: str) -> np.ndarray:
    """(bands, 3): pixel count, mean and sum of squared deviations of each band of ``block``
    (samples, bands, h, w) once resampled to ``size`` x ``size`` with ``mode``."""
    n, bands, h, w = block.shape
    out = np.zeros((bands, 3), np.float64)
    if n == 0:
        return out
    ay = gdal_axis(h, size) if mode == "gdal" else torch_axis(h, size, mode)
    ax = ay if w == h else (gdal_axis(w, size) if mode == "gdal" else torch_axis(w, size, mode))
    resized = np.empty((n, bands, size, size), np.float32)
    resize_into(block, resized, ay, ax)
    for b in range(bands):
        values = resized[:, b].astype(np.float64).ravel()
        mean = values.mean()
        out[b] = (values.size, mean, np.square(values - mean).sum())
    return out


def _partials_block(block: np.ndarray, size: int, mode: str) -> np.ndarray:
    return partials(np.asarray(block), size, mode)[None]


def merge(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Chan et al.'s pairwise merge of :func:`partials` (count, mean, M2) rows."""
    total = np.zeros_like(parts[0]) if parts else np.zeros((0, 3))
    for part in parts:
        n_a, n_b = total[:, 0], part[:, 0]
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = part[:, 1] - total[:, 1]
            mean = np.where(n > 0, total[:, 1] + delta * np.where(n > 0, n_b / n, 0), 0.0)
            m2 = total[:, 2] + part[:, 2] + np.where(n > 0, delta**2 * n_a * n_b / n, 0.0)
        total = np.stack([n, mean, m2], axis=1)
    return total


def compute(
    store: str,
    *,
    split: str | None = "train",
    size: int = 120,
    interpolation: str = "bilinear",
    storage_options: dict[str, Any] | None = None,
) -> StoreStatistics:
    """Mean and std of every S2 (and S1) band over the samples of ``split`` (None: all), after
    resampling to ``size`` with ``interpolation``; runs on the current dask scheduler (a
    ``distributed.Client`` when one is active)."""
    import dask
    import dask.array as da

    from .reading import open_store

    if interpolation not in MODES:
        raise UsageError(f"unknown interpolation {interpolation!r} (one of {', '.join(MODES)})")
    if not isinstance(size, int) or not 1 <= size <= 4096:
        raise UsageError(f"size must be a number of pixels from 1 to 4096, not {size!r}")
    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split {split!r} (one of {', '.join(SPLITS)}, or all)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unfinished store is refused just below
        ds = open_store(store, storage_options=storage_options)
    if ds.attrs.get("complete") is not True:
        raise StoreError(f"{store}: the store is not complete (finish it with `ingest run "
                         "--resume`); statistics of part of it would be wrong")  # fmt: skip
    if split is not None:
        if "split" not in ds.variables:
            raise UsageError(f"{store} records no split (use --split all)")
        ds = ds.ben.select(split=split)
    names = [n for n in _BAND_ARRAYS if n in ds.data_vars]
    if not names or ds.sizes["sample"] == 0:
        what = "no band arrays" if not names else f"no samples in split {split!r}"
        raise UsageError(f"{store}: {what}, nothing to compute statistics over")
    reductions = []
    bands: list[str] = []
    for name in names:
        data = ds[name].data
        assert isinstance(data, da.Array)
        blocks = da.map_blocks(  # type: ignore[no-untyped-call]
            _partials_block,
            data,
            dtype=np.float64,
            chunks=((1,) * data.numblocks[0], (data.shape[1],), (3,)),
            drop_axis=[2, 3],
            new_axis=[2],
            meta=np.empty((0, 0, 0), np.float64),
            size=size,
            mode=interpolation,
        )
        reductions.append(blocks)
        bands.extend(str(b) for b in ds[name][ds[name].dims[1]].values)
    computed = dask.compute(*reductions)  # type: ignore[attr-defined,no-untyped-call]
    merged = np.concatenate([merge(list(parts)) for parts in computed])
    count = merged[:, 0]
    std = np.sqrt(np.where(count > 0, merged[:, 2] / np.maximum(count, 1), np.nan))
    return StoreStatistics(
        split, size, interpolation, int(ds.sizes["sample"]),
        {b: float(m) for b, m in zip(bands, merged[:, 1], strict=True)},
        {b: float(s) for b, s in zip(bands, std, strict=True)},
    )  # fmt: skip


def record(
    store: str, stats: StoreStatistics, storage_options: dict[str, Any] | None = None
) -> None:
    """Add (or replace) ``stats`` in the store's ``statistics`` attribute and consolidate, holding
    the store's writer lock (a run writing the store refuses it, and it refuses a run)."""
    import zarr

    from ..store.location import StoreLocation
    from ..store.lock import hold

    location = StoreLocation.of(store, storage_options)
    with hold(location, note=lambda _: None):
        group = location.open_group(mode="r+", use_consolidated=False)
        old = group.attrs.get("statistics", [])
        entries = [e for e in (old if isinstance(old, list) else [])
                   if isinstance(e, dict) and _key(e) != _key(stats.entry())]  # fmt: skip
        group.attrs["statistics"] = [*entries, stats.entry()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec yet
            zarr.consolidate_metadata(group.store)


def _key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry.get("split"), entry.get("size"), entry.get("interpolation"))


def recorded(
    attrs: Mapping[str, Any],
    where: str,
    split: str | Sequence[str] | None,
    size: int,
    interpolation: str,
) -> Statistics:
    """The statistics recorded in a store for ``size`` and ``interpolation``: those of the
    train split (what a model is normalised with, whatever split it reads), else of all samples."""
    entries = attrs.get("statistics", [])
    if not isinstance(entries, list):
        raise StoreError(f"{where}: the statistics attribute is not a list")
    found = {e.get("split"): e for e in entries
             if isinstance(e, dict) and _key(e)[1:] == (size, interpolation)}  # fmt: skip
    entry = found.get("train", found.get(None))
    if entry is None:
        raise UsageError(
            f"{where} has no statistics for size {size}, {interpolation}: run "
            f"`ingest stats {where} --size {size} --interpolation {interpolation}`"
        )
    bands = entry.get("bands", {})
    label = "train split" if entry.get("split") == "train" else "all samples"
    return Statistics({b: float(v["mean"]) for b, v in bands.items()},
                      {b: float(v["std"]) for b, v in bands.items()},
                      f"{where} ({label}, {size}, {interpolation})")  # fmt: skip
