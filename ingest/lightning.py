"""``BigEarthNetDataModule``: a store's official splits as a Lightning DataModule.

Model-ready batches (any convention of :mod:`ingest.read.conventions`, ConfigILM's by default)
from the store's shard-aware epochs (:meth:`ingest.SampleDataset.batches`): the training epoch
shuffled across shards and within windows of them, a new order every epoch (its seed is the
DataModule's ``seed`` plus the epoch number, so a run is reproducible), full batches only; the
validation and test epochs in store order, every sample once. Under DDP each rank reads a
disjoint part of every epoch, its rank and the world size taken from the trainer. Batches are
dicts of tensors: ``image`` (or ``image_s1`` and ``image_s2``), ``label``, ``mask`` where the
convention has one, and ``index`` (positions in the split's dataset).

Needs ``lightning`` (``pip install 'bigearthnet-ingest[lightning]'``) and torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

try:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, IterableDataset
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ingest.lightning needs lightning and torch: pip install 'bigearthnet-ingest[lightning]'"
    ) from exc

from .read.dataset import SampleDataset
from .store.location import StoreLocation

__all__ = ["BigEarthNetDataModule", "EpochLoader", "Epochs"]

#: Lightning's stage -> the store's split names it reads.
_STAGES = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",),
           "predict": ("test",)}  # fmt: skip


class Epochs(IterableDataset[dict[str, Any]]):
    """Every epoch of one split: iterating it yields the batches of epoch number ``epoch``
    (set by :class:`EpochLoader` before each pass), shuffled with ``seed + epoch``."""

    def __init__(
        self,
        data: SampleDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
        window: int = 4,
    ) -> None:
        self.data, self.batch_size = data, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size, self.window = rank, world_size, window
        self.epoch = 0

    def _epoch(self) -> Any:
        return self.data.batches(self.batch_size, shuffle=self.shuffle, seed=self.seed + self.epoch,
                                 rank=self.rank, world_size=self.world_size, window=self.window,
                                 drop_last=self.drop_last)  # fmt: skip

    def __len__(self) -> int:
        return len(self._epoch())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._epoch())


class EpochLoader(DataLoader[dict[str, Any]]):
    """A ``DataLoader`` over :class:`Epochs` that starts epoch ``epoch_of()`` (default: 0, 1, 2 …
    in the order it is iterated) each time it is iterated; the workers receive the number with
    the dataset (workers are not persistent, so that they do)."""

    def __init__(
        self,
        epochs: Epochs,
        num_workers: int,
        epoch_of: Callable[[], int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(epochs, batch_size=None, num_workers=num_workers, **options)
        self._epoch_of = epoch_of
        self._passes = 0

    def __iter__(self) -> Any:
        epochs = self.dataset
        assert isinstance(epochs, Epochs)
        epochs.epoch = self._epoch_of() if self._epoch_of is not None else self._passes
        self._passes += 1
        return super().__iter__()


class BigEarthNetDataModule(pl.LightningDataModule):
    """The official train / validation / test splits of a store (see the module docstring).

    ``store`` (path or fsspec URL), ``batch_size``, ``num_workers``; ``convention``, ``bands``,
    ``interpolation``, ``size``, ``normalize`` and ``num_classes`` as for
    :class:`ingest.SampleDataset` (default ConfigILM's S2 bands, bilinear, 120 x 120, normalised
    with its published statistics); ``classes``, ``cloud_and_shadow`` and ``seasonal_snow``
    select within every split as ``ds.ben.select`` does; ``seed`` fixes the training orders;
    ``window`` is the shuffling window in shards; ``pin_memory`` goes to the DataLoaders.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | StoreLocation,
        batch_size: int = 64,
        num_workers: int = 0,
        *,
        convention: str = "configilm",
        bands: str | int | Sequence[str] | None = None,
        interpolation: str | None = "bilinear",
        size: int = 120,
        normalize: bool | str | Mapping[str, tuple[float, float]] = True,
        num_classes: int = 19,
        classes: str | Sequence[str] | None = None,
        cloud_and_shadow: bool | None = None,
        seasonal_snow: bool | None = None,
        seed: int = 0,
        window: int = 4,
        pin_memory: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if convention == "torchgeo" and interpolation == "bilinear":
            interpolation = None  # torchgeo's own (GDAL) bilinear
        self.store, self.batch_size, self.num_workers = store, batch_size, num_workers
        self.seed, self.window, self.pin_memory = seed, window, pin_memory
        self.options: dict[str, Any] = {
            "convention": convention, "bands": bands, "interpolation": interpolation,
            "size": size, "normalize": normalize, "num_classes": num_classes, "classes": classes,
            "cloud_and_shadow": cloud_and_shadow, "seasonal_snow": seasonal_snow,
            "storage_options": storage_options,
        }  # fmt: skip
        self.datasets: dict[str, SampleDataset] = {}
        # the store's metadata and the convention, checked now (bad options fail here, not
        # in the middle of trainer.fit); the split datasets are made in setup()
        probe = self._dataset("train")
        assert probe.model is not None
        self.convention = probe.model.convention

    @property
    def num_classes(self) -> int:
        return len(self.convention.label_order)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The label's classes, in the label's order (lexicographic for ConfigILM)."""
        return self.convention.classes

    def _dataset(self, split: str) -> SampleDataset:
        data = self.datasets.get(split)
        if data is None:
            data = self.datasets[split] = SampleDataset(self.store, split=split, **self.options)
        return data

    def setup(self, stage: str) -> None:
        for split in _STAGES.get(stage, ("train", "validation", "test")):
            self._dataset(split)

    def _distributed(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, split: str, train: bool) -> EpochLoader:
        rank, world_size = self._distributed()
        epochs = Epochs(
            self._dataset(split), self.batch_size, shuffle=train, seed=self.seed, drop_last=train,
            rank=rank, world_size=world_size, window=self.window,
        )  # fmt: skip
        trainer = self.trainer
        epoch_of = (lambda: int(trainer.current_epoch)) if train and trainer is not None else None
        return EpochLoader(epochs, self.num_workers, epoch_of, pin_memory=self.pin_memory)

    def train_dataloader(self) -> EpochLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> EpochLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> EpochLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> EpochLoader:
        return self._loader("test", train=False)
