"""Compute-only training speed of a model at fp32/bf16, with and without channels-last.

Prints images/s for one forward+backward+AdamW step on random tensors, and each setting's
ratio to plain fp32 measured in the same run. Used to choose `--precision` and
`--channels-last` for a machine:

    python benchmarks/precision_speed.py --models mobilenet_v3_small resnet18 --size 128
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision


def images_per_second(
    arch: str, size: int, batch: int, bf16: bool, channels_last: bool, steps: int
) -> float:
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=6)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 6, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, kernel selection
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_small", "resnet18"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.size}px, batch {args.batch}"
    )
    print(f"{'model':<22}{'setting':<16}{'images/s':>10}{'vs fp32':>9}")
    for arch in args.models:
        base = None
        for bf16, cl in ((False, False), (False, True), (True, False), (True, True)):
            speed = images_per_second(arch, args.size, args.batch, bf16, cl, args.steps)
            base = base or speed
            setting = f"{'bf16' if bf16 else 'fp32'}{' + CL' if cl else ''}"
            print(f"{arch:<22}{setting:<16}{speed:>10.1f}{speed / base:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
