"""Does ``binsort export --half`` cost speed? Two ONNX files of one model, same random batch.

Runs each file on the same batch per graph input, alternating in rounds, and prints images/s
and the ratio of the second file to the first. A float16-weight file casts its weights to
float32 inside the graph; ONNX Runtime folds those casts at load, so the ratio should be ~1.
The same holds for an ``export --int8`` file (its DequantizeLinear nodes fold the same way).

    python benchmarks/half_speed.py model-fp32.onnx model-half.onnx --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rounds import alternating_rounds

from binsort.onnx_model import OnnxModel, input_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3, help="batches per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0, help="0: onnxruntime's default")
    args = parser.parse_args()

    models = {p.name: OnnxModel(p, threads=args.threads) for p in (args.first, args.second)}
    rng = np.random.default_rng(0)
    sizes = models[args.first.name].input_sizes
    feeds = {input_name(s): rng.random((args.batch, 3, s, s), dtype=np.float32) for s in sizes}

    def speed(model: OnnxModel):
        def measure() -> float:
            start = time.perf_counter()
            for _ in range(args.batches):
                model.run(feeds)
            return args.batch * args.batches / (time.perf_counter() - start)

        measure()  # warm-up: first runs allocate
        return measure

    means = alternating_rounds({name: speed(m) for name, m in models.items()}, args.rounds)
    first, second = means.values()
    for name, value in means.items():
        print(f"{name}: {value:.1f} images/s")
    print(f"ratio {args.second.name} / {args.first.name}: {second / first:.2f}")


if __name__ == "__main__":
    main()
