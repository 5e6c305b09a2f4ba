"""``binsort serve --collect``: photos kept only when confirmed or corrected, upright and without
EXIF, once each, with an SQLite record that never disagrees with the folder."""

from __future__ import annotations

import io
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import ExifTags, Image

from binsort.collect import DATABASE, CollectError, Collection
from binsort.serve import create_app, load_served, prepare
from binsort.serve_collect import RateLimit
from conftest import COLOURS, smooth_noise

CLASSES = ["glass", "metal", "paper"]


def phone_photo(seed: int = 0, orientation: int = 6, gps: bool = True) -> bytes:
    """A 48 x 36 JPEG as a phone writes it: turned by EXIF, with a GPS position."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS["metal"]) + smooth_noise(rng, (48, 36), 30), 0, 255)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        }
    out = io.BytesIO()
    Image.fromarray(pixels.astype("uint8")).save(out, "JPEG", quality=80, exif=exif)
    return out.getvalue()


@pytest.fixture
def served(trained_runs):
    return load_served(trained_runs[0].best_checkpoint, "psu")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "collected"


@pytest.fixture
def client(served, folder):
    collection = Collection(folder, served.model.classes, served.source["model_sha256"])
    # One event loop for every request, as under uvicorn: the upload slots belong to it.
    with TestClient(create_app(served, collection=collection)) as client:
        yield client
    collection.close()


def post(client: TestClient, data: bytes, name: str = "IMG_1.jpg") -> dict:
    response = client.post("/predict", files={"file": (name, data, "image/jpeg")})
    assert response.status_code == 200, response.text
    return response.json()


def rows(folder: Path, table: str = "photos") -> list[dict]:
    with sqlite3.connect(folder / DATABASE) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def kept_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*.jpg") if ".trash" not in p.parts
    )


def test_a_confirmed_photo_is_kept_upright_without_exif(client, folder, served) -> None:
    data = phone_photo()
    answer = post(client, data)
    assert answer["photo_id"] and answer["bin"]
    assert kept_files(folder) == []  # nothing kept before the user answers
    response = client.post("/feedback", json={"photo_id": answer["photo_id"], "label": "metal"})
    assert response.status_code == 200, response.text
    (name,) = kept_files(folder)
    assert name.startswith("metal/") and name.endswith(".jpg")
    with Image.open(folder / name) as kept, Image.open(io.BytesIO(data)) as sent:
        assert kept.size == (36, 48)  # orientation 6 applied: the photo stands upright
        assert not kept.getexif() and "exif" not in kept.info  # no GPS position left
        assert kept.quantization == sent.quantization  # the quality it came in
    (row,) = rows(folder)
    assert row["file"] == name and row["label"] == "metal"
    assert row["answer"] == answer["class"] and row["model_sha256"] == served.source["model_sha256"]
    assert set(response.json()["probabilities"]) == set(CLASSES)


def test_a_correction_moves_the_photo_and_keeps_its_history(client, folder) -> None:
    answer = post(client, phone_photo(1))
    for label in ("glass", "paper"):
        response = client.post("/feedback", json={"photo_id": answer["photo_id"], "label": label})
        assert response.status_code == 200, response.text
    (name,) = kept_files(folder)
    assert name.startswith("paper/")
    history = rows(folder, "history")
    assert [(h["label"], h["previous"]) for h in history] == [("glass", None), ("paper", "glass")]
    # The review page relabels by the photo's SHA-256.
    sha = response.json()["sha256"]
    assert client.post("/feedback", json={"photo_id": sha, "label": "metal"}).status_code == 200
    assert kept_files(folder)[0].startswith("metal/")


def test_bad_feedback_is_a_clear_json_error(client, folder) -> None:
    answer = post(client, phone_photo(2))
    unknown = client.post("/feedback", json={"photo_id": "nope", "label": "metal"})
    assert unknown.status_code == 404 and "no photo 'nope'" in unknown.json()["error"]
    bad = client.post("/feedback", json={"photo_id": answer["photo_id"], "label": "sofa"})
    assert bad.status_code == 422 and "'sofa' is not a class" in bad.json()["error"]
    broken = client.post("/feedback", json={"label": "metal"})
    assert broken.status_code == 422 and list(broken.json()) == ["error"]
    assert kept_files(folder) == [] and rows(folder) == []


def test_collecting_off_answers_404_and_no_photo_id(served) -> None:
    client = TestClient(create_app(served))
    response = client.post("/feedback", json={"photo_id": "x", "label": "metal"})
    assert response.status_code == 404 and "--collect" in response.json()["error"]
    assert client.get("/review").status_code == 404
    assert "photo_id" not in post(client, phone_photo())
    assert client.get("/model").json()["collecting"] is False


def test_the_same_photo_sent_twice_is_kept_once(client, folder) -> None:
    data = phone_photo(3)
    for _ in range(2):
        answer = post(client, data)
        client.post("/feedback", json={"photo_id": answer["photo_id"], "label": "glass"})
    assert len(kept_files(folder)) == 1 and len(rows(folder)) == 1


def test_eight_clients_labelling_at_once_lose_nothing(client, folder) -> None:
    def one(seed: int) -> int:
        answer = post(client, phone_photo(10 + seed), f"IMG_{seed}.jpg")
        label = CLASSES[seed % 3]
        return client.post(
            "/feedback", json={"photo_id": answer["photo_id"], "label": label}
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8
    assert len(kept_files(folder)) == 8 and len(rows(folder)) == 8
    assert {r["file"] for r in rows(folder)} == set(kept_files(folder))


def test_review_lists_filters_serves_and_deletes(client, folder) -> None:
    for seed, label in ((20, "metal"), (21, "glass")):
        answer = post(client, phone_photo(seed))
        client.post("/feedback", json={"photo_id": answer["photo_id"], "label": label})
    assert "Collected photos" in client.get("/review").text
    listed = client.get("/collected").json()
    assert listed["classes"] == CLASSES and len(listed["photos"]) == 2
    assert listed["photos"][0]["received"] >= listed["photos"][1]["received"]  # newest first
    wrong = client.get("/collected?wrong=true").json()["photos"]
    assert all(p["answer"] != p["label"] for p in wrong)
    sha = listed["photos"][0]["sha256"]
    photo = client.get(f"/collected/{sha}/photo")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert client.delete(f"/collected/{sha}").json() == {"deleted": sha}
    assert len(kept_files(folder)) == 1 and len(rows(folder)) == 1
    assert rows(folder, "history")[-1]["label"] is None  # the deletion is in the history
    assert client.delete(f"/collected/{sha}").status_code == 404


def test_writing_needs_the_token_off_this_computer(served, folder) -> None:
    server = prepare(
        served_model_path(served), "psu", "0.0.0.0", 8000, collect=folder, token="s3cret"
    )
    client = TestClient(server.app)
    answer = post(client, phone_photo(4))
    feedback = {"photo_id": answer["photo_id"], "label": "metal"}
    refused = client.post("/feedback", json=feedback)
    assert refused.status_code == 401 and list(refused.json()) == ["error"]
    wrong = client.post("/feedback", json=feedback, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and kept_files(folder) == []
    assert client.get("/collected").status_code == 401
    ok = client.post("/feedback", json=feedback, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and len(kept_files(folder)) == 1
    assert client.get("/collected?token=s3cret").status_code == 200
    assert "?token=s3cret" in server.link() and any("\u2588" in line for line in server.banner())
    server.close()


def served_model_path(served) -> str:
    return str(served.model.path)


def test_a_token_is_made_off_this_computer_and_not_needed_on_it(served, folder) -> None:
    model = served_model_path(served)
    away = prepare(model, "psu", "0.0.0.0", 8000, collect=folder)
    assert away.token and len(away.token) >= 16 and away.token in away.link()
    home = prepare(model, "psu", "127.0.0.1", 8000, collect=folder)
    assert home.token is None and "token" not in home.link()
    away.close(), home.close()


def test_labelling_is_rate_limited_per_client() -> None:
    limit = RateLimit(per_minute=3)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")


def test_a_full_collection_answers_507_and_stores_nothing(served, folder) -> None:
    collection = Collection(folder, CLASSES, "x", max_bytes=10)
    client = TestClient(create_app(served, collection=collection))
    answer = post(client, phone_photo(5))
    response = client.post("/feedback", json={"photo_id": answer["photo_id"], "label": "metal"})
    assert response.status_code == 507 and "--collect-max-gb" in response.json()["error"]
    assert kept_files(folder) == [] and rows(folder) == []
    collection.close()


class Crash(Exception):
    pass


def crash_before_publish(monkeypatch) -> None:
    """The process dies after the row is committed and before the file is in place."""

    def die(self, source, final):
        raise Crash

    monkeypatch.setattr(Collection, "_publish", die)


def consistent(folder: Path) -> None:
    """Every row's file is where the row says, and every kept file has its row."""
    assert {r["file"] for r in rows(folder)} == set(kept_files(folder))
    assert not list(folder.rglob(".*.partial"))


