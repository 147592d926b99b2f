"""``ingest.lightning.BigEarthNetDataModule``: a model fitted with ``lightning.Trainer`` on CPU,
the splits, epochs that reshuffle, ranks that split, and the workers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from configilm.extra import BENv2_utils as cil

from ingest.errors import UsageError
from ingest.lightning import BigEarthNetDataModule

#: lightning 2.6 calls torch 2.13's deprecated ``LeafSpec`` itself; it warns about any iterable
#: dataset with a length (ours is exact: the epochs split by rank and worker before counting) and
#: about few workers on a 2-core machine. Nothing here can avoid them.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
    ),
    pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__` defined:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
]


class Tiny(pl.LightningModule):
    """A small CNN for multi-label classification; records what it was fed."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 4, 3, stride=4), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, classes),
        )  # fmt: skip
        self.seen: list[tuple[str, tuple[int, ...], torch.dtype, torch.dtype]] = []
        self.indexes: list[list[int]] = []
        self.losses: list[float] = []

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        self.seen.append(
            (stage, tuple(batch["image"].shape), batch["image"].dtype, batch["label"].dtype)
        )
        if stage == "train":
            self.indexes.append(batch["index"].tolist())
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            self.net(batch["image"]), batch["label"]
        )
        self.losses.append(float(loss.detach()))
        return loss

    def training_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], _: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(**options: Any) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **options)  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2])
def test_fit_a_few_steps(v2_store: Any, workers: int) -> None:
    """Train split: 5 samples (positions 0, 3, 4, 7, 8 of the store), batches of 2, full batches
    only: 2 steps an epoch; 3 epochs = 6 steps, a new order each epoch, values normalised."""
    data = BigEarthNetDataModule(v2_store.path, batch_size=2, num_workers=workers, seed=1)
    assert data.num_classes == 19 and data.class_names == tuple(cil.NEW_LABELS)
    model = Tiny(12, data.num_classes)
    fit = trainer(max_epochs=3)
    fit.fit(model, datamodule=data)
    assert fit.global_step == 6
    train = [s for s in model.seen if s[0] == "train"]
    assert len(train) == 6
    assert all(s[1:] == ((2, 12, 120, 120), torch.float32, torch.float32) for s in train)
    assert all(np.isfinite(model.losses))
    epochs = [model.indexes[k] + model.indexes[k + 1] for k in (0, 2, 4)]
    assert all(
        len(set(e)) == 4 and set(e) <= set(range(5)) for e in epochs
    )  # one short batch dropped
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled
    val = [s for s in model.seen if s[0] == "val"]
    assert val and {s[1][1:] for s in val} == {(12, 120, 120)}
    fit.test(model, datamodule=data)
    assert sum(s[1][0] for s in model.seen if s[0] == "test") == 2  # the 2 test samples, once


def test_values_are_the_datasets(v2_store: Any) -> None:
    data = BigEarthNetDataModule(v2_store.path, batch_size=3, bands="RGB", interpolation="nearest")
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert isinstance(batch["image"], torch.Tensor)
    dataset = data.datasets["validation"]
    for k, i in enumerate(batch["index"].tolist()):
        np.testing.assert_array_equal(batch["image"][k].numpy(), dataset[i]["image"])
        np.testing.assert_array_equal(batch["label"][k].numpy(), dataset[i]["label"])
    # validation is in store order, the same every time
    again = next(iter(data.val_dataloader()))
    assert batch["index"].tolist() == again["index"].tolist() == [0, 1, 2]


def test_ranks_take_disjoint_parts(v2_store: Any) -> None:
    parts = []
    for rank in (0, 1):
        data = BigEarthNetDataModule(v2_store.path, batch_size=1, convention="torchgeo", bands="all",
                                     normalize=False)  # fmt: skip
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=0)  # type: ignore[assignment]
        loader = data.train_dataloader()
        batches = list(loader)
        assert all(set(b) == {"image_s1", "image_s2", "mask", "label", "index"} for b in batches)
        assert all(
            b["label"].dtype == torch.int64 and b["mask"].shape == (1, 1, 120, 120) for b in batches
        )
        parts.append([i for b in batches for i in b["index"].tolist()])
    assert len(parts[0]) == len(parts[1]) == 2  # 5 samples, 2 ranks, full batches only
    assert not set(parts[0]) & set(parts[1])


def test_bad_options_fail_at_construction(v2_store: Any) -> None:
    with pytest.raises(UsageError, match="unknown band or band combination 'B13'"):
        BigEarthNetDataModule(v2_store.path, bands=["B13"])
