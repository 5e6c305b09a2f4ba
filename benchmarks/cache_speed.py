"""Training images/s of the per-image loader path and the ``--cache`` path, against compute alone.

One run measures, for the same model, batch, input size and precision (fp32, channels-last):

(a) compute only: forward + backward + AdamW step on a fixed random batch, no data at all;
(b) the per-image path: ``ImageDataset`` + ``train_transform`` in DataLoader worker processes;
(c) the ``--cache`` path: decoded uint8 tensors in memory, ``BatchAugment`` on each batch.

Each path runs ``--warmup`` steps (worker start-up, allocations), then ``--steps`` timed steps
that include waiting for the batch. The ratios (b)/(a) and (c)/(a) say how much of the
compute-bound speed each data path keeps. The one-off decoding time of the cache is printed
apart. Example (about two minutes on a 2-core CPU)::

    python benchmarks/cache_speed.py --root data/trashnet160 --size 128 --batch 32

On a GPU (``--device cuda``) the model, the cache and the augmentation are on the GPU, and the
per-image path's workers feed it through pinned memory: (b)/(a) then says whether the loader
keeps the GPU busy.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader

from binsort.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from binsort.data.batch_augment import BatchAugment
from binsort.data.cache import cached_sets, keep_batch
from binsort.data.dataset import ImageDataset
from binsort.data.folder import scan_folder
from binsort.data.sampler import ShuffleSampler
from binsort.data.transforms import train_transform
from binsort.models.factory import build_model


def train_speed(
    cfg: TrainConfig,
    classes: int,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    warmup: int,
    steps: int,
    device: torch.device,
) -> float:
    """Images/s over ``steps`` steps on ``device``, each taking its batch from ``batches``."""
    torch.manual_seed(cfg.data.seed)
    model = build_model(cfg.model.model, classes, IMAGENET_MEAN, IMAGENET_STD, cfg.data.input_size)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> int:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = prepare(x).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return len(y)

    for _ in range(warmup):
        step()
    # A GPU runs behind the Python loop: wait for it on both ends of the timed steps.
    synchronize(device)
    start = time.perf_counter()
    images = sum(step() for _ in range(steps))
    synchronize(device)
    return images / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/trashnet160")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="loader workers for (b)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as binsort train --benchmark: fixed shapes
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_options(
        weights=None,  # the from-scratch recipe these figures were measured with
        root=args.root,
        model=args.model,
        input_size=args.size,
        batch=args.batch,
        workers=args.workers,
    )
    found = scan_folder(args.root, check=False)
    samples, classes = found.samples, len(found.classes)
    print(
        f"torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} threads, "
        f"{args.model}, "
        f"{args.size}px, batch {args.batch}, fp32 + channels-last, {len(samples)} images, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )

    def forever(loader: DataLoader) -> Iterator:
        # Re-iterate across epochs, so a small folder never runs out of batches.
        return itertools.chain.from_iterable(iter(loader) for _ in itertools.count())

    fixed = (
        torch.rand(args.batch, 3, args.size, args.size),
        torch.randint(0, classes, (args.batch,)),
    )
    compute = train_speed(
        cfg, classes, itertools.repeat(fixed), lambda x: x, args.warmup, args.steps, device
    )
    print(f"(a) compute only        {compute:8.1f} images/s", flush=True)

    dataset = ImageDataset(args.root, samples, train_transform(cfg), min_side=args.size)
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        sampler=ShuffleSampler(len(samples), cfg.data.seed),
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    per_image = train_speed(
        cfg, classes, forever(loader), lambda x: x, args.warmup, args.steps, device
    )
    print(
        f"(b) per-image loader    {per_image:8.1f} images/s  {per_image / compute:5.2f}x of (a)"
        f"  ({args.workers} workers)",
        flush=True,
    )
    del loader

    started = time.perf_counter()
    train, _ = cached_sets(
        args.root, samples, [], args.size, threads=max(2, args.workers), device=device
    )
    decode = time.perf_counter() - started
    cached = DataLoader(
        train,
        batch_size=args.batch,
        sampler=ShuffleSampler(len(train), cfg.data.seed),
        collate_fn=keep_batch,
        drop_last=True,
    )
    augment = BatchAugment.from_config(cfg)
    generator = torch.Generator().manual_seed(cfg.data.seed)
    cache = train_speed(
        cfg,
        classes,
        forever(cached),
        lambda x: augment(x, generator),
        args.warmup,
        args.steps,
        device,
    )
    print(
        f"(c) --cache             {cache:8.1f} images/s  {cache / compute:5.2f}x of (a)"
        f"  (decoding {len(train)} images once: {decode:.1f} s, {train.nbytes / 2**20:.0f} MiB)",
        flush=True,
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


if __name__ == "__main__":
    main()