def test_a_crash_between_the_two_writes_is_completed_on_restart(folder, tmp_path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(phone_photo(6))
    collection = Collection(folder, CLASSES, "x")
    kept = collection.hold(photo, "metal", {"metal": 0.9})
    with pytest.MonkeyPatch.context() as patch:
        crash_before_publish(patch)
        with pytest.raises(Crash):
            collection.label(kept, "metal")
    assert kept_files(folder) == [] and len(rows(folder)) == 1  # they disagree, for now
    Collection(folder, CLASSES, "x")  # the server starts again
    consistent(folder)
    assert kept_files(folder)[0].startswith("metal/")
    # A relabelling and a deletion interrupted the same way are completed too.
    restarted = Collection(folder, CLASSES, "x")
    sha = rows(folder)[0]["sha256"]
    with pytest.MonkeyPatch.context() as patch:
        crash_before_publish(patch)
        with pytest.raises(Crash):
            restarted.label(sha, "glass")
    Collection(folder, CLASSES, "x")
    consistent(folder)
    assert kept_files(folder)[0].startswith("glass/")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Collection, "_connect", broken_connect(Collection._connect, after=1))
        with pytest.raises(Crash):
            restarted.delete(sha)  # the file is in the trash, the row not yet gone
    Collection(folder, CLASSES, "x")
    consistent(folder)
    assert len(rows(folder)) == 1  # the row survived, so the photo is back in place


