"""What storing the weights smaller (``export --half``, ``--int8``) does to a model's answers.

Runs ONNX files of one model on the same images (a run's recorded test list, read from
--root) and prints, per file: its size, its accuracy and NLL, the largest probability
difference from the first file and how many answers differ from the first file's.

    python benchmarks/export_accuracy.py fp32.onnx half.onnx int8.onnx \
        --split docs/trashnet-split.json --root data/trashnet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from binsort import metrics
from binsort.data.images import open_rgb
from binsort.imagesets import image_set, read_split
from binsort.onnx_model import OnnxModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", type=Path, nargs="+", help="ONNX files; the first is the reference"
    )
    parser.add_argument("--split", type=Path, required=True, help="a run folder or checkpoint")
    parser.add_argument("--root", type=Path, help="where the split's images are (originals)")
    parser.add_argument("--part", default="test", choices=["test", "val"])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    models = [OnnxModel(p) for p in args.models]
    images = image_set(models[0].classes, args.root, read_split(args.split), args.part)
    labels = np.array(images.labels)
    chunks: list[list[np.ndarray]] = [[] for _ in models]
    for start in range(0, len(images.samples), args.batch):
        batch = images.samples[start : start + args.batch]
        decoded: dict[int, list] = {}  # one decode per input size, shared by the files
        for model, out in zip(models, chunks, strict=True):
            size = model.input_size
            if size not in decoded:
                # As predict decodes: at a reduced JPEG scale where that still covers the input.
                decoded[size] = [open_rgb(images.file(p), min_side=size) for p, _ in batch]
            out.append(model.probabilities(decoded[size]))
    probs = [np.concatenate(c) for c in chunks]
    print(f"{len(labels)} images ({args.part} list of {args.split}, from {images.root})")
    print(
        f"{'file':<28} {'MB':>6} {'accuracy %':>10} {'NLL':>6} {'max |p - p0|':>12} {'changed':>7}"
    )
    for path, p in zip(args.models, probs, strict=True):
        accuracy = 100 * float((p.argmax(1) == labels).mean())
        nll = metrics.nll(torch.from_numpy(p), torch.from_numpy(labels))
        difference = float(np.abs(p - probs[0]).max())
        changed = int((p.argmax(1) != probs[0].argmax(1)).sum())
        size = path.stat().st_size / 1e6
        figures = f"{size:6.2f} {accuracy:10.2f} {nll:6.4f} {difference:12.1e} {changed:7d}"
        print(f"{path.name:<28} {figures}")


if __name__ == "__main__":
    main()
