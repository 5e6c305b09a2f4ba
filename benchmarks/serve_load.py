"""Requests per second and latency of ``binsort serve`` for one photo, on loopback.

Starts ``binsort serve`` (the bundled model unless ``--model``) on a free port, then for each
number of concurrent clients (1, 4, 16) posts the same photo ``--requests`` times in all (or
until ``--seconds`` pass) and prints requests/s, p50 and p95 latency. The ratio of the
requests/s at 4 and 16 clients to the one at 1 says how much the server gains from
concurrency on this machine (its inference threads are bounded).

    python benchmarks/serve_load.py examples/held-out/glass12.jpg --requests 40
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


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
    parser.add_argument("--model", default=None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=40, help="per client count, at most")
    parser.add_argument("--seconds", type=float, default=60, help="per client count, at most")
    args = parser.parse_args()

    port = free_port()
    command = [str(Path(sys.executable).parent / "binsort"), "serve", "--port", str(port)]
    if args.model:
        command += ["--model", args.model]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
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
        print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7}")
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
            rate = len(latencies) / wall
            print(f"{clients:>7} {len(latencies):>8} {rate:7.2f} {p50:7.0f} {p95:7.0f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