def broken_connect(connect, after: int):
    """``Collection._connect`` that fails from its ``after``-th use on."""
    calls = []

    def wrapped(self):
        calls.append(1)
        if len(calls) > after:
            raise Crash
        return connect(self)

    return wrapped


def test_a_photo_written_but_never_committed_is_removed(folder, tmp_path) -> None:
    collection = Collection(folder, CLASSES, "x")
    (folder / "metal").mkdir()
    (folder / "metal" / ".abc.jpg.partial").write_bytes(b"half a photo")
    (folder / "metal" / "mine.jpg").write_bytes(b"the user's own file")
    Collection(folder, CLASSES, "x")
    assert not (folder / "metal" / ".abc.jpg.partial").exists()
    assert (folder / "metal" / "mine.jpg").read_bytes() == b"the user's own file"
    collection.close()


def test_a_label_that_is_not_a_class_is_refused_by_the_library(folder, tmp_path) -> None:
    collection = Collection(folder, CLASSES, "x")
    with pytest.raises(CollectError) as err:
        collection.label("x", "sofa")
    assert err.value.status == 422


def test_a_full_disk_keeps_nothing_half_written(monkeypatch, folder, tmp_path) -> None:
    import errno
    import shutil

    photo = tmp_path / "p.jpg"
    photo.write_bytes(phone_photo(7))
    collection = Collection(folder, CLASSES, "x")
    photo_id = collection.hold(photo, "metal", {"metal": 0.9})
    real_copy = shutil.copyfile

    def half_then_full(source, target):
        Path(target).write_bytes(Path(source).read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", half_then_full)
    with pytest.raises(CollectError) as err:
        collection.label(photo_id, "metal")
    assert err.value.status == 507 and "nothing was stored" in str(err.value)
    assert not list(folder.rglob("*.jpg*")) and rows(folder) == []
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    collection.label(photo_id, "metal")  # once there is room, the same answer keeps it
    consistent(folder)
    collection.close()


def test_a_photo_the_model_does_not_recognise_can_still_be_labelled(client, folder) -> None:
    """An item of the user's own bins may look like nothing the model knows: it can be kept."""
    out = io.BytesIO()
    Image.new("RGB", (48, 36), (250, 250, 250)).save(out, "JPEG")  # screened as blank
    answer = post(client, out.getvalue())
    assert answer["not_recognised"] and answer["bin"] is None and answer["photo_id"]
    response = client.post("/feedback", json={"photo_id": answer["photo_id"], "label": "paper"})
    assert response.status_code == 200, response.text
    (row,) = rows(folder)
    assert row["answer"] is None and row["label"] == "paper"
    assert client.get("/collected?wrong=true").json()["photos"][0]["label"] == "paper"


def test_a_huge_feedback_body_is_refused(client, folder) -> None:
    response = client.post(
        "/feedback",
        content=b'{"photo_id": "' + b"x" * 100_000 + b'", "label": "metal"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {"error": "the request is too large"}
