"""Hostile photos and uploads: files a phone or a stranger can send, each made here.

Through ``predict`` a folder of good photos with the hostile files beside them still gets every
good row (exit 3); through ``serve`` each is a 4xx JSON. Decoding stays within a stated memory
budget, measured in a subprocess (``ru_maxrss``).
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app as cli
from binsort.serve import create_app, load_served
from conftest import make_image_folder

runner = CliRunner()
# Decoding any file below, with binsort's default budget (50 megapixels of 4 bytes, 200 MB),
# may raise the process's peak memory by at most this much.
DECODE_MEMORY_MB = 300


def heic_declaring(width: int, height: int) -> bytes:
    """A small HEIC whose header (its 'ispe' box) claims ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "HEIF")
    data = bytearray(buffer.getvalue())
    for found in re.finditer(b"ispe", bytes(data)):
        at = found.start() + 8  # past the box type and its version/flags
        data[at : at + 8] = struct.pack(">II", width, height)
    return bytes(data)


# What each hostile file is refused for ("" when it is a good, if odd, photo).
REASONS = {
    "strip_tall.png": "not a photo's shape",
    "strip_wide.png": "not a photo's shape",
    "strip_10m.png": "not a photo's shape",
    "grey16.png": "",
    "grey16.tif": "",
    "canvas_rgba.png": "image too large",
    "huge_header.heic": "image too large",
    "bomb_header.heic": "image too large",
    "truncated.jpg": "not a readable image",
}


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    Image.new("L", (1, 2_000_000)).save(folder / "strip_tall.png")  # 8 KB
    Image.new("L", (2_000_000, 1)).save(folder / "strip_wide.png")
    Image.new("L", (1, 10_000_000)).save(folder / "strip_10m.png")  # Pillow: OverflowError
    ramp = np.arange(8000, dtype=np.uint16) * 4  # a smooth 16-bit gradient, as photos are
    Image.fromarray(np.add.outer(ramp, ramp)).save(folder / "grey16.png")  # 64 MP
    Image.fromarray(np.add.outer(ramp[:3000], ramp[:4000])).save(
        folder / "grey16.tif", compression="tiff_adobe_deflate"
    )
    Image.new("RGBA", (12_000, 12_000), (10, 200, 30, 128)).save(folder / "canvas_rgba.png")
    (folder / "huge_header.heic").write_bytes(heic_declaring(9_000, 9_000))
    (folder / "bomb_header.heic").write_bytes(heic_declaring(30_000, 20_000))
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 90, 30)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return {name: folder / name for name in REASONS}


