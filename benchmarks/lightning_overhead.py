"""Training images/s of binsort's Lightning training against a plain PyTorch loop.

Both sides train the same model on the same pre-made batches of random tensors held in memory,
so data loading is out of the comparison and what is left is Lightning's per-step cost:

(a) Lightning: ``binsort.models.module.Classifier`` driven by the ``lightning.Trainer`` that
    ``binsort.train`` builds (same callbacks, logger, checkpointing and per-step logging);
(b) plain: the same ``build_model`` (normalisation as the first layer), AdamW, cross-entropy
    with the same label smoothing, ``zero_grad`` / ``backward`` / ``step`` in a for loop.

Each side runs ``--warmup`` steps, then ``--steps`` timed optimizer steps, ``--rounds`` times in
alternating order. The ratio (a)/(b) is Lightning's share of the plain loop's speed. About two
minutes on one core::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/lightning_overhead.py --size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial

import lightning as L
import torch
from rounds import alternating_rounds

from binsort.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from binsort.models.factory import build_model
from binsort.models.module import Classifier
from binsort.train import _quiet_lightning, _trainer

CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


class StepTimer(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last training batch.

    Spanning batch boundaries counts everything Lightning does between steps (hooks, logging,
    fetching the next batch), which is the overhead this benchmark is after.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def bench_config(
    name: str, model: str, size: int, batch: int, steps: int, weights: str | None = None, **recipe
) -> TrainConfig:
    """A one-epoch CPU run of ``steps`` batches, logging to a temporary folder rather than
    runs/; ``recipe`` holds the optimisation options the figures were measured with. The
    weights stay fresh (a step costs the same whatever they are): ``weights`` only chooses the
    recipe the options left unset take, fine-tuning or from scratch, as in ``binsort train``."""
    return TrainConfig.from_options(
        weights=weights,
        root=None,
        model=model,
        input_size=size,
        batch=batch,
        epochs=1,
        accelerator="cpu",
        devices="1",
        limit_batches=steps,
        out=tempfile.mkdtemp(prefix="binsort-bench-"),
        name=name,
        **recipe,
    )


def finetune_step_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options of the benchmarks that time fine-tuning steps of Lite0, parsed."""
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    return parser.parse_args()


def finetune_config(name: str, args: argparse.Namespace) -> TrainConfig:
    """``bench_config`` with the fine-tuning recipe (``train --weights``'s defaults) and
    channels-last, for ``finetune_step_args``' options."""
    steps = args.warmup + args.steps
    return bench_config(
        name, args.model, args.size, args.batch, steps, weights="imagenet", channels_last=True
    )


def finetune_setting(args: argparse.Namespace) -> str:
    """The line that says what ``finetune_step_args``' figures were measured on."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, "
        f"{args.size}px, batch {args.batch}, fp32 + channels-last, {args.warmup} warm-up + "
        f"{args.steps} timed steps"
    )


def random_batches(batch: int, size: int, count: int) -> list:
    """``count`` seeded batches of random images and labels, held in memory."""
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.rand(batch, 3, size, size, generator=generator),
            torch.randint(0, len(CLASSES), (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def lightning_speed(
    cfg: TrainConfig, batches: list, warmup: int, steps: int, teacher: object = None
) -> float:
    """Training images/s of ``binsort train``'s module and Trainer (with ``teacher``, if any:
    a ``binsort.models.teacher.Teacher``, as ``--teacher`` attaches it)."""
    L.seed_everything(cfg.data.seed, verbose=False)
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    module = Classifier(cfg.to_dict(), CLASSES, mean, std, class_counts=None, split=None)
    module.teacher = teacher
    # batch_size=None: the loader hands out the pre-made batches as they are.
    train = torch.utils.data.DataLoader(batches, batch_size=None)
    # One validation batch, after the timed steps: the checkpoint callback needs val_loss.
    val = torch.utils.data.DataLoader(batches[:1], batch_size=None)
    timer = StepTimer(warmup)
    with _quiet_lightning():
        # binsort's own Trainer factory, so the callbacks and settings are those of `binsort train`.
        trainer, _, _ = _trainer(cfg, None, False, None)
        trainer.callbacks.append(timer)
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return steps * len(batches[0][1]) / (timer.end - timer.start)


def plain_speed(cfg: TrainConfig, batches: list, warmup: int, steps: int) -> float:
    torch.manual_seed(cfg.data.seed)
    model = build_model(
        cfg.model.model, len(CLASSES), IMAGENET_MEAN, IMAGENET_STD, cfg.data.input_size
    )
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if cfg.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for x, y in batches[:warmup]:
        step(x, y)
    start = time.perf_counter()
    for x, y in batches[warmup : warmup + steps]:
        step(x, y)
    return steps * len(batches[0][1]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="alternating (a)/(b) pairs")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # The from-scratch recipe of docs/benchmarks.md, on the CPU, at fp32.
    cfg = bench_config(
        "lightning-overhead",
        args.model,
        args.size,
        args.batch,
        args.warmup + args.steps,
        opt="adamw",
        lr=2e-3,
        weight_decay=0.05,
        label_smoothing=0.1,
        channels_last=args.channels_last,
        precision="32-true",
    )
    batches = random_batches(args.batch, args.size, args.warmup + args.steps)
    print(
        f"torch {torch.__version__}, lightning {L.__version__}, {torch.get_num_threads()} "
        f"threads, {args.model}, {args.size}px, batch {args.batch}, fp32"
        f"{' + channels-last' if args.channels_last else ''}, "
        f"{args.warmup} warm-up + {args.steps} timed steps",
        flush=True,
    )
    means = alternating_rounds(
        {
            "plain": partial(plain_speed, cfg, batches, args.warmup, args.steps),
            "Lightning": partial(lightning_speed, cfg, batches, args.warmup, args.steps),
        },
        args.rounds,
    )
    plain, lightning = means["plain"], means["Lightning"]
    print(f"(b) plain PyTorch loop  {plain:8.1f} images/s")
    print(
        f"(a) Lightning Trainer   {lightning:8.1f} images/s  {lightning / plain:5.3f}x of (b)"
        f"  (torch threads after fit: {torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()
