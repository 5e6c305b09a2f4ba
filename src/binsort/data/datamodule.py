"""The LightningDataModule: datasets, samplers and loaders for one split of one folder.

Scanning the folder and choosing the split happen before (``binsort.train``), so this module
only turns lists of samples into loaders, and knows about ranks when training is distributed.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from binsort.config import TrainConfig
from binsort.data.dataset import ImageDataset
from binsort.data.sampler import ClassBalancedSampler, ShardSampler, ShuffleSampler
from binsort.data.transforms import eval_transform, train_transform


class BinDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | Path,
        train_samples: list[tuple[str, int]],
        val_samples: list[tuple[str, int]],
        cfg: TrainConfig,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.cfg = cfg

    def setup(self, stage: str) -> None:
        size = self.cfg.input_size
        if stage == "fit":
            self.train_set = ImageDataset(
                self.root, self.train_samples, train_transform(self.cfg), min_side=size
            )
        self.val_set = ImageDataset(
            self.root, self.val_samples, eval_transform(size), min_side=size
        )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def _loader(self, dataset: ImageDataset, sampler, drop_last: bool) -> DataLoader:
        workers = self.cfg.workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch,
            sampler=sampler,
            num_workers=workers,
            drop_last=drop_last,
            persistent_workers=workers > 0,
            pin_memory=self.trainer is not None
            and self.trainer.strategy.root_device.type == "cuda",
        )

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        if self.cfg.imbalance:
            labels = [label for _, label in self.train_samples]
            sampler = ClassBalancedSampler(labels, self.cfg.seed, world, rank)
        else:
            sampler = ShuffleSampler(len(self.train_samples), self.cfg.seed, world, rank)
        # A last batch of one breaks BatchNorm; dropping it loses < one batch per epoch.
        drop_last = len(sampler) > self.cfg.batch
        return self._loader(self.train_set, sampler, drop_last)

    def val_dataloader(self) -> DataLoader:
        world, rank = self._world()
        return self._loader(self.val_set, ShardSampler(len(self.val_set), world, rank), False)
