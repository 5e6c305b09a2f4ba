"""Requests per second and latency of ``binsort serve`` for one photo, on loopback.

Starts ``binsort serve`` (the bundled model unless ``--model``) on a free port, then for each
number of concurrent clients (1, 4, 16) posts the same photo ``--requests`` times in all (or
until ``--seconds`` pass) and prints requests/s, p50 and p95 latency. The ratio of the
requests/s at 4 and 16 clients to the one at 1 says how much the server gains from
concurrency on this machine (its inference threads are bounded).

``--model`` (repeatable) starts one server per model file, one after the other, and prints
each one's ratio to the first: the old and the new default model compared in one run.
``--baseline SRC`` also runs, first and in the same way, the binsort whose source tree is SRC
(for example an older checkout's ``src``), and prints each figure's ratio to it: what a change
to the server costs in throughput, measured in one run.

    python benchmarks/serve_load.py examples/held-out/glass12.jpg --requests 40
    python benchmarks/serve_load.py examples/held-out/glass12.jpg \
        --model src/binsort/assets/default-model.onnx --model new.onnx
    git worktree add /tmp/before HEAD~1
    python benchmarks/serve_load.py examples/held-out/glass12.jpg --baseline /tmp/before/src
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from options import add_model_option


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(photo: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{photo.name}"'
        "\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


def post(url: str, body: bytes, boundary: str) -> float:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - start


def timed(base: str, body: bytes, boundary: str, count: int, deadline: float) -> list[float]:
    """One client: up to ``count`` requests, one after the other, until ``deadline``."""
    times = []
    for _ in range(count):
        if time.perf_counter() > deadline:
            break
        times.append(post(base + "predict", body, boundary))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    add_model_option(parser, "a model file for the server (repeatable: one server each)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=40, help="per client count, at most")
    parser.add_argument("--seconds", type=float, default=60, help="per client count, at most")
    parser.add_argument("--baseline", default=None, help="another binsort's source tree")
    args = parser.parse_args()

    models = args.models or [None]
    if args.baseline is not None:
        runs = [("baseline", args.baseline, models[0]), ("this", None, models[0])]
    else:
        runs = [(Path(m).stem if m else "default", None, m) for m in models]
    results = {}
    print(f"{'server':>14} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7}")
    for label, source, model in runs:
        for clients, row in measure(args, source, model):
            results[label, clients] = row
            print(f"{label:>14} {clients:>7} {row[0]:>8} {row[1]:7.2f} {row[2]:7.0f} {row[3]:7.0f}")
    first = runs[0][0]
    for label, _, _ in runs[1:]:
        print(
            f"{label} / {first}: "
            + ", ".join(
                f"{c} clients {results[label, c][1] / results[first, c][1]:.2f}x req/s, "
                f"p95 {results[label, c][3] / results[first, c][3]:.2f}x"
                for c in args.clients
            )
        )


def measure(args, source: str | None, model: str | None):
    """(clients, (requests, req/s, p50 ms, p95 ms)) for each client count, against a server
    of ``model`` (None: the bundled one) started from binsort's source tree ``source`` (None:
    the installed binsort)."""
    port = free_port()
    command = [sys.executable, "-m", "binsort", "serve", "--port", str(port)]
    if model:
        command += ["--model", model]
    env = dict(os.environ, PYTHONPATH=source) if source else None
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        body, boundary = multipart(args.photo)
        post(base + "predict", body, boundary)  # warm-up: the first call builds the session
        for clients in args.clients:
            latencies: list[float] = []
            deadline = time.perf_counter() + args.seconds
            start = time.perf_counter()

            share = max(1, args.requests // clients)
            with ThreadPoolExecutor(clients) as pool:
                for times in pool.map(
                    lambda n, d=deadline: timed(base, body, boundary, n, d), [share] * clients
                ):
                    latencies += times
            wall = time.perf_counter() - start
            p50 = statistics.median(latencies) * 1000
            p95 = statistics.quantiles(latencies, n=20)[-1] * 1000 if len(latencies) > 1 else p50
            yield clients, (len(latencies), len(latencies) / wall, p50, p95)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
