"""What ``binsort train --ema`` costs: training images/s with the weight average against without.

All sides are ``binsort train``'s module and Trainer (``lightning_overhead.lightning_speed``) on
the same pre-made batches of random tensors held in memory, so data loading is out of the
comparison; the fine-tuning recipe's optimiser (AdamW). "per tensor" is Lightning's own
``EMAWeightAveraging``, which updates the average one tensor at a time; binsort's ``--ema``
updates all of them in one fused call. Rounds alternate the order. About five minutes on the
two cores::

    python benchmarks/ema_cost.py --model tf_efficientnet_lite0 --size 224 --batch 16
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial

from lightning_overhead import (
    finetune_config,
    finetune_setting,
    finetune_step_args,
    lightning_speed,
    random_batches,
)
from rounds import alternating_rounds

import binsort.models.callbacks as callbacks
from binsort.config import TrainConfig


def per_tensor_speed(cfg: TrainConfig, batches: list, warmup: int, steps: int) -> float:
    """Training speed with Lightning's ``EMAWeightAveraging`` in place of binsort's."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    own = callbacks.ema_averaging
    callbacks.ema_averaging = lambda decay: EMAWeightAveraging(decay=decay)
    try:
        return lightning_speed(cfg, batches, warmup, steps)
    finally:
        callbacks.ema_averaging = own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = finetune_step_args(parser)
    cfg = finetune_config("ema-cost", args)
    with_ema = replace(cfg, optim=replace(cfg.optim, ema=True))
    batches = random_batches(args.batch, args.size, args.warmup + args.steps)
    print(finetune_setting(args), flush=True)
    means = alternating_rounds(
        {
            "no EMA": partial(lightning_speed, cfg, batches, args.warmup, args.steps),
            "--ema": partial(lightning_speed, with_ema, batches, args.warmup, args.steps),
            "per tensor": partial(per_tensor_speed, with_ema, batches, args.warmup, args.steps),
        },
        args.rounds,
    )
    plain = means["no EMA"]
    print(f"(a) no EMA                       {plain:8.1f} images/s")
    sides = {"--ema": "(b) --ema (one fused update)", "per tensor": "(c) EMA one tensor at a time"}
    for label, name in sides.items():
        slower = plain / means[label]
        print(f"{name:32} {means[label]:8.1f} images/s  {slower:5.2f}x the time of (a)")


if __name__ == "__main__":
    main()
