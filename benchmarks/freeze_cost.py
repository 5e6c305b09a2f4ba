"""What ``binsort train --freeze-stages N`` saves: training images/s with the stem and first N
stages frozen against none.

All sides are ``binsort train``'s module and Trainer (``lightning_overhead.lightning_speed``) on
the same pre-made batches of random tensors held in memory, so data loading is out of the
comparison; the fine-tuning recipe's optimiser (AdamW). Rounds alternate the order. About four
minutes on the two cores::

    python benchmarks/freeze_cost.py --model tf_efficientnet_lite0 --size 224 --batch 16
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 3, 4])
    args = finetune_step_args(parser)
    cfg = finetune_config("freeze-cost", args)
    batches = random_batches(args.batch, args.size, args.warmup + args.steps)
    print(finetune_setting(args), flush=True)
    sides = {
        n: partial(
            lightning_speed,
            replace(cfg, model=replace(cfg.model, freeze_stages=n)),
            batches,
            args.warmup,
            args.steps,
        )
        for n in [0, *args.stages]
    }
    means = alternating_rounds(sides, args.rounds)
    for n, speed in means.items():
        print(
            f"--freeze-stages {n}  {speed:8.1f} images/s  {speed / means[0]:5.2f}x the speed of 0"
        )


if __name__ == "__main__":
    main()
