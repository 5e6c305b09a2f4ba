"""Images/s of binsort's ``BatchAugment`` against an equivalent kornia.augmentation pipeline.

Both turn the same random uint8 batches ``[B, 3, S, S]`` (S: the ``--cache`` side for
``--size``) into float32 ``[B, 3, size, size]`` in [0, 1] with the from-scratch recipe's
strengths (``TrainConfig`` defaults): RandomResizedCrop, horizontal and vertical flips,
rotation and x-shear, perspective (p=0.5), colour jitter, grayscale. kornia runs each step as
its own resample, with its RandomResizedCrop in both cropping modes ("slice" crops and resizes
per image, "resample" warps the batch). Timed at each thread count in ``--threads``, after one
untimed batch, in alternating rounds; the ratio is taken within the same run.

    python benchmarks/augment_speed.py --size 224 --batch 32 --rounds 6 --threads 1 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rounds import alternating_rounds

from binsort.config import TrainConfig
from binsort.data.batch_augment import BatchAugment
from binsort.data.cache import cache_side
from binsort.data.transforms import CROP_RATIO, PERSPECTIVE_P


def kornia_pipeline(cfg: TrainConfig, cropping_mode: str) -> torch.nn.Module:
    """kornia's steps with ``train_transform(cfg)``'s parameters, in the same order."""
    import kornia.augmentation as K

    return torch.nn.Sequential(
        K.RandomResizedCrop(
            (cfg.data.input_size, cfg.data.input_size),
            scale=(cfg.aug.aug_scale, 1.0),
            ratio=CROP_RATIO,
            cropping_mode=cropping_mode,
        ),
        K.RandomHorizontalFlip(p=cfg.aug.hflip),
        K.RandomVerticalFlip(p=cfg.aug.vflip),
        K.RandomAffine(degrees=cfg.aug.rotation, shear=cfg.aug.shear, p=1.0),
        K.RandomPerspective(distortion_scale=cfg.aug.perspective, p=PERSPECTIVE_P),
        K.ColorJitter(cfg.aug.jitter, cfg.aug.jitter, cfg.aug.jitter, p=1.0),
        K.RandomGrayscale(p=cfg.aug.grayscale),
    )


def timed(augment: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]):
    """A measure for ``alternating_rounds``: images/s over ``batches``."""

    def measure() -> float:
        start = time.perf_counter()
        for x in batches:
            out = augment(x)
        if out.is_cuda:
            torch.cuda.synchronize()
        return sum(len(x) for x in batches) / (time.perf_counter() - start)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches per timing")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        import kornia
    except ImportError:
        raise SystemExit(
            "kornia is not installed (pip install kornia): nothing to compare"
        ) from None

    cfg = TrainConfig.from_options(input_size=args.size, weights=None)  # from-scratch augmentation
    side = cache_side(args.size)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(
            0, 256, (args.batch, 3, side, side), dtype=torch.uint8, generator=generator
        ).to(args.device)
        for _ in range(args.batches)
    ]
    ours = BatchAugment.from_config(cfg)
    ours_generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)  # kornia draws from the global generator
    measures = {
        "BatchAugment": timed(lambda x: ours(x, ours_generator), batches),
        **{
            f"kornia {mode}": timed(
                lambda x, k=kornia_pipeline(cfg, mode).to(args.device): k(x.float().div_(255)),
                batches,
            )
            for mode in ("slice", "resample")
        },
    }
    print(
        f"kornia {kornia.__version__}, torch {torch.__version__}, {args.device}: "
        f"{args.batches} batches of {args.batch} x 3 x {side} x {side} uint8 -> {args.size} px"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        for measure in measures.values():
            measure()  # untimed warm-up
        print(f"--- {threads} thread(s)")
        speeds = alternating_rounds(measures, args.rounds)
        base = speeds["BatchAugment"]
        for label, speed in speeds.items():
            print(f"{label:>16}: {speed:7.1f} images/s  ({speed / base:.2f}x BatchAugment)")


if __name__ == "__main__":
    main()
