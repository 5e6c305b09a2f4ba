"""The LightningDataModule: datasets, samplers and loaders for one split of a folder or several.

Scanning the folder and choosing the split happen before (``binsort.train``), so this module
only turns lists of samples into loaders, and knows about ranks when training is distributed.
With ``--cache`` the datasets are decoded once into uint8 tensors (``binsort.data.cache``) and
the loaders only slice them; the training batch is augmented by the LightningModule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from binsort.config import TrainConfig
from binsort.data.cache import CachedImages, cached_sets, keep_batch
from binsort.data.dataset import ImageDataset
from binsort.data.folder import as_roots
from binsort.data.sampler import ClassBalancedSampler, ShardSampler, ShuffleSampler
from binsort.data.transforms import eval_transform, train_transform


class BinDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | Path | Sequence[Path],  # several: qualified sample paths (data.folder)
        train_samples: list[tuple[str, int]],
        val_samples: list[tuple[str, int]],
        cfg: TrainConfig,
    ) -> None:
        super().__init__()
        self.roots = as_roots(root)
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.cfg = cfg

    def setup(self, stage: str) -> None:
        size, val_size = self.cfg.data.input_size, self.cfg.data.val_size
        if self.cfg.data.cache:
            trainer = self.trainer
            self.train_set, self.val_set = cached_sets(
                self.roots,
                self.train_samples if stage == "fit" else None,
                self.val_samples,
                size,
                val_size=val_size,
                threads=max(2, self.cfg.data.workers),
                device=trainer.strategy.root_device if trainer else "cpu",
                # Every rank on this machine decodes its own copy.
                copies=trainer.num_devices if trainer else 1,
            )
            return
        if stage == "fit":
            self.train_set = ImageDataset(
                self.roots, self.train_samples, train_transform(self.cfg), min_side=size
            )
        self.val_set = ImageDataset(
            self.roots, self.val_samples, eval_transform(val_size), min_side=val_size
        )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def _loader(self, dataset: ImageDataset | CachedImages, sampler, drop_last: bool) -> DataLoader:
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        if isinstance(dataset, CachedImages):
            # A batch is one indexing of an in-memory tensor: worker processes would only add
            # inter-process copies. Pinning is for host tensors bound for the GPU.
            return DataLoader(
                dataset,
                batch_size=self.cfg.optim.batch,
                sampler=sampler,
                num_workers=0,
                collate_fn=keep_batch,
                drop_last=drop_last,
                pin_memory=on_cuda and dataset.device.type == "cpu",
            )
        workers = self.cfg.data.workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.optim.batch,
            sampler=sampler,
            num_workers=workers,
            drop_last=drop_last,
            persistent_workers=workers > 0,
            pin_memory=on_cuda,
        )

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        if self.cfg.data.imbalance:
            labels = [label for _, label in self.train_samples]
            sampler = ClassBalancedSampler(labels, self.cfg.data.seed, world, rank)
        else:
            sampler = ShuffleSampler(len(self.train_samples), self.cfg.data.seed, world, rank)
        # A last batch of one breaks BatchNorm; dropping it loses < one batch per epoch.
        drop_last = len(sampler) > self.cfg.optim.batch
        return self._loader(self.train_set, sampler, drop_last)

    def val_dataloader(self) -> DataLoader:
        world, rank = self._world()
        return self._loader(self.val_set, ShardSampler(len(self.val_set), world, rank), False)
