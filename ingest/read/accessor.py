"""The ``ds.ben`` accessor: selection, labels, georeferenced patches, true colour and training
batches on a store opened with :func:`ingest.open_store`.

Everything here keeps the store's cost model: selections are computed from the small label,
flag and split arrays and return ``ds.isel(...)`` with the band arrays still lazy; single patches
read one inner chunk per band array; :meth:`BenAccessor.batches` reads whole dask chunks
(= shards) and shuffles within a window of them, never sample by sample.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import UsageError
from ..nomenclature import BAND_GROUPS, BandGroup
from ..store.location import StoreLocation
from .epochs import Epoch, StoreSource
from .samples import SampleStore, Take

__all__ = ["S1_STRETCH", "SPLITS", "Batch", "BenAccessor", "selection_mask"]

#: The official split names (the wheel's ``val.csv`` is ``validation`` here, as in reBEN).
SPLITS = ("train", "validation", "test")
_GROUPS: dict[str, BandGroup] = {g.resolution: g for g in BAND_GROUPS}
#: The true-colour bands, red, green, blue.
_RGB = ("B04", "B03", "B02")
#: The per-pixel arrays beside the S2 bands, when the store has them.
_PARTNER_ARRAYS = ("bands_s1", "reference_map")
#: The fixed dB ranges of :meth:`BenAccessor.s1_rgb`'s red, green and blue.
S1_STRETCH: dict[str, tuple[float, float]] = {
    "VV": (-25.0, 0.0),
    "VH": (-30.0, -5.0),
    "VV-VH": (0.0, 15.0),
}


@dataclass(frozen=True)
class Batch:
    """One training batch: pixels per band array, label vectors, and where the samples came from."""

    bands: Mapping[str, np.ndarray]
    """Array name (``bands_10m`` …) -> (batch, bands, y, x) uint16."""
    labels: np.ndarray
    """(batch, 43) bool, or (batch, 19) with ``nineteen=True`` or on a store with 19 classes
    only (``bigearthnet-v2``); columns in canonical order."""
    index: np.ndarray
    """(batch,) int64 positions of the samples in the dataset the batches were drawn from."""

    def __len__(self) -> int:
        return len(self.index)

    def take(self, part: slice) -> Batch:
        return Batch(
            {k: v[part] for k, v in self.bands.items()}, self.labels[part], self.index[part]
        )

    def join(self, other: Batch) -> Batch:
        return Batch(
            {k: np.concatenate([v, other.bands[k]]) for k, v in self.bands.items()},
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.index, other.index]),
        )


def selection_mask(
    labels: np.ndarray,
    names: Sequence[str],
    classes: Sequence[str] = (),
    *,
    all_of: bool = False,
    cloud_and_shadow: tuple[np.ndarray, bool | None] | None = None,
    seasonal_snow: tuple[np.ndarray, bool | None] | None = None,
    split: tuple[np.ndarray, Sequence[str]] | None = None,
) -> np.ndarray:
    """The notebook's ``filter_item`` as a boolean mask over samples.

    ``labels`` is (n, classes) bool with columns named ``names``. A patch is kept when it has ANY
    of ``classes`` (ALL of them with ``all_of``; no classes = no class filter), when each flag
    given as ``(values, wanted)`` with ``wanted`` not None equals ``wanted``, and when its split is
    one of the wanted ones. Raises ValueError for an unknown class name.
    """
    mask = np.ones(labels.shape[0], dtype=bool)
    if classes:
        column = {name: i for i, name in enumerate(names)}
        unknown = [c for c in classes if c not in column]
        if unknown:
            raise ValueError(f"unknown class name {unknown[0]!r} (see `ingest classes`)")
        chosen = labels[:, [column[c] for c in classes]]
        mask &= chosen.all(axis=1) if all_of else chosen.any(axis=1)
    for flag in (cloud_and_shadow, seasonal_snow):
        if flag is not None and flag[1] is not None:
            mask &= np.asarray(flag[0], dtype=bool) == flag[1]
    if split is not None:
        mask &= np.isin(np.asarray(split[0]).astype(object), list(split[1]))
    return mask


@xr.register_dataset_accessor("ben")  # type: ignore[no-untyped-call]
class BenAccessor:
    """BigEarthNet helpers on a Dataset opened with :func:`ingest.open_store` (``ds.ben``)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    # --- selection and labels -------------------------------------------------------------------

    def select(
        self,
        classes: str | Sequence[str] | None = None,
        cloud_and_shadow: bool | None = None,
        seasonal_snow: bool | None = None,
        all_of: bool = False,
        split: str | Sequence[str] | None = None,
        *,
        nineteen: bool = False,
    ) -> xr.Dataset:
        """The samples matching the notebook's ``filter_item``, as ``ds.isel(sample=...)``.

        ``classes``: class names of the store's nomenclature — 43-class names on a
        ``bigearthnet-v1`` store (19-class names there with ``nineteen=True``), 19-class names on
        a ``bigearthnet-v2`` store, which has no other — ANY of them by default, ALL of them with
        ``all_of=True``; an unknown name is a ValueError saying which nomenclature applies.
        ``cloud_and_shadow`` / ``seasonal_snow``: None does not filter, True/False keeps only
        patches with that flag value. ``split``: one or more of ``train``, ``validation``,
        ``test`` ("" for patches in no split); needs the store's optional ``split`` coordinate
        (both releases: the official tables for v1, the metadata for v2). Only the label, flag
        and split arrays are read;
        the band arrays of the result are still lazy.
        """
        ds = self._ds
        wanted_classes = [classes] if isinstance(classes, str) else list(classes or ())
        splits = None
        if split is not None:
            if "split" not in ds.variables:
                raise ValueError(
                    "the store has no split coordinate (it was written without the official "
                    "BigEarthNet tables); select on classes and flags only"
                )
            splits = [split] if isinstance(split, str) else list(split)
            unknown = [s for s in splits if s not in (*SPLITS, "")]
            if unknown:
                raise ValueError(f"unknown split {unknown[0]!r}: use one of {', '.join(SPLITS)}")
        labels, names = self._label_table(nineteen) if wanted_classes else (None, [])
        unknown = [c for c in wanted_classes if c not in names]
        if unknown:
            raise ValueError(
                f"unknown class name {unknown[0]!r}: {self._nomenclature(nineteen)} "
                "(see `ingest classes`)"
            )
        n = ds.sizes["sample"]
        mask = selection_mask(
            labels if labels is not None else np.zeros((n, 0), dtype=bool),
            names,
            wanted_classes,
            all_of=all_of,
            cloud_and_shadow=self._flag("cloud_and_shadow", cloud_and_shadow),
            seasonal_snow=self._flag("seasonal_snow", seasonal_snow),
            split=None if splits is None else (ds["split"].values, splits),
        )
        chosen = ds.isel(sample=np.flatnonzero(mask))
        for name in chosen.data_vars:  # the kept samples' store rows, for batches' fast path
            mark = _store_rows(ds.variables[name])
            if mark is not None:
                location, array, rows = mark
                kept = np.flatnonzero(mask) if rows is None else rows[mask]
                _mark(chosen.variables[name], (location, array, kept))
        return chosen

    def labels_of(self, i: int, *, nineteen: bool = False) -> list[str]:
        """The class names of sample ``i`` (position in this dataset), canonical order: 43-class
        names on a ``bigearthnet-v1`` store (19-class with ``nineteen=True``), 19-class names on a
        ``bigearthnet-v2`` store."""
        var, dim = self._label_names(nineteen)
        row = np.asarray(self._ds[var].isel(sample=i).values, dtype=bool)
        return [str(name) for name in np.asarray(self._ds[dim].values)[row]]

    @property
    def has_43_classes(self) -> bool:
        """Whether the store has the 43-class ``labels`` (``bigearthnet-v1``) besides the 19."""
        return "labels" in self._ds.variables

    def _label_names(self, nineteen: bool) -> tuple[str, str]:
        """The label array and its class dimension: the 19-class ones when asked or when the
        store has no other (``bigearthnet-v2``)."""
        if nineteen or not self.has_43_classes:
            return "labels19", "label19"
        return "labels", "label"

    def _nomenclature(self, nineteen: bool) -> str:
        if not self.has_43_classes:
            dataset = self._ds.attrs.get("dataset") or "this store"
            return f"{dataset} uses the 19-class nomenclature only"
        if nineteen:
            return "nineteen=True selects among the 19 classes"
        return "this store uses the 43 classes of BigEarthNet v1.0 (nineteen=True for the 19)"

    def _label_table(self, nineteen: bool) -> tuple[np.ndarray, list[str]]:
        var, dim = self._label_names(nineteen)
        names = [str(n) for n in self._ds[dim].values]
        return np.asarray(self._ds[var].values, dtype=bool), names

    def _flag(self, name: str, wanted: bool | None) -> tuple[np.ndarray, bool | None] | None:
        if wanted is None:
            return None  # not read at all
        return np.asarray(self._ds[name].values, dtype=bool), wanted

    # --- single patches ---------------------------------------------------------------------------

    def patch(self, i: int, resolution: str = "10m") -> xr.DataArray:
        """Sample ``i`` at one resolution as a (band, y, x) DataArray, georeferenced.

        ``resolution`` is ``"10m"``, ``"20m"`` or ``"60m"`` for the Sentinel-2 bands (uint16), or
        ``"s1"`` for the Sentinel-1 backscatter (band = ``VV``, ``VH``; float32 dB exactly as
        stored; named by the S1 patch), which lies on the patch's 10 m grid: its y, x, CRS and
        transform are those of ``patch(i, "10m")``.

        x and y are pixel centres in the patch's UTM CRS (x = x_ul + (col + 0.5)·gsd,
        y = y_ul − (row + 0.5)·gsd); the CRS (``EPSG:<epsg>``) and the affine transform are
        written through rioxarray, so ``.rio.to_raster(path)`` writes a GeoTIFF with the original
        band files' pixels, CRS and transform. Reads one inner chunk. Raises
        :class:`~ingest.errors.UsageError` for ``"s1"`` on a store without Sentinel-1.
        """
        ds = self._ds
        if resolution == "s1":
            self._require("bands_s1")
            sample = ds.isel(sample=i)
            name = "s1_patch_id" if "s1_patch_id" in ds.variables else "patch_id"
            bands = [str(b) for b in ds["band_s1"].values] if "band_s1" in ds.variables else None
            return _georeferenced(sample, "bands_s1", _GROUPS["10m"], bands, name)
        group = self._group(resolution)
        bands = [str(b) for b in ds[f"band_{group.resolution}"].values]
        return _georeferenced(ds.isel(sample=i), group.array_name, group, bands, "patch_id")

    def reference_map(self, i: int) -> xr.DataArray:
        """The reference map of sample ``i``: a (y, x) DataArray of CORINE Land Cover 2018
        Level-3 codes (uint16, e.g. 311 = broad-leaved forest; 0 = no data), georeferenced on the
        patch's 10 m grid exactly like ``patch(i, "10m")`` and with nodata 0, so
        ``.rio.to_raster(path)`` writes the original ``_reference_map.tif``'s pixels, CRS,
        transform and nodata. Reads one inner chunk. Raises :class:`~ingest.errors.UsageError`
        on a store without reference maps.
        """
        from rioxarray.raster_array import RasterArray

        self._require("reference_map")
        codes = _georeferenced(
            self._ds.isel(sample=i), "reference_map", _GROUPS["10m"], None, "patch_id"
        )
        RasterArray(codes).write_nodata(0, encoded=False, inplace=True)
        return codes

    def _require(self, name: str) -> None:
        """A one-line :class:`~ingest.errors.UsageError` when the store lacks the optional
        per-pixel array ``name``."""
        if name in self._ds.variables:
            return
        dataset = self._ds.attrs.get("dataset") or "this store"
        if name == "bands_s1":
            raise UsageError(
                f"the store ({dataset}) has no Sentinel-1 (bands_s1): "
                "it was written without --s1-archive"
            )
        raise UsageError(
            f"the store ({dataset}) has no reference maps (reference_map): they exist in "
            "bigearthnet-v2 (reBEN) only and are written with --reference-maps"
        )

    def rgb(self, i: int, low: float = 0.0, high: float = 2750.0) -> np.ndarray:
        """Sample ``i`` as an 8-bit true-colour image, (120, 120, 3) uint8, RGB = B04, B03, B02.

        The stretch is fixed and linear: digital numbers (L2A reflectance × 10,000) are clipped
        to ``[low, high]`` and mapped to 0–255, by default [0, 2750], i.e. reflectance 0–0.275.
        Fixed rather than per-image (e.g. 2–98 percentiles) so that patches stay comparable side
        by side — a water patch stays dark and a bright field bright — and one cloudy corner does
        not grey out the rest of a 120 × 120 patch; 0.275 keeps the vegetation, soil and urban
        reflectances of the visible bands in range and saturates only cloud, snow and bright sand.
        """
        if not high > low:
            raise ValueError(f"rgb stretch needs high > low, got [{low}, {high}]")
        bands = self._ds[self._group("10m").array_name].isel(sample=i)
        pixels = np.asarray(bands.sel(band_10m=list(_RGB)).values, dtype=np.float32)
        scaled = np.clip((pixels - low) / (high - low), 0.0, 1.0) * 255.0
        image: np.ndarray = np.rint(scaled).astype(np.uint8).transpose(1, 2, 0)
        return image

    def s1_rgb(self, i: int) -> np.ndarray:
        """Sample ``i``'s Sentinel-1 as an 8-bit false-colour image, (120, 120, 3) uint8.

        The common dual-polarisation composite R = VV, G = VH, B = VV/VH (the ratio in linear
        power, i.e. VV − VH in dB), each stretched linearly over a fixed dB range and clipped:
        VV [−25, 0] dB, VH [−30, −5] dB, VV − VH [0, 15] dB (:data:`S1_STRETCH`). Fixed, like
        :meth:`rgb`, so that patches compare side by side: calm water is dark (blue-black),
        forest (volume scattering: strong VH, small ratio) yellow-green, smooth fields and bare
        soil (weak VH, large ratio) purple, built-up areas (double bounce: strong VV) bright;
        speckle is shown as stored, unfiltered. NaN pixels are black. Raises
        :class:`~ingest.errors.UsageError` on a store without Sentinel-1.
        """
        self._require("bands_s1")
        pixels = np.asarray(self._ds["bands_s1"].isel(sample=i).values, dtype=np.float32)
        names = [str(b) for b in self._ds["band_s1"].values] if "band_s1" in self._ds else []
        vv, vh = (pixels[names.index(b)] for b in ("VV", "VH")) if names else (pixels[0], pixels[1])
        channels = []
        for values, (low, high) in zip((vv, vh, vv - vh), S1_STRETCH.values(), strict=True):
            scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
            channels.append(np.nan_to_num(scaled, nan=0.0) * 255.0)
        image: np.ndarray = np.rint(np.stack(channels, axis=-1)).astype(np.uint8)
        return image

    def _group(self, resolution: str) -> BandGroup:
        group = _GROUPS.get(resolution)
        if group is None:
            raise ValueError(f"unknown resolution {resolution!r}: use one of {', '.join(_GROUPS)}")
        if group.array_name not in self._ds.variables:
            raise ValueError(f"the dataset has no {group.array_name} (a labels-only store?)")
        return group

    # --- training batches -------------------------------------------------------------------------

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        window: int = 4,
        resolution: str | Sequence[str] | None = None,
        nineteen: bool = False,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Every sample once, in batches of ``batch_size``, read shard by shard.

        The dataset's dask chunks along ``sample`` are the unit of reading: one per shard with
        :func:`open_store`; after :meth:`select`, dask regroups the kept samples into chunks of
        about a shard, each drawn from a run of neighbouring shards. Their order is shuffled,
        ``window`` of them are read at a time (one read per chunk and band array, all in one
        dask compute; the next window is read in the background while this one is consumed),
        and the samples are shuffled within the window, so memory stays at about two windows
        (4 shards of 256: ≈ 165 MB each). Every sample comes exactly once per pass;
        deterministic for a ``seed``; ``shuffle=False`` keeps dataset order. The last batch is
        short unless ``drop_last``. Works on any Dataset with these arrays, dask-backed or not.
        ``resolution`` picks S2 band arrays (``"10m"``, ...); by default every per-pixel array of
        the store: the three S2 ones, and ``bands_s1`` and ``reference_map`` when present.
        """
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        if resolution is None:
            names = [g.array_name for g in BAND_GROUPS]
            names += [n for n in _PARTNER_ARRAYS if n in self._ds.data_vars]
        else:
            resolutions = (resolution,) if isinstance(resolution, str) else tuple(resolution)
            names = [self._group(r).array_name for r in resolutions]
        labels = self._label_table(nineteen)[0]  # (n, 19) on a bigearthnet-v2 store
        blocks = [np.arange(a, b) for a, b in _blocks(self._ds, names)]
        source: Any = _fast_source(self._ds, names, labels) or _DatasetSource(
            self._ds, names, labels
        )
        epoch = Epoch(source, blocks, batch_size, shuffle=shuffle, seed=seed, window=window,
                      drop_last=drop_last)  # fmt: skip
        return (Batch({n: b[n] for n in names}, b["labels"], b["index"]) for b in epoch)


def _georeferenced(
    sample: xr.Dataset, array: str, grid: BandGroup, bands: list[str] | None, name: str
) -> xr.DataArray:
    """``sample[array]`` (one sample: (band, y, x) with ``bands`` names, or (y, x) without) with
    pixel-centre y/x coordinates on ``grid``, the CRS ``EPSG:<epsg>`` and the affine transform
    of the upper-left corner, named by the coordinate ``name`` when there is one."""
    from affine import Affine
    from rioxarray.raster_array import RasterArray

    pixels = np.asarray(sample[array].values)
    epsg = int(sample["epsg"].values)
    x_ul, y_ul = float(sample["x_ul"].values), float(sample["y_ul"].values)
    centres = np.arange(grid.size) + 0.5
    coords: dict[str, Any] = {
        "y": y_ul - centres * grid.gsd,
        "x": x_ul + centres * grid.gsd,
    }
    dims: tuple[str, ...] = ("y", "x")
    if bands is not None:
        coords = {"band": bands, **coords}
        dims = ("band", *dims)
    elif pixels.ndim == 3:
        dims = ("band", *dims)
    patch = xr.DataArray(
        pixels,
        dims=dims,
        coords=coords,
        name=str(sample[name].values) if name in sample.variables else None,
    )
    raster = RasterArray(patch)
    raster.write_crs(f"EPSG:{epsg}", inplace=True)
    raster.write_transform(Affine(grid.gsd, 0.0, x_ul, 0.0, -grid.gsd, y_ul), inplace=True)
    return patch


#: The attribute of a band variable's dask array naming the store rows it holds (see
#: :func:`mark_store_rows`).
_ROWS = "_ingest_store_rows"


def mark_store_rows(
    variable: xr.Variable, name: str, store: Any, storage_options: dict[str, Any] | None
) -> None:
    """Record on ``variable``'s dask array that it is the store's array ``name``, untouched,
    so that :meth:`BenAccessor.batches` may read it through the fast sample reader
    (:mod:`ingest.read.samples`). The mark sits on the dask array object itself: any operation
    makes a new one without it (then batches read through dask), and :meth:`BenAccessor.select`
    marks its result with the kept rows."""
    if not isinstance(store, str | os.PathLike):
        return  # a zarr Store object: no location to reopen it from
    try:
        location = StoreLocation.of(store, storage_options)
    except UsageError:  # storage options with a local path: zarr's business, not ours
        return
    _mark(variable, (location, name, None))


_Mark = tuple[StoreLocation, str, np.ndarray | None]
"""(store, array name in the store, store row of each sample or None for all)."""


def _mark(variable: xr.Variable, mark: _Mark) -> None:
    if variable.chunks is not None and mark[1]:
        setattr(variable.data, _ROWS, mark)


def _store_rows(variable: xr.Variable) -> _Mark | None:
    if variable.chunks is None:
        return None
    mark: _Mark | None = getattr(variable.data, _ROWS, None)
    return mark


def _fast_source(ds: xr.Dataset, names: Sequence[str], labels: np.ndarray) -> StoreSource | None:
    """A source through the store when every array of ``names`` is a store's own array (marked
    as such), all of one store with the same rows; None otherwise."""
    marks = [_store_rows(ds.variables[name]) for name in names]
    if not marks or marks[0] is None:
        return None
    location, _, rows = marks[0]
    for mark in marks:
        if mark is None or mark[0] != location:
            return None
        other = mark[2]
        if (rows is None) != (other is None) or (
            rows is not None and other is not None and not np.array_equal(rows, other)
        ):
            return None
    store = SampleStore.open(location)
    if any(mark[1] not in store.arrays for mark in marks if mark is not None):
        return None
    if (store.size if rows is None else len(rows)) != ds.sizes["sample"]:
        return None
    takes = [Take(store.arrays[mark[1]]) for mark in marks if mark is not None]
    return StoreSource(store, takes, rows, labels=labels)


class _DatasetSource:
    """An epoch's reads through xarray and dask: any Dataset with these arrays."""

    def __init__(self, ds: xr.Dataset, names: Sequence[str], labels: np.ndarray) -> None:
        self.ds, self.names, self.labels = ds, list(names), labels

    def prepare(self, positions: np.ndarray) -> _Loaded:
        """The runs of adjacent positions (whole dask chunks in an epoch), in one dask compute."""
        ordered = np.unique(positions)
        edges = np.flatnonzero(np.diff(ordered) != 1) + 1
        runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(ordered, edges) if len(r)]
        # Variables, not DataArrays: computing a DataArray would also read its sample coordinates.
        parts = [self.ds.variables[n].isel(sample=slice(a, b)) for n in self.names for a, b in runs]
        computed: tuple[Any, ...] = dask.compute(*parts)  # type: ignore[attr-defined,no-untyped-call]
        where = np.searchsorted(ordered, positions)
        arrays = {}
        for k, name in enumerate(self.names):
            blocks = [np.asarray(c.values) for c in computed[k * len(runs) : (k + 1) * len(runs)]]
            arrays[name] = np.concatenate(blocks)[where]
        return _Loaded(arrays)

    def extras(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {"labels": self.labels[positions]}


class _Loaded:
    """Samples already in memory, as an epoch's prepared window."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def empty(self, count: int) -> dict[str, np.ndarray]:
        return {n: np.empty((count, *a.shape[1:]), a.dtype) for n, a in self.arrays.items()}

    def close(self) -> None:
        pass

    def decode_into(self, start: int, stop: int, out: dict[str, np.ndarray], at: int) -> None:
        for name, values in self.arrays.items():
            out[name][at : at + stop - start] = values[start:stop]


def _blocks(ds: xr.Dataset, names: Sequence[str]) -> list[tuple[int, int]]:
    """``[start, stop)`` of the reading units along ``sample``: the first band array's dask
    chunks, else its shard length, else the whole dataset."""
    n = ds.sizes["sample"]
    sizes: Sequence[int] = (n,)
    if names:
        array = ds[names[0]]
        if array.chunks is not None:
            sizes = array.chunks[0]
        else:
            length = (array.encoding.get("shards") or array.encoding.get("chunks") or (n,))[0]
            sizes = [min(length, n - a) for a in range(0, n, max(length, 1))]
    edges = np.cumsum([0, *sizes])
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]
