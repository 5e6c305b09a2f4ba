"""The bundled teacher (``--teacher default``) answered by its file through onnxruntime
against the same five networks rebuilt in PyTorch, which is what a student on a GPU gets.

Each side answers the same random batches (students' crops, resized to the file's 352 px as
training does); rounds alternate the order. On a machine with CUDA, the rebuilt networks are
timed there too. About a minute on 2 cores::

    python benchmarks/teacher_speed.py --size 224 --batch 32 --rounds 2
"""

from __future__ import annotations

import argparse
import time

import torch
from rounds import alternating_rounds

from binsort.models import teacher as teaching

TRASHNET = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


def speed(teacher: teaching.Teacher, batch: torch.Tensor, device: str) -> float:
    """Images per second of one forward pass of every member."""
    batch = batch.to(device)
    teacher.probabilities(batch)  # warm-up: graph optimisation, cuDNN's choices
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    teacher.probabilities(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="the student's crop size")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    batch = torch.rand(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    )
    file = teaching.load_teacher("default", TRASHNET).to("cpu")
    rebuilt = teaching.rebuilt_teacher(file)
    if rebuilt is None:
        raise SystemExit("the bundled model's networks could not be rebuilt")
    gap = (rebuilt.probabilities(batch[:2]) - file.probabilities(batch[:2])).abs().max()
    print(f"largest difference between the two answers: {float(gap):.1e}")
    measures = {
        "file (onnxruntime, CPU)": lambda: speed(file, batch, "cpu"),
        "rebuilt (PyTorch, CPU)": lambda: speed(rebuilt, batch, "cpu"),
    }
    if torch.cuda.is_available():
        on_gpu = teaching.rebuilt_teacher(file).to("cuda")
        measures["rebuilt (PyTorch, CUDA)"] = lambda: speed(on_gpu, batch, "cuda")
    means = alternating_rounds(measures, args.rounds)
    base = means["file (onnxruntime, CPU)"]
    for label, value in means.items():
        print(f"{label}: {value:.1f} images/s, {value / base:.2f}x the file's")


if __name__ == "__main__":
    main()
