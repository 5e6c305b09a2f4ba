"""Validation accuracy against training wall time, from the history stored in checkpoints.

A run continued from another one's weights (``--weights``) is a later stage of the same
training: give the stages in order and their times add up. Prints, per epoch budget, the
cumulative training time and validation accuracy, and the time each threshold was first
reached.

    python benchmarks/time_to_accuracy.py runs/shuffle-128/version_0 runs/shuffle-ft/version_0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def history(run: Path) -> list[dict]:
    """The per-epoch rows (epoch_seconds, val_accuracy, ...) that binsort's History kept."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return next(v for k, v in ckpt["callbacks"].items() if "History" in k)["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, first stage first")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--every", type=int, default=1, help="print every N-th epoch")
    args = parser.parse_args()

    rows, seconds = [], 0.0
    for stage, run in enumerate(args.runs, 1):
        for row in history(run):
            seconds += row["epoch_seconds"]
            rows.append((stage, len(rows) + 1, seconds, row["val_accuracy"]))
    print(f"{'stage':>5} {'epochs':>6} {'minutes':>8} {'val acc':>8} {'best so far':>11}")
    best = 0.0
    for stage, epochs, secs, acc in rows:
        best = max(best, acc)
        if epochs % args.every == 0 or epochs == len(rows):
            print(f"{stage:>5} {epochs:>6} {secs / 60:8.1f} {acc:8.2%} {best:11.2%}")
    for threshold in args.thresholds:
        hit = next(((e, s) for _, e, s, a in rows if a >= threshold), None)
        when = f"epoch {hit[0]}, {hit[1] / 60:.1f} min" if hit else "not reached"
        print(f"first val accuracy >= {threshold:.0%}: {when}")


if __name__ == "__main__":
    main()
