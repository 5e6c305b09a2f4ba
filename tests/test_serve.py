"""``binsort serve``'s API through the framework's test client: answers equal predict's, and
every bad upload is a 4xx with one clear message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from binsort.cli import app as cli
from binsort.serve import create_app, load_served
from conftest import make_image_folder, png_declaring

runner = CliRunner()


@pytest.fixture(scope="module")
def model(trained_runs) -> Path:
    return trained_runs[0].best_checkpoint


@pytest.fixture(scope="module")
def client(model: Path) -> TestClient:
    return TestClient(create_app(load_served(model, "psu"), max_bytes=200_000))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_image_folder(tmp_path_factory.mktemp("serve"), per_class=1, tag="_up")
    return root / "metal" / "metal_up_000.jpg"


def post(client: TestClient, name: str, data: bytes, kind: str = "image/jpeg"):
    return client.post("/predict", files={"file": (name, data, kind)})


def test_a_photo_gets_predicts_answer(client: TestClient, model: Path, photo: Path) -> None:
    response = post(client, photo.name, photo.read_bytes())
    assert response.status_code == 200, response.text
    answer = response.json()
    result = runner.invoke(cli, ["predict", str(photo), "-m", str(model), "-f", "json"])
    (expected,) = json.loads(result.stdout)
    # The server's disk stays private: the model file by name (its SHA-256 identifies it).
    assert answer == {**expected, "path": photo.name, "model_file": model.name}
    assert str(model.parent) not in response.text


def test_page_health_and_model(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'capture="environment"' in page.text
    assert "http" not in page.text.split("<body>")[0]  # no CDN, no web font
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["classes"] == ["glass", "metal", "paper"]
    assert info["bins"]["paper"]["bin"] == "Mixed Paper" and len(info["sha256"]) == 64
    assert info["file"].endswith(".ckpt")
    assert set(info["colours"]) == {"Glass", "Metal", "Mixed Paper"}


@pytest.mark.parametrize(
    "name,data,kind,status,message",
    [
        ("notes.txt", b"just text", "text/plain", 415, "text/plain is not an image"),
        ("empty.jpg", b"", "image/jpeg", 422, "the upload is empty"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg", 422, "not a readable"),
        ("big.jpg", b"\xff" * 300_000, "image/jpeg", 413, "over 200000 bytes"),
        ("bomb.png", png_declaring(30_000, 30_000), "image/png", 413, "too large"),
    ],
)
def test_bad_uploads_are_clear_4xx(client, name, data, kind, status, message) -> None:
    response = post(client, name, data, kind)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"] and "Traceback" not in response.text


def test_a_form_without_a_file_is_422(client: TestClient) -> None:
    response = client.post("/predict", data={"photo": "x"})
    assert response.status_code == 422 and "field 'file'" in response.json()["error"]


def test_a_png_upload_is_read_like_predict_reads_it(client: TestClient, photo: Path) -> None:
    buffer = io.BytesIO()
    Image.open(photo).save(buffer, "PNG")
    response = post(client, "item.png", buffer.getvalue(), "image/png")
    assert response.status_code == 200 and response.json()["bin"]


def test_serve_refuses_a_bad_model_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["serve", "-m", str(tmp_path / "nope.ckpt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_blank_frame_is_not_recognised(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 255, 255)).save(buffer, "JPEG")
    response = post(client, "blank.jpg", buffer.getvalue())
    assert response.status_code == 200, response.text
    assert "blank" in response.json()["not_recognised"] and response.json()["bin"] is None
