"""The decoded dataset in memory, for ``--cache``: every image decoded once, kept as uint8.

On small data sets the per-image path spends most of its time decoding JPEGs and augmenting
PIL images in loader workers, every epoch, for every image. With ``--cache`` the
DataModule calls ``cached_sets`` once instead: each training image is decoded (through
``open_rgb``, so EXIF orientation and odd modes are handled as everywhere else), its shorter
side resized to ``cache_side(input_size)`` (15% above the input size) and centre-cropped to a
square of that side; validation images get exactly the evaluation preprocessing (shorter side
to the input size, centre crop). Both are held as uint8 ``[N, 3, S, S]`` tensors, on the GPU
when training on one and it has room. Items are tensor slices, so the loaders need no worker
processes; the training batch is augmented on the device by ``binsort.data.batch_augment``.

Why a square of 1.15x the input size: RandomResizedCrop then resamples by at most 1.15x
downwards, so one bilinear resample without antialiasing does not alias, while the cache
stays small. The price: the crop comes from the centre square, so the sides of non-square
photos (1/8 of the width on each side for 4:3) are never seen in training.

Before decoding, ``check_memory`` compares the size ``N * 3 * S * S`` bytes (times the number
of processes on this machine) with ``MEMORY_FRACTION`` of the available memory and refuses
with a ``BinsortError`` that suggests ``binsort resize`` or the per-image path.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from binsort.data.folder import as_roots, locate
from binsort.data.images import open_rgb
from binsort.errors import BinsortError

# Share of the available memory the cache may take: the rest is for the model, the batches,
# the OS page cache and other processes.
MEMORY_FRACTION = 0.5
# Cached side over input size: room for the random crop without downscaling much (see above).
SIDE_MARGIN = 1.15


class CachedImages(Dataset):
    """uint8 images ``[N, 3, S, S]`` and labels ``[N]``; items are ``(image, label)`` slices.

    ``__getitems__`` lets the DataLoader take a whole batch with one indexing operation;
    use ``collate=keep_batch`` with it.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("CachedImages wants uint8 images [N, 3, S, S] and N labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, device=self.images.device)
        return self.images[index], self.labels[index]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()

    def to(self, device: torch.device | str) -> CachedImages:
        return CachedImages(self.images.to(device), self.labels.to(device))


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's collate for ``CachedImages``: ``__getitems__`` already made the batch."""
    return batch


def cache_side(input_size: int) -> int:
    return math.ceil(input_size * SIDE_MARGIN)


def image_bytes(count: int, side: int) -> int:
    return count * 3 * side * side


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes free for new allocations: ``MemAvailable`` on the host, free memory on a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # Neither psutil nor /proc (macOS, Windows without psutil): total physical memory.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(nbytes: int, copies: int = 1) -> None:
    """Refuse a host cache of ``nbytes`` per process (``copies`` processes) that will not fit."""
    need = nbytes * copies
    budget = MEMORY_FRACTION * available_memory("cpu")
    if need > budget:
        per = f" ({copies} processes, {_mb(nbytes)} each)" if copies > 1 else ""
        raise BinsortError(
            f"--cache needs {_mb(need)} of memory for the decoded images{per}, more than "
            f"{MEMORY_FRACTION:.0%} of the {_mb(budget / MEMORY_FRACTION)} available: "
            "make the images smaller first (binsort resize ROOT OUT --size N, with N a little "
            "above --input-size) or train without --cache (images are then decoded per batch "
            "by the loader workers)"
        )


def decode_images(
    root: str | Path | Sequence[Path], samples: list[tuple[str, int]], side: int, threads: int = 2
) -> CachedImages:
    """Decode ``samples`` into a square ``side`` x ``side`` uint8 cache, in ``threads`` threads.

    Shorter side resized to ``side`` (bilinear, antialiased: torchvision's ``Resize``), then a
    centre crop: with ``side = input_size`` this is the evaluation preprocessing exactly.
    ``root`` is the samples' folder, or their folders (``binsort.data.folder.locate``).
    """
    roots = as_roots(root)
    images = torch.empty(len(samples), 3, side, side, dtype=torch.uint8)
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)

    def load(index: int) -> None:
        # Each thread writes its own row of the preallocated tensor: no list of copies to stack.
        im = open_rgb(locate(roots, samples[index][0]), min_side=side)
        im = TF.center_crop(TF.resize(im, side, antialias=True), side)
        images[index] = TF.pil_to_tensor(im)

    # PIL decodes and resizes with the GIL released, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(load, range(len(samples))))
    return CachedImages(images, labels)


def cached_sets(
    root: str | Path | Sequence[Path],
    train_samples: list[tuple[str, int]] | None,
    val_samples: list[tuple[str, int]],
    input_size: int,
    threads: int = 2,
    device: torch.device | str = "cpu",
    copies: int = 1,
    val_size: int | None = None,
) -> tuple[CachedImages | None, CachedImages]:
    """The cached training set (``None`` without samples) and validation set, on ``device``.

    Validation images are decoded at ``val_size`` (``--eval-size``; default ``input_size``).

    ``copies`` is the number of training processes on this machine (DDP ranks), each holding
    its own host copy while it decodes. On a GPU without room for both sets they stay in host
    memory (batches are then copied over, pinned), with a warning.
    """
    side = cache_side(input_size)
    val_size = val_size or input_size
    need = image_bytes(len(val_samples), val_size)
    if train_samples is not None:
        need += image_bytes(len(train_samples), side)
    check_memory(need, copies)
    train = decode_images(root, train_samples, side, threads) if train_samples else None
    val = decode_images(root, val_samples, val_size, threads)
    device = torch.device(device)
    if device.type != "cpu":
        free = available_memory(device) if device.type == "cuda" else need
        if need <= MEMORY_FRACTION * free:
            train = train.to(device) if train is not None else None
            val = val.to(device)
        else:
            warnings.warn(
                f"--cache: {_mb(need)} of images would take more than {MEMORY_FRACTION:.0%} of "
                f"the {_mb(free)} free on {device}; keeping them in host memory",
                stacklevel=2,
            )
    return train, val


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"
