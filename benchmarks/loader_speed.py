"""Images/s of binsort's training DataLoader alone, against the model's training speed.

For each folder and worker count, the loader of ``BinDataModule`` (``ImageDataset`` with
``train_transform``: decoding with JPEG draft scaling, RandomResizedCrop, flips, affine,
perspective, colour jitter) is iterated with no model at all. The model's own speed is one
forward + backward + AdamW step on a fixed random batch (compute only). The ratio
loader / model says whether the loader keeps up (files are read once beforehand, so
the OS file cache holds them, as after a first epoch): below 1, training waits for data unless
loading runs on other cores than the model.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/loader_speed.py \
        --roots data/trashnet data/trashnet160 --workers 0 1
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial
from pathlib import Path

import torch
from rounds import alternating_rounds

from binsort.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from binsort.data.datamodule import BinDataModule
from binsort.data.folder import scan_folder
from binsort.models.factory import build_model


def model_speed(cfg: TrainConfig, classes: int, warmup: int, steps: int) -> float:
    """Training images/s on one random batch: what the model could eat if data were free."""
    torch.manual_seed(cfg.data.seed)
    model = build_model(cfg.model.model, classes, IMAGENET_MEAN, IMAGENET_STD, cfg.data.input_size)
    model = model.to(memory_format=torch.channels_last)  # the documented recipe's setting
    optimizer = torch.optim.AdamW(
        model.parameters(), cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    x = torch.rand(cfg.optim.batch, 3, cfg.data.input_size, cfg.data.input_size)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (cfg.optim.batch,))

    def step() -> None:
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * cfg.optim.batch / (time.perf_counter() - start)


def loader_speed(cfg: TrainConfig, warmup: int, batches: int) -> float:
    """Images/s of iterating the training loader ``binsort train`` would build."""
    (root,) = cfg.data.root  # one folder at a time
    samples = scan_folder(root, check=False).samples
    for path, _ in samples:
        # Into the OS file cache first, as after a first epoch: the first folder timed should
        # not be the only one to pay for disk reads (trials: up to 1.5x slower when it did).
        (Path(root) / path).read_bytes()
    datamodule = BinDataModule(cfg.data.root, samples, [], cfg)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    # Warm-up batches take the worker start-up; the loader is persistent, so it is paid once.
    batch_iter = itertools.chain.from_iterable(iter(loader) for _ in itertools.count())
    for _ in range(warmup):
        next(batch_iter)
    start = time.perf_counter()
    images = sum(len(next(batch_iter)[1]) for _ in range(batches))
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", nargs="+", default=["data/trashnet", "data/trashnet160"])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batches", type=int, default=30, help="timed loader batches")
    parser.add_argument("--steps", type=int, default=20, help="timed model steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def config(root: str, workers: int) -> TrainConfig:
        # The documented recipe's optimiser and augmentation defaults.
        return TrainConfig.from_options(
            weights=None,  # the from-scratch recipe these figures were measured with
            root=root,
            model=args.model,
            input_size=args.size,
            batch=args.batch,
            workers=workers,
            opt="adamw",
            lr=2e-3,
            weight_decay=0.05,
            label_smoothing=0.1,
        )

    classes = len(scan_folder(args.roots[0], check=False).classes)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, "
        f"{args.size}px, batch {args.batch}; loader: {args.warmup} warm-up + {args.batches} "
        f"timed batches; model: fp32 + channels-last, {args.warmup} warm-up + {args.steps} steps; "
        f"{args.rounds} rounds",
        flush=True,
    )
    model_cfg = config(args.roots[0], 0)
    measures = {
        "model, compute only": partial(model_speed, model_cfg, classes, args.warmup, args.steps)
    }
    for root in args.roots:
        for workers in args.workers:
            cfg = config(root, workers)
            measures[f"loader {root}, {workers} workers"] = partial(
                loader_speed, cfg, args.warmup, args.batches
            )
    means = alternating_rounds(measures, args.rounds)
    model = means["model, compute only"]
    for label, speed in means.items():
        print(f"{label:<44}{speed:8.1f} images/s  {speed / model:5.2f}x of model")


if __name__ == "__main__":
    main()
