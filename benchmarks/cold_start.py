"""Cold start: how long a fresh process takes to answer, against importing torch.

Each command runs ``--repeat`` times in a new process; the median wall time is printed, and
each command's ratio to ``python -c "import torch, torchvision"`` measured in the same run.
``binsort predict`` with the bundled ONNX model should not pay for torch at all.

    python benchmarks/cold_start.py examples/trashnet-sample/glass/glass_001.jpg \
        --model runs/x/version_0/checkpoints/last.ckpt --model other.onnx
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from options import add_model_option

from binsort.onnx_model import ONNX_TTA_MODES


def wall(command: list[str], repeat: int) -> float:
    """Median seconds of ``repeat`` runs (the first run warms the OS file cache, so it is
    run once more beforehand and not counted)."""
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", help="a photo to classify")
    add_model_option(
        parser, "also time predict with this model (.onnx, or a checkpoint, which needs torch)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--tta",
        nargs="+",
        default=[],
        choices=ONNX_TTA_MODES,
        help="also time the default model's predict with each of these --tta modes",
    )
    args = parser.parse_args()

    binsort = str(Path(sys.executable).parent / "binsort")
    commands = {
        'python -c "import torch, torchvision"': [
            sys.executable,
            "-c",
            "import torch, torchvision",
        ],
        "binsort --help": [binsort, "--help"],
        "binsort predict PHOTO (default ONNX model)": [binsort, "predict", args.photo],
    }
    for mode in args.tta:
        commands[f"binsort predict PHOTO --tta {mode}"] = [
            binsort,
            "predict",
            args.photo,
            "--tta",
            mode,
        ]
    for model in args.models:
        name = f"binsort predict PHOTO --model {Path(model).name}"
        commands[name] = [binsort, "predict", args.photo, "--model", model]
    times = {name: wall(cmd, args.repeat) for name, cmd in commands.items()}
    base = times['python -c "import torch, torchvision"']
    print(f"median of {args.repeat} cold runs each")
    print(f"{'command':<56} {'seconds':>8} {'vs import torch':>16}")
    for name, seconds in times.items():
        print(f"{name:<56} {seconds:8.2f} {seconds / base:15.2f}x")


if __name__ == "__main__":
    main()
