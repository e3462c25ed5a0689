"""Batch loading without per-sample Python for in-memory data, resumable mid-epoch.

``EpochBatches`` draws a permutation from (seed, epoch), shards it over ranks and cuts it into
full batches. ``BatchLoader`` turns those index batches into ``(uint8 images, labels, indices)``
batches (``indices``: each image's position in the dataset, for methods with a per-image state
such as PIRL's memory bank):
one fancy-index for tensors held in memory (or on the device), a worker-backed DataLoader for
folders decoded from disk. It implements Lightning's ``state_dict``/``load_state_dict``
protocol, so a run resumed from a mid-epoch checkpoint continues with the very next batch.
``PretrainData`` is the LightningDataModule that serves them to the Trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tribyol.config import RunConfig
from tribyol.data import TensorImages
from tribyol.engine.module import uses_cuda
from tribyol.errors import ConfigError


class EpochBatches:
    """Index batches for one epoch: a seeded permutation, sharded over ranks, drop-last."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if num_items < batch_size * world_size:
            raise ConfigError(
                f"{num_items} images are fewer than one batch of {batch_size} per rank x "
                f"{world_size} ranks; lower the batch size or add data"
            )
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def indices(self) -> Tensor:
        """``[num_batches, batch_size]`` indices of this rank for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g)
        else:
            order = torch.arange(self.num_items)
        per_rank = len(self) * self.batch_size
        mine = order[: per_rank * self.world_size].view(self.world_size, per_rank)[self.rank]
        return mine.view(len(self), self.batch_size)


class _IndexBatches(Dataset):
    """Adapts a list of index batches to a map-style dataset of whole batches (for workers)."""

    def __init__(self, dataset: Dataset, batches: Tensor) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Any:
        return (*self.dataset[self.batches[i].tolist()], self.batches[i])


class BatchLoader:
    """An iterable of ``(images, labels, indices)`` batches that Lightning can checkpoint and resume."""

    def __init__(
        self, dataset: Dataset, sampler: EpochBatches, num_workers: int = 0, pin_memory: bool = False
    ) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.completed = 0  # batches of the current epoch already trained on (set by the engine)
        self._resume: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        batches = self.sampler.indices()
        skip = 0
        if self._resume is not None and self._resume["epoch"] == self.sampler.epoch:
            skip = self._resume["completed"]
        self._resume = None
        self.completed = skip
        batches = batches[skip:]
        if isinstance(self.dataset, TensorImages):
            # the epoch's indices go to the data's device once, not one copy per step
            yield from ((*self.dataset[idx], idx) for idx in batches.to(self.dataset.images.device))
            return
        if self.num_workers == 0:
            yield from ((*self.dataset[idx.tolist()], idx) for idx in batches)
            return
        loader = DataLoader(
            _IndexBatches(self.dataset, batches),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        yield from loader

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "completed": self.completed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "completed": int(state["completed"])}


class PretrainData(L.LightningDataModule):
    """Serves the pre-training set, moved onto the training device when it fits in memory.

    The loader's position (epoch, batches done) travels in the datamodule's checkpoint state.
    Lightning's own stateful-loader restore does not reach it: ``configure_optimizers`` asks for
    ``estimated_stepping_batches``, which builds the loader before the loop state is restored,
    so a mid-epoch resume would silently restart the epoch. The datamodule state is restored
    first, and every loader built afterwards starts where the checkpoint left off.
    """

    def __init__(self, cfg: RunConfig, dataset: Any) -> None:
        super().__init__()
        self.cfg, self.dataset = cfg, dataset
        self.loader: BatchLoader | None = None
        self._resume_state: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self.loader.state_dict()} if self.loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_state = state.get("loader")

    def setup(self, stage: str) -> None:
        if isinstance(self.dataset, TensorImages) and self.cfg.data.on_device:
            self.dataset = self.dataset.to(self.trainer.strategy.root_device)

    def train_dataloader(self) -> BatchLoader:
        t = self.cfg.train
        sampler = EpochBatches(
            len(self.dataset), t.batch_size, t.seed, self.trainer.global_rank, self.trainer.world_size
        )
        pin = torch.cuda.is_available() and not isinstance(self.dataset, TensorImages)
        self.loader = BatchLoader(self.dataset, sampler, self.cfg.data.num_workers, pin)
        if self._resume_state is not None:
            self.loader.load_state_dict(self._resume_state)
        return self.loader


def planned_world_size(cfg: RunConfig) -> int:
    """Processes the run will have, as far as the config says (names only; run.json has the truth)."""
    t = cfg.train
    devices = t.devices
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif str(devices).strip() in ("auto", "-1"):
        count = torch.cuda.device_count() if uses_cuda(cfg) else 1
    elif "," in str(devices):
        count = len([d for d in str(devices).split(",") if d.strip()])
    else:
        count = int(devices)
    return max(1, count) * t.num_nodes
