"""What ``binsort train --teacher`` costs: training images/s with a teacher against without.

Both sides are ``binsort train``'s module and Trainer (``lightning_overhead.lightning_speed``)
on the same pre-made batches of random tensors held in memory, so data loading is out of the
comparison. The teacher is ``--members`` networks of the student's architecture with fresh
weights (the cost of a forward pass does not depend on the weights), as a seven-member
ensemble file would make it. Rounds alternate the order. About three minutes on one core::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/distill_cost.py --size 192 --members 7
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from lightning_overhead import CLASSES, bench_config, lightning_speed, random_batches
from rounds import alternating_rounds

from binsort.config import IMAGENET_MEAN, IMAGENET_STD
from binsort.models.checkpoint import LoadedModel
from binsort.models.factory import build_model
from binsort.models.teacher import Teacher


def fresh_teacher(model: str, size: int, members: int) -> Teacher:
    torch.manual_seed(0)
    loaded = [
        LoadedModel(
            build_model(model, len(CLASSES), IMAGENET_MEAN, IMAGENET_STD, size),
            model,
            CLASSES,
            size,
            Path(f"member-{i}"),
        )
        for i in range(members)
    ]
    return Teacher([(m, 1) for m in loaded], Path("fresh"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shufflenet_v2_x1_0")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--members", type=int, default=7, help="teacher networks")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = bench_config(  # the from-scratch recipe these figures were measured with
        "distill-cost",
        args.model,
        args.size,
        args.batch,
        args.warmup + args.steps,
        opt="adamw",
        lr=5e-4,
        weight_decay=0.05,
        label_smoothing=0.1,
        channels_last=True,
    )
    batches = random_batches(args.batch, args.size, args.warmup + args.steps)
    teacher = fresh_teacher(args.model, args.size, args.members)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} student, "
        f"teacher of {args.members} x {args.model}, {args.size}px, batch {args.batch}, fp32 + "
        f"channels-last, {args.warmup} warm-up + {args.steps} timed steps",
        flush=True,
    )
    means = alternating_rounds(
        {
            "alone": partial(lightning_speed, cfg, batches, args.warmup, args.steps),
            "teacher": partial(lightning_speed, cfg, batches, args.warmup, args.steps, teacher),
        },
        args.rounds,
    )
    alone, taught = means["alone"], means["teacher"]
    print(f"(a) student alone        {alone:8.1f} images/s")
    slower = alone / taught
    print(f"(b) with the teacher     {taught:8.1f} images/s  {slower:5.2f}x the time of (a)")


if __name__ == "__main__":
    main()
