"""A map-style dataset over (relative path, label) samples of one folder, or of several."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from binsort.data.folder import as_roots, locate
from binsort.data.images import open_rgb


class ImageDataset(Dataset):
    def __init__(
        self,
        root: str | Path | Sequence[Path],  # several: qualified sample paths (data.folder)
        samples: list[tuple[str, int]],
        transform: Callable[[Any], Any],
        min_side: int | None = None,
    ) -> None:
        self.roots = as_roots(root)
        self.samples = samples
        self.transform = transform
        self.min_side = min_side  # lets big JPEGs decode at a reduced scale

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(open_rgb(locate(self.roots, path), min_side=self.min_side)), label
