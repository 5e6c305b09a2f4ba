"""Training samplers: seeded, epoch-aware and shard-aware for distributed training.

Both samplers draw from an explicit ``torch.Generator`` seeded with ``mix(seed, epoch)``
(Lightning calls ``set_epoch`` before each epoch), so a run is reproducible, every rank of a
DDP job draws the same global order and takes its own share of it, and runs with nearby seeds
draw unrelated orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from binsort.seeding import mix


class _ShardedSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.seed = seed
        self.epoch = 0
        self.num_replicas = num_replicas
        self.rank = rank
        # Every rank yields the same number of indices, or DDP's collectives would hang.
        self.per_rank = math.ceil(num_samples / num_replicas)
        self.total = self.per_rank * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(mix(self.seed, self.epoch))

    def global_order(self) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        return iter(order[self.rank : self.total : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank


class ShuffleSampler(_ShardedSampler):
    """A seeded permutation per epoch (wrapping around to pad the last rank's share)."""

    def __init__(self, num_samples: int, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        super().__init__(num_samples, seed, num_replicas, rank)
        self.num_samples = num_samples

    def global_order(self) -> torch.Tensor:
        order = torch.randperm(self.num_samples, generator=self.generator())
        if self.total > self.num_samples:
            order = torch.cat([order, order[: self.total - self.num_samples]])
        return order


class ClassBalancedSampler(_ShardedSampler):
    """Draws with replacement so that every class is equally likely in each batch.

    An epoch has as many draws as there are samples; small classes are upsampled and large
    ones downsampled, GarbageML's "imbalance sampler".
    """

    def __init__(
        self, labels: Sequence[int], seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(len(labels), seed, num_replicas, rank)
        targets = torch.as_tensor(labels, dtype=torch.long)
        counts = torch.bincount(targets).double()
        self.weights = (1.0 / counts)[targets]

    def global_order(self) -> torch.Tensor:
        return torch.multinomial(
            self.weights, self.total, replacement=True, generator=self.generator()
        )


class ShardSampler(Sampler[int]):
    """Evaluation order: rank r takes indices r, r + world, ...; nothing padded or repeated,

    so metrics synchronised across ranks count every validation image exactly once.
    """

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, num_samples, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
