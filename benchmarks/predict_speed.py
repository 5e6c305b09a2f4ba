"""Throughput of ``binsort predict`` on a folder: ONNX against PyTorch, decoding threads.

Classifies every photo under ``folder`` with ``binsort.predict.predict_photos`` (start-up
excluded: see cold_start.py for that), once per model, worker count and onnxruntime thread
count, and prints photos/s and each setting's ratio to the first one measured.

    python benchmarks/predict_speed.py data/trashnet160 \
        --model runs/x/version_0/checkpoints/best.ckpt --model other.onnx
    python benchmarks/predict_speed.py data/trashnet --model new.onnx --threads 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from options import add_model_option

from binsort.bins import load_bin_map
from binsort.onnx_model import ONNX_TTA_MODES, OnnxModel, is_onnx
from binsort.predict import find_photos, load_model, predict_photos


def photos_per_second(model, photos, workers: int, batch: int, tta: str | None = None) -> float:
    bin_map = load_bin_map("psu", classes=model.classes)
    start = time.perf_counter()
    rows = list(predict_photos(photos, model, bin_map, batch=batch, workers=workers, tta=tta))
    elapsed = time.perf_counter() - start
    assert all(r.error is None for r in rows), [r.error for r in rows if r.error][:3]
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    add_model_option(
        parser, "also this model (.onnx, or a checkpoint or ensemble file, run by PyTorch)"
    )
    parser.add_argument("--limit", type=int, default=600, help="photos to classify")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 4])
    parser.add_argument(
        "--tta",
        nargs="+",
        default=[None],
        choices=ONNX_TTA_MODES,  # the default model, an ONNX file, is always timed
        help="test-time augmentation modes to time (default: each model's own)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[0],
        help="onnxruntime's threads for ONNX files (0: one per core); PyTorch keeps its own",
    )
    args = parser.parse_args()

    photos = list(find_photos([args.folder]))[: args.limit]
    models = {}
    for path in [load_model(None).path, *args.models]:
        if not is_onnx(path):
            models[f"{Path(path).name} (PyTorch)"] = load_model(path)
            continue
        for threads in args.threads:
            label = f"{Path(path).name} (ONNX{f', {threads} threads' if threads else ''})"
            models[label] = OnnxModel(path, threads=threads)
    # One untimed pass: fills the OS file cache and warms both runtimes.
    for model in models.values():
        photos_per_second(model, photos[: args.batch * 2], workers=0, batch=args.batch)
    results = {}
    for name, model in models.items():
        for tta in args.tta:
            label = name if tta is None else f"{name} --tta {tta}"
            for workers in args.workers:
                results[(label, workers)] = photos_per_second(
                    model, photos, workers, args.batch, tta
                )
    base = next(iter(results.values()))
    print(f"{len(photos)} photos from {args.folder}, batch {args.batch}")
    print(f"{'model':<45} {'workers':>7} {'photos/s':>9} {'ratio':>7}")
    for (name, workers), speed in results.items():
        print(f"{name:<45} {workers:>7} {speed:9.1f} {speed / base:6.2f}x")


if __name__ == "__main__":
    main()
