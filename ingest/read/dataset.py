"""``SampleDataset``: a map-style dataset over a store, for PyTorch's DataLoader and the like.

What training code wants from the store is a sample by position and an epoch of batches, as fast
as the authors' LMDB of safetensors (rico-hdl, ConfigILM). ``data[i]`` reads sample i through
:class:`ingest.read.samples.SampleStore` (one byte-range read and one blosc call per array, shard
indexes cached, labels and patch ids loaded once); :meth:`SampleDataset.batches` is the
shard-aware epoch of :mod:`ingest.read.epochs`. torch is never imported here: the class follows
the protocol (``__len__``, ``__getitem__``, ``__getitems__``, picklable, files opened lazily in
each process), so ``DataLoader(data, num_workers=2)`` works with fork and spawn alike.

For georeferenced patches, selections as xarray and analysis, use ``ingest.open_store`` and
``ds.ben``; for training, this.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from ..store.location import StoreLocation
from .conventions import ModelReady, Statistics
from .conventions import convention as make_convention
from .epochs import Epoch, StoreSource
from .model import ModelSource
from .samples import SampleStore, Take
from .statistics import recorded

__all__ = ["MODALITIES", "SampleDataset"]

#: Names that stand for several arrays in ``modalities``.
MODALITIES: dict[str, tuple[str, ...]] = {
    "s2": ("bands_10m", "bands_20m", "bands_60m"),
    "s1": ("bands_s1",),
}


class SampleDataset:
    """Samples of a store (v1 or v2; local path or fsspec URL) by position.

    ``data[i]`` is a dict of numpy arrays keyed by the store's variable names: each per-pixel
    array (``bands_10m`` (4, 120, 120), ``bands_20m``, ``bands_60m`` uint16; ``bands_s1``
    float32, ``reference_map`` uint16 where the store has them), ``labels`` (43,) and
    ``labels19`` (19,) bool where the store has them, and ``patch_id`` (str).

    - ``split``, ``classes`` (any of them; 43-class names, or 19-class names when the store has
      no ``labels`` or with ``nineteen=True``), ``cloud_and_shadow``, ``seasonal_snow``: keep the
      samples ``ds.ben.select`` keeps with the same arguments; positions are then 0..len-1 over
      the kept samples, in store order.
    - ``modalities``: which per-pixel arrays (names, or ``"s2"``, ``"s1"``); default all.
    - ``bands``: band names (``"B04"``, ``"VV"`` …) to keep, in the order given, within the
      arrays that have a band dimension; arrays with none of them are left out, and so are
      arrays without a band dimension (``reference_map``) unless ``modalities`` names them.
    - ``transform``: called on each sample dict; ``data[i]`` returns what it returns.

    Model-ready samples (:mod:`ingest.read.conventions`): with ``convention="configilm"`` or
    ``"torchgeo"``, ``data[i]`` (and each batch of :meth:`batches`) is what that pipeline feeds
    a model: ``image`` (C, size, size) float32 (torchgeo with ``bands="all"``: ``image_s1`` and
    ``image_s2``), ``label`` and, for torchgeo on stores with reference maps, ``mask``.

    - ``bands``: ConfigILM's band combinations (``"S2"`` (default), ``"ALL"``, ``"RGB"``,
      ``"10m_20m"``, ``12`` …) or a list of band names; torchgeo's ``"s1"``, ``"s2"`` (default)
      or ``"all"``.
    - ``interpolation``: ``"nearest"`` (ConfigILM's default), ``"bilinear"`` or ``"bicubic"``
      for the 20 m and 60 m bands (torchgeo: always GDAL's bilinear).
    - ``size``: pixels per side (ConfigILM; torchgeo is 120).
    - ``normalize``: False, True (the published statistics: ConfigILM's table for
      ``"{size}_{interpolation}"``, torchgeo's DataModule min/max), ``"store"`` (those
      ``ingest stats`` recorded in the store) or ``{band: (mean, std)}``.
    - ``num_classes``: 19, or 43 (torchgeo on v1 stores).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | StoreLocation,
        *,
        split: str | Sequence[str] | None = None,
        classes: str | Sequence[str] | None = None,
        nineteen: bool = False,
        cloud_and_shadow: bool | None = None,
        seasonal_snow: bool | None = None,
        modalities: str | Sequence[str] | None = None,
        bands: str | Sequence[str] | None = None,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        convention: str | None = None,
        interpolation: str | None = None,
        size: int = 120,
        normalize: bool | str | Statistics | Mapping[str, tuple[float, float]] = False,
        num_classes: int = 19,
    ) -> None:
        self.store = SampleStore.open(store, storage_options)
        if self.store.attrs.get("complete") is not True:
            from .reading import IncompleteStoreWarning

            warnings.warn(
                f"{self.store.location}: the store is not complete (unfinished or interrupted "
                "ingest; continue it with `ingest run --resume`)",
                IncompleteStoreWarning,
                stacklevel=2,
            )
        self.model: ModelReady | None = None
        """The model-ready conversion when a ``convention`` is given."""
        if convention is None:
            unused = {"interpolation": interpolation, "normalize": normalize}
            given = [k for k, v in unused.items() if v not in (None, False)]
            if given or size != 120 or num_classes != 19:
                raise UsageError(f"{(given or ['size/num_classes'])[0]} needs a convention "
                                 "(convention='configilm' or 'torchgeo')")  # fmt: skip
            self.takes = _takes(self.store, modalities, bands)
            self.labels: tuple[str, ...] = tuple(
                n for n in ("labels", "labels19") if n in self.store.tables
            )
        else:
            if modalities is not None:
                raise UsageError("with a convention, `bands` chooses what is read (not modalities)")
            self.model = _model_ready(self.store, convention, bands, interpolation, size,
                                      normalize, num_classes, split)  # fmt: skip
            names = [*self.model.arrays, *(["reference_map"] if self.model.convention.mask else [])]
            self.takes = [Take(self.store.arrays[n]) for n in names]
            self.labels = (self.model.convention.label,)
        self._tables = (*self.labels, "patch_id")
        for name in self._tables:  # loaded once here; a spawned worker loads them on first use
            self.store.table(name)
        self.transform = transform
        self.positions: np.ndarray | None = None
        """Store position of each dataset position; None when the dataset is the whole store."""
        if classes or any(v is not None for v in (split, cloud_and_shadow, seasonal_snow)):
            self.positions = self._select(split, classes, nineteen, cloud_and_shadow, seasonal_snow)

    def _select(
        self,
        split: str | Sequence[str] | None,
        classes: str | Sequence[str] | None,
        nineteen: bool,
        cloud_and_shadow: bool | None,
        seasonal_snow: bool | None,
    ) -> np.ndarray:
        """Through ``ds.ben.select`` itself (on the small arrays only), so that both agree."""
        from .reading import open_store

        location = self.store.location
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # incomplete stores were warned about above
            ds = open_store(location.zarr_url, storage_options=location.zarr_options)
        small = [v for v in ("labels", "labels19", "cloud_and_shadow", "seasonal_snow", "split")
                 if v in ds.variables]  # fmt: skip
        ds = ds[[v for v in small if v in ds.data_vars]].assign_coords(
            _position=("sample", np.arange(self.store.size))
        )
        if "labels" not in ds.variables:
            nineteen = True
        chosen = ds.ben.select(classes, cloud_and_shadow, seasonal_snow, split=split,
                               nineteen=nineteen)  # fmt: skip
        return np.asarray(chosen["_position"].values, dtype=np.int64)

    # --- the map-style protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        return self.store.size if self.positions is None else len(self.positions)

    def _position(self, i: int) -> int:
        n = len(self)
        k = int(i)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n}")
        return k if self.positions is None else int(self.positions[k])

    def __getitem__(self, i: int) -> Any:
        sample = self.store.sample(self._position(i), self.takes, self._tables)
        if self.model is not None:
            sample = self._model_sample(sample)
        return sample if self.transform is None else self.transform(sample)

    def _model_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        assert self.model is not None
        out = self.model.empty(1)
        self.model.apply({k: np.asarray(v)[None] for k, v in sample.items()
                          if k != "patch_id"}, out)  # fmt: skip
        return {k: v[0] for k, v in out.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Many samples at once (DataLoader calls this for a batch when it exists): on object
        storage all their ranges go in one batch of requests."""
        if self.store.location.is_local:
            return [self[i] for i in indices]
        positions = np.array([self._position(i) for i in indices], dtype=np.int64)
        source = StoreSource(self.store, self.takes, None, self._tables)
        prepared = source.prepare(positions)
        try:
            arrays = prepared.empty(len(positions))
            prepared.decode_into(0, len(positions), arrays, 0)
        finally:
            prepared.close()
        arrays.update(source.extras(positions))
        if self.model is not None:
            native = arrays
            arrays = self.model.empty(len(positions))
            self.model.apply(native, arrays)
        samples = []
        for k in range(len(positions)):
            sample: dict[str, Any] = {name: values[k] for name, values in arrays.items()}
            if "patch_id" in sample:
                sample["patch_id"] = str(sample["patch_id"])
            samples.append(sample if self.transform is None else self.transform(sample))
        return samples

    # --- epochs -----------------------------------------------------------------------------------

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        window: int = 4,
        drop_last: bool = False,
        transform: Callable[[dict[str, np.ndarray]], Any] | None = None,
        prefetch: int | None = None,
    ) -> Epoch:
        """One shard-aware pass (:mod:`ingest.read.epochs`): whole shards read by byte range,
        shuffled across shards and within windows of ``window`` shards, deterministic for a
        ``seed`` (use a new seed per epoch), split disjointly by ``rank`` of ``world_size`` and
        by DataLoader worker. Yields dicts of stacked arrays (the arrays of ``data[i]``,
        ``patch_id`` as a str array) plus ``index`` (the dataset positions); every sample of this
        rank exactly once, the last batch short unless ``drop_last`` (then every rank yields the
        same number of full batches). ``transform`` is called on each batch, on the reading
        thread. A batch's arrays are reused for a later batch only once nothing refers to them
        any more (keep the batch, an array, a view or a tensor of it, and it stays as it is).
        Hand it to ``DataLoader(epoch, batch_size=None, num_workers=N)`` as it is.
        With a ``convention``, batches are model-ready (``image``, ``label`` (, ``mask``) and
        ``index``): each sample decoded and resampled straight into its row of the batch
        (:mod:`ingest.read.model`), the batch's arrays reused the same way. ``prefetch``: the
        batches kept ready by the reading thread, 4 by default, 2 with a convention (a batch of
        256 model-ready S2 samples is 177 MB)."""
        _register_with_torch()
        source = StoreSource(self.store, self.takes, self.positions, self._tables)
        if self.model is not None:
            source = ModelSource(source, self.model)
        return Epoch(
            source,
            source.blocks(),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            window=window,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            transform=transform,
            prefetch=(2 if self.model is not None else 4) if prefetch is None else prefetch,
        )


def _takes(
    store: SampleStore, modalities: str | Sequence[str] | None, bands: str | Sequence[str] | None
) -> list[Take]:
    """The arrays (and band rows) a dataset reads, from ``modalities`` and ``bands``."""
    if modalities is None:
        names = list(store.arrays)
    else:
        names = []
        for m in [modalities] if isinstance(modalities, str) else modalities:
            group = MODALITIES.get(m, (m,))
            missing = [n for n in group if n not in store.arrays]
            if missing:
                aliases = [k for k, v in MODALITIES.items() if all(n in store.arrays for n in v)]
                known = ", ".join([*store.arrays, *aliases])
                raise UsageError(f"{store.location} has no {missing[0]} (modalities: {known})")
            names.extend(n for n in group if n not in names)
    if bands is None:
        return [Take(store.arrays[n]) for n in names]
    wanted = [bands] if isinstance(bands, str) else list(bands)
    takes = []
    found: set[str] = set()
    for name in names:
        array = store.arrays[name]
        if array.bands is None:
            if modalities is not None:  # asked for by name: kept whole
                takes.append(Take(array))
            continue
        rows = tuple(array.bands.index(b) for b in wanted if b in array.bands)
        found.update(b for b in wanted if b in array.bands)
        if rows:
            takes.append(Take(array, rows))
    unknown = [b for b in wanted if b not in found]
    if unknown:
        available = [b for n in names for b in (store.arrays[n].bands or ())]
        raise UsageError(f"unknown band {unknown[0]!r} (bands: {', '.join(available)})")
    return takes


def _register_with_torch() -> None:
    """Make :class:`Epoch` an ``IterableDataset`` for isinstance checks (DataLoader's), when the
    process uses torch; ``IterableDataset`` is an ABC, so registering imports nothing new."""
    torch = sys.modules.get("torch")
    if torch is not None:
        import torch.utils.data

        torch.utils.data.IterableDataset.register(Epoch)


def _model_ready(
    store: SampleStore,
    name: str,
    bands: str | int | Sequence[str] | None,
    interpolation: str | None,
    size: int,
    normalize: bool | str | Statistics | Mapping[str, tuple[float, float]],
    num_classes: int,
    split: str | Sequence[str] | None,
) -> ModelReady:
    """The convention ``name`` checked against the store, with its statistics resolved."""
    arrays = {n: a.bands for n, a in store.arrays.items()}
    arrays.update({t: None for t in store.tables if t != "patch_id"})
    mode = "gdal" if name == "torchgeo" else (interpolation or "nearest")
    stats: bool | Statistics
    if isinstance(normalize, Statistics | bool):
        stats = normalize
    elif normalize == "store":
        stats = recorded(store.attrs, str(store.location), split, size, mode)
    elif isinstance(normalize, Mapping):
        means = {b: float(m) for b, (m, _) in normalize.items()}
        stats = Statistics(means, {b: float(s) for b, (_, s) in normalize.items()}, "normalize")
    else:
        raise UsageError(
            f"normalize is True, False, 'store' or {{band: (mean, std)}}, not {normalize!r}"
        )
    conv = make_convention(name, arrays, bands=bands, interpolation=interpolation, size=size,
                           normalize=stats, num_classes=num_classes)  # fmt: skip
    return ModelReady(conv, arrays)
