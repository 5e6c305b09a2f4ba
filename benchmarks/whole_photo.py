"""The members of an ensemble fed the centre square (what binsort does) or the whole photo.

Every transform binsort uses crops the photo's centre square; TrashNet's photos are 3:4, so
that drops a quarter of each. Convolutional networks take any shape, so this feeds each
member the whole photo too (shorter side SIZE, the longer in proportion, no crop), fits the
members' temperatures and their shared factor on the same images as ``ensemble --calibrate``
does, and prints the calibrated ensemble's NLL and accuracy for each view and size.

    python benchmarks/whole_photo.py build/default/default.ensemble \
        --split docs/trashnet-split.json --root data/trashnet --part val --sizes 288 320 352
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.transforms import v2

from binsort import metrics
from binsort.data.images import open_rgb
from binsort.data.transforms import eval_transform
from binsort.imagesets import image_set, read_split
from binsort.models.checkpoint import load_members
from binsort.runner import Calibration


def view(size: int, whole: bool) -> v2.Compose:
    """binsort's eval transform, or the same without its centre crop."""
    if not whole:
        return eval_transform(size)
    steps = [v2.Resize(size, antialias=True), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)


@torch.inference_mode()
def logits(model: torch.nn.Module, tensors: list[torch.Tensor], batch: int) -> torch.Tensor:
    # Photos of different shapes cannot share a batch; TrashNet's all have one.
    shapes = {t.shape for t in tensors}
    size = batch if len(shapes) == 1 else 1
    return torch.cat(
        [model(torch.stack(tensors[i : i + size])).float() for i in range(0, len(tensors), size)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensemble", type=Path, help="a checkpoint or ensemble file")
    parser.add_argument("--split", type=Path, required=True, help="a run folder or split file")
    parser.add_argument("--root", type=Path, help="where the split's images are (originals)")
    parser.add_argument("--part", default="val", choices=["val", "test"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[288, 320, 352, 384])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    members = load_members(args.ensemble)
    images = image_set(members[0].classes, args.root, read_split(args.split), args.part)
    photos = [open_rgb(images.file(path)) for path, _ in images.samples]
    labels = torch.tensor(images.labels)
    shapes = sorted({p.size for p in photos})
    print(
        f"{len(photos)} {args.part} photos of {images.root} (width x height: {shapes}), "
        f"{len(members)} members of {args.ensemble}, each calibrated on them"
    )
    print(f"{'view':<12} {'size':>5} {'NLL':>7} {'accuracy %':>10}  members' NLL alone")
    for size in args.sizes:
        for whole in (False, True):
            tensors = [view(size, whole)(p) for p in photos]
            raw = [logits(m.model, tensors, args.batch) for m in members]
            temps = [metrics.fit_temperature(r, labels) for r in raw]
            ones = [1] * len(members)
            scaled, _ = Calibration(temps, raw, labels).for_ensemble(list(range(len(raw))), ones)
            probs = [metrics.tempered_softmax(r, t) for r, t in zip(raw, scaled, strict=True)]
            mean = metrics.weighted_mean(probs, ones)
            alone = [
                metrics.nll(metrics.tempered_softmax(r, t), labels)
                for r, t in zip(raw, temps, strict=True)
            ]
            name = "whole photo" if whole else "centre crop"
            accuracy = 100 * metrics.accuracy(labels, mean.argmax(1))
            print(
                f"{name:<12} {size:>5} {metrics.nll(mean, labels):7.4f} {accuracy:10.2f}  "
                + " ".join(f"{a:.3f}" for a in alone)
            )


if __name__ == "__main__":
    main()
