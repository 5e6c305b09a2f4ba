"""What a short fine-tune reaches on photos it never saw, recipe against recipe.

Validation on a couple of hundred photos cannot rank recipes: its 95 % interval is about
+-4 points, the best epoch is chosen on it, and the seed moves it by as much. This script
holds out photos of its own instead. It cuts ``--root`` in two by a salted hash of each
photo's ``class/file`` name (``--percent`` of them held out; symbolic links, the folder is
not touched), trains every recipe on the rest with ``binsort train`` for each seed, scores
each best checkpoint on the held-out photos with ``binsort evaluate`` and prints held-out
accuracy with its 95 % interval, the validation accuracy training reported, and each recipe
against the first (photos gained and lost, McNemar's p).

    python benchmarks/short_finetune.py --root data/trashnet --work build/short \
        --recipe "earlier=--lr 2e-3 --backbone-lr-scale 0.25 --warmup-epochs 1 --batch 16 \
--aug-scale 0.25 --rotation 10 --jitter 0.2 --grayscale 0.05" --recipe defaults= --seeds 42 7

Never choose on a test split: this folder is yours to look at as often as you like, and it
is not the test split of the bundled model's record either (the hash ignores it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

BINSORT = [sys.executable, "-m", "binsort"]
COMMON = ["--model", "tf_efficientnet_lite0", "--weights", "imagenet", "--input-size", "224"]


def held_out(name: str, salt: str, percent: int) -> bool:
    digest = hashlib.sha256(f"{salt}{name}".encode()).hexdigest()
    return int(digest, 16) % 100 < percent


def cut(root: Path, work: Path, salt: str, percent: int) -> tuple[Path, Path, int, int]:
    """``work/pool`` and ``work/held-out``: one class folder each, links to the photos."""
    pool, held = work / "pool", work / "held-out"
    counts = [0, 0]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for photo in sorted(p for p in folder.iterdir() if p.is_file()):
            out = held if held_out(f"{folder.name}/{photo.name}", salt, percent) else pool
            counts[out is held] += 1
            link = out / folder.name / photo.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(photo.resolve(), link)
    return pool, held, counts[0], counts[1]


def run(args: list[str]) -> None:
    done = subprocess.run(BINSORT + args, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"binsort {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")


def val_accuracy(run_dir: Path) -> float:
    """The best epoch's validation accuracy (by validation loss, as best.ckpt is kept)."""
    rows = [line.split(",") for line in (run_dir / "results.csv").read_text().splitlines()]
    head, body = rows[0], rows[1:]
    loss, acc = head.index("val_loss"), head.index("val_accuracy")
    return float(min(body, key=lambda r: float(r[loss]))[acc])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="one folder per class")
    parser.add_argument("--work", type=Path, required=True, help="links, runs and scores")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        help="NAME=OPTIONS for binsort train (repeatable; the first is the reference)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--split", type=float, default=0.1)
    parser.add_argument("--salt", default="binsort-holdout/")
    parser.add_argument("--percent", type=int, default=15)
    args = parser.parse_args()
    recipes = [r.partition("=")[::2] for r in args.recipe] or [("defaults", "")]

    pool, held, n_pool, n_held = cut(args.root, args.work, args.salt, args.percent)
    print(f"{n_pool} photos to train and validate on, {n_held} held out")
    header = f"{'recipe':<12} {'seed':>4} {'val acc':>8} {'held-out':>9} {'95 % interval':>14}"
    print(f"{header}  vs first")
    for seed in args.seeds:
        checkpoints = []
        for name, options in recipes:
            folder = args.work / "runs" / f"{name}-s{seed}"
            if not (folder / "version_0" / "checkpoints" / "best.ckpt").exists():
                run(
                    ["train", "--root", str(pool), "--out", str(args.work / "runs")]
                    + ["--name", f"{name}-s{seed}", "--seed", str(seed), *COMMON]
                    + ["--epochs", str(args.epochs), "--split", str(args.split)]
                    + shlex.split(options)
                )
            checkpoints.append(folder / "version_0" / "checkpoints" / "best.ckpt")
        scores = args.work / f"scores-s{seed}"
        run(
            [
                "evaluate",
                *map(str, checkpoints),
                "--root",
                str(held),
                "--out",
                str(scores),
                "--force",
            ]
        )
        models = json.loads((scores / "metrics.json").read_text())["models"]
        for (name, _), ckpt, model in zip(recipes, checkpoints, models, strict=True):
            right = round(model["accuracy"] * n_held)
            low, high = model["accuracy_interval"]  # evaluate's Wilson interval
            versus = model.get("against_first") or {}
            line = f"{name:<12} {seed:>4} {val_accuracy(ckpt.parents[1]):>8.2%} "
            line += f"{right / n_held:>9.2%} {low:>7.1%}-{high:.1%}"
            if versus:
                line += f"  +{versus['gains']} -{versus['losses']}, p = {versus['p_value']:.2f}"
            print(line)


if __name__ == "__main__":
    main()