def test_a_folder_run_reports_every_good_photo(trained_runs, hostile, tmp_path: Path) -> None:
    good = make_image_folder(tmp_path / "photos", per_class=2)
    for path in hostile.values():
        (good / path.name).symlink_to(path)
    model = trained_runs[0].best_checkpoint
    result = runner.invoke(cli, ["predict", str(good), "-m", str(model), "-f", "json"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    rows = {Path(row["path"]).name: row for row in json.loads(result.stdout)}
    assert len(rows) == 6 + len(hostile)
    for name, row in rows.items():
        reason = REASONS.get(name, "")
        if reason:
            assert reason in row["error"] and row["bin"] is None, (name, row)
        else:
            assert row["error"] is None and row["bin"], (name, row)


def test_decoding_any_of_them_stays_within_the_memory_budget(hostile) -> None:
    script = (
        "import json, resource, sys\n"
        "from binsort.data.images import open_rgb\n"
        "from binsort.errors import BinsortError\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "start, rises = peak(), {}\n"
        "for path in sys.argv[1:]:\n"
        "    before = peak()\n"
        "    try:\n"
        "        open_rgb(path, min_side=352)\n"
        "    except BinsortError:\n"
        "        pass\n"
        "    rises[path] = peak() - start\n"
        "print(json.dumps(rises))\n"
    )
    # Largest first: ru_maxrss only grows, so each figure is that file's own peak or less.
    order = sorted(hostile.values(), key=lambda p: -p.stat().st_size)
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, order)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    rises = json.loads(done.stdout)
    assert max(rises.values()) < DECODE_MEMORY_MB, rises


@pytest.fixture(scope="module")
def client(trained_runs) -> TestClient:
    served = load_served(trained_runs[0].best_checkpoint, "psu")
    return TestClient(create_app(served, max_bytes=4 * 1024 * 1024))


@pytest.mark.parametrize("name", sorted(REASONS))
def test_serve_answers_each_with_json(client: TestClient, hostile, name: str) -> None:
    path = hostile[name]
    response = client.post("/predict", files={"file": (name, path.read_bytes(), "image/png")})
    if not REASONS[name]:
        assert response.status_code == 200, response.text
        assert response.json()["bin"]
        return
    assert 400 <= response.status_code < 500, response.text
    assert REASONS[name] in response.json()["error"] or (
        response.status_code == 413 and "over" in response.json()["error"]
    )
    expected = 413 if REASONS[name] == "image too large" else 422
    assert response.status_code in (expected, 413)


def test_a_chunked_upload_is_counted_without_a_length(client: TestClient) -> None:

    def body():
        boundary = b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
        yield boundary
        for _ in range(100):  # 100 x 64 KB, past the 4 MB limit after 64 chunks
            yield b"\xff" * 65536
        yield b"\r\n--x--\r\n"

    response = client.post(
        "/predict",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "the upload is over 4 MB"}


def test_every_error_has_one_shape(client: TestClient) -> None:
    for response, status in (
        (client.get("/nowhere"), 404),
        (client.get("/predict"), 405),
        (client.post("/predict", data={"photo": "x"}), 422),
        (client.post("/predict", content=b"x" * 10, headers={"content-length": "9999999"}), 413),
    ):
        assert response.status_code == status
        assert list(response.json()) == ["error"], response.text


def test_the_api_docs_can_send_a_photo_and_no_path_leaks(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    info = client.get("/model").text
    assert "/" not in json.loads(info)["file"] and "/tmp" not in info


def test_serve_passes_its_limits_to_the_server(monkeypatch, trained_runs) -> None:
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    model = str(trained_runs[0].best_checkpoint)
    result = runner.invoke(
        cli,
        ["serve", "-m", model, "--limit-concurrency", "40", "--concurrency", "3"],
    )
    assert result.exit_code == 0, result.output
    assert seen["limit_concurrency"] == 40
    result = runner.invoke(cli, ["serve", "-m", model, "--concurrency", "0"])
    assert result.exit_code == 1 and "--concurrency must be at least 1" in result.output


@pytest.fixture(scope="module")
def server(trained_runs):
    """``binsort serve`` in its own process, so its memory can be read from /proc."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = str(trained_runs[0].best_checkpoint)
    process = subprocess.Popen(
        [sys.executable, "-m", "binsort", "serve", "-m", model, "--port", str(port)]
        + ["--max-upload-mb", "16"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.1)
    yield port, process
    process.terminate()
    process.wait(timeout=10)


def peak_mb(process) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def slow_upload(
    port: int, size: int, pieces: int, pause: float, chunked: bool = False
) -> tuple[str, int]:
    """POST ``size`` bytes to /predict in ``pieces`` with ``pause`` seconds between them.
    Stops sending once the server answers; returns the answer (status line and body) and how
    many of the body's ``pieces + 2`` parts (opening, pieces, closing) went out."""
    import select
    import socket
    import time

    head = b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
    tail = b"\r\n--x--\r\n"
    length = (
        b"Transfer-Encoding: chunked"
        if chunked
        else b"Content-Length: %d" % (len(head) + size + len(tail))
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n" + length + b"\r\n\r\n"
        )
        parts = [head, *(b"\xff" * (size // pieces) for _ in range(pieces)), tail]
        sent = 0
        try:
            for part in parts:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered: sending more would be wasted
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += 1
                time.sleep(pause)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection after answering
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                break
    return answer.decode(errors="replace"), sent


def test_a_chunked_upload_past_the_limit_is_refused_before_it_ends(server) -> None:
    port, _ = server
    # 40 MB in 40 pieces of 1 MB, 0.05 s apart; the limit is 16 MB.
    answer, sent = slow_upload(port, 40 << 20, 40, 0.05, chunked=True)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '{"error":"the upload is over 16 MB"}' in answer
    assert sent < 42  # answered before the last piece went out


def test_32_slow_uploads_at_once_stay_within_a_memory_budget(server) -> None:
    """Each waits for one of the two slots unread; the one being read goes to a temporary
    file. Read into memory as they arrive, 32 uploads of 6 MB would take 192 MB."""
    from concurrent.futures import ThreadPoolExecutor

    port, process = server
    slow_upload(port, 1 << 20, 1, 0)  # warm up: the first answer loads what it needs
    before = peak_mb(process)
    with ThreadPoolExecutor(32) as pool:
        answers = [a for a, _ in pool.map(lambda _: slow_upload(port, 6 << 20, 6, 0.02), range(32))]
    assert all(a.startswith("HTTP/1.1 422") for a in answers), {a[:60] for a in answers}
    assert peak_mb(process) - before < 60
