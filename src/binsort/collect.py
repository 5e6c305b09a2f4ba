"""Collecting labelled photos: what ``binsort serve --collect DIR`` keeps, and its record.

A photo the page classified is held aside (``hold``) until its user confirms or corrects the
answer (``label``); only then is it kept, as ``DIR/<label>/<name>.jpg``, so ``DIR`` is an image
folder that ``train``, ``evaluate`` and ``resize`` read as they are. Held photos live in a
temporary folder of the server's and are never kept without an answer.

What is kept is the photo upright (EXIF orientation applied) and without its EXIF block (phone
photos carry GPS positions), re-encoded as a JPEG with the quantisation tables it came with
(the quality it came in; other formats at quality 95). Its name is the start of the SHA-256 of
the uploaded bytes, so the same photo sent twice is kept once.

The record is an SQLite database inside ``DIR`` (``.binsort-collect.sqlite3``, hidden, so no
command takes it for an image): for every kept photo its hash, file, when it came, the model
that answered (its SHA-256), the answer and its probabilities, the label and when it was
given, and every relabelling (table ``history``). Each change is one transaction, ordered with
the file's move so that a crash at any point leaves a state that ``Collection`` (on opening)
completes: a new file is written under a hidden temporary name, the row committed, then the
file renamed into place; a deletion moves the file into ``.trash`` before the row goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from binsort.config import MAX_MEGAPIXELS
from binsort.data.images import check_shape, to_rgb
from binsort.errors import BinsortError

DATABASE = ".binsort-collect.sqlite3"
TRASH = ".trash"  # a deleted photo waits here until its row is gone
HELD = 256  # photos awaiting an answer, at most; the oldest is dropped first
NAME_LENGTH = 16  # hex digits of the SHA-256 in a kept photo's name

SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    sha256 TEXT PRIMARY KEY,     -- of the uploaded bytes
    file TEXT NOT NULL,          -- relative to the folder: <label>/<name>.jpg
    received REAL NOT NULL,      -- when the photo came (Unix time)
    model_sha256 TEXT,           -- the model file that answered
    answer TEXT,                 -- its most likely class
    probabilities TEXT,          -- JSON: class -> probability
    label TEXT NOT NULL,         -- the label given
    labelled REAL NOT NULL       -- when it was given (the last time)
);
CREATE TABLE IF NOT EXISTS history (
    sha256 TEXT NOT NULL,
    label TEXT,                  -- NULL: deleted
    previous TEXT,               -- NULL: the first label
    at REAL NOT NULL
);
"""


@dataclass
class Held:
    """A classified photo awaiting its answer."""

    sha256: str
    path: Path  # the prepared JPEG, in the server's temporary folder
    received: float
    answer: str | None
    probabilities: dict[str, float]


class Collection:
    """The collected photos of one folder, safe to use from the server's threads."""

    def __init__(
        self,
        root: str | Path,
        classes: list[str],
        model_sha256: str | None,
        max_bytes: int | None = None,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise BinsortError(f"--collect {self.root}: not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.model_sha256 = model_sha256
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one change at a time: file moves follow the rows
        self._held: OrderedDict[str, Held] = OrderedDict()  # photo_id -> Held
        self._workdir = Path(tempfile.mkdtemp(prefix="binsort-held-"))
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self.recover()
        # The collection's size, measured once here and kept up to date by each change
        # (under the lock), so the cap is checked without reading every kept file again.
        self._stored = self.stored_bytes()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: sqlite3 connections are not shared between threads.
        db = sqlite3.connect(self.root / DATABASE, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)

    # Holding a photo until its user answers.

    def hold(
        self,
        photo: Path,
        answer: str | None,
        probabilities: dict[str, float],
        max_megapixels: float = MAX_MEGAPIXELS,
    ) -> str:
        """Prepare ``photo`` (upright, no EXIF) and hold it; returns its ``photo_id``."""
        data = photo.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        photo_id = secrets.token_hex(12)
        prepared = self._workdir / f"{photo_id}.jpg"
        prepared.write_bytes(clean_jpeg(data, max_megapixels))
        with self._lock:
            self._held[photo_id] = Held(sha, prepared, time.time(), answer, probabilities)
            while len(self._held) > HELD:
                _, dropped = self._held.popitem(last=False)
                dropped.path.unlink(missing_ok=True)
        return photo_id

    # Labelling, relabelling and deleting.

    def label(self, photo_id: str, label: str) -> dict[str, Any]:
        """Keep the held photo ``photo_id`` as ``label``, or move a kept one (``photo_id`` is
        then its SHA-256, or the id it was held under) to ``label``. Returns its record."""
        if label not in self.classes:
            raise CollectError(422, f"'{label}' is not a class of this model: {self.classes}")
        with self._lock:
            held = self._held.get(photo_id)
            sha = held.sha256 if held is not None else photo_id
            with self._connect() as db:
                row = db.execute("SELECT * FROM photos WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                return self._relabel(row, label)
            if held is None:
                raise CollectError(404, f"no photo '{photo_id}': it expired or was never sent")
            return self._keep(held, label)

    def _keep(self, held: Held, label: str) -> dict[str, Any]:
        size = held.path.stat().st_size
        if self.max_bytes is not None and self._stored + size > self.max_bytes:
            raise CollectError(
                507, f"the collection is full ({self.max_bytes / 1e9:g} GB, --collect-max-gb)"
            )
        relative = f"{label}/{held.sha256[:NAME_LENGTH]}.jpg"
        final = self.root / relative
        final.parent.mkdir(exist_ok=True)
        partial = _partial(final)
        try:
            shutil.copyfile(held.path, partial)
            _sync(partial)
            now = time.time()
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        held.sha256,
                        relative,
                        held.received,
                        self.model_sha256,
                        held.answer,
                        json.dumps(held.probabilities),
                        label,
                        now,
                    ),
                )
                db.execute("INSERT INTO history VALUES (?, ?, NULL, ?)", (held.sha256, label, now))
                db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            # A full disk or a failing database: nothing kept, nothing half-written.
            partial.unlink(missing_ok=True)
            raise CollectError(
                507, f"could not keep the photo ({exc}); nothing was stored"
            ) from None
        self._publish(partial, final)
        self._stored += size
        return self.record(held.sha256)

    def _relabel(self, row: sqlite3.Row, label: str) -> dict[str, Any]:
        if row["label"] == label:
            return self.record(row["sha256"])
        relative = f"{label}/{Path(row['file']).name}"
        (self.root / label).mkdir(exist_ok=True)
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE photos SET file = ?, label = ?, labelled = ? WHERE sha256 = ?",
                (relative, label, now, row["sha256"]),
            )
            db.execute(
                "INSERT INTO history VALUES (?, ?, ?, ?)", (row["sha256"], label, row["label"], now)
            )
            db.execute("COMMIT")
        self._publish(self.root / row["file"], self.root / relative)
        return self.record(row["sha256"])

    def delete(self, sha: str) -> None:
        """Remove a kept photo: its file, then its row (its history stays)."""
        with self._lock:
            with self._connect() as db:
                row = db.execute("SELECT * FROM photos WHERE sha256 = ?", (sha,)).fetchone()
            if row is None:
                raise CollectError(404, f"no collected photo '{sha}'")
            trash = self.root / TRASH
            trash.mkdir(exist_ok=True)
            kept = self.root / row["file"]
            size = kept.stat().st_size if kept.exists() else 0
            if kept.exists():
                os.replace(kept, trash / kept.name)
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM photos WHERE sha256 = ?", (sha,))
                db.execute(
                    "INSERT INTO history VALUES (?, NULL, ?, ?)", (sha, row["label"], time.time())
                )
                db.execute("COMMIT")
            (trash / kept.name).unlink(missing_ok=True)
            self._stored -= size

    def _publish(self, source: Path, final: Path) -> None:
        """The last step of a change: the file to where its committed row says it is."""
        os.replace(source, final)

    # Reading.

    def record(self, sha: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM photos WHERE sha256 = ?", (sha,)).fetchone()
        return _as_record(row)

    def records(self, wrong_only: bool = False) -> list[dict[str, Any]]:
        """Kept photos, newest first; ``wrong_only``: those the model got wrong."""
        query = "SELECT * FROM photos"
        if wrong_only:
            query += " WHERE answer IS NULL OR answer != label"
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY received DESC").fetchall()
        return [_as_record(row) for row in rows]

    def history(self, sha: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT label, previous, at FROM history WHERE sha256 = ? ORDER BY rowid", (sha,)
            ).fetchall()
        return [dict(row) for row in rows]

    def file_of(self, sha: str) -> Path:
        record = self.record(sha) if sha else None
        if record is None:
            raise CollectError(404, f"no collected photo '{sha}'")
        return self.root / record["file"]

    def stored_bytes(self) -> int:
        """The kept photos' bytes on disk, counted afresh."""
        with self._connect() as db:
            files = [row[0] for row in db.execute("SELECT file FROM photos")]
        return sum((self.root / f).stat().st_size for f in files if (self.root / f).exists())

    # Completing what a crash interrupted.

    def recover(self) -> None:
        """Bring the folder in line with the record after a crash: a committed row whose file
        is still under its temporary name, in another class folder or in the trash gets its
        file moved into place; a temporary file without a row is removed (it was never
        kept), and so is a trashed file whose row is gone."""
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT sha256, file FROM photos").fetchall()
        names = {Path(row["file"]).name: self.root / row["file"] for row in rows}
        for name, final in names.items():
            if final.exists():
                continue
            for candidate in self._candidates(name, final):
                if candidate.exists():
                    final.parent.mkdir(exist_ok=True)
                    os.replace(candidate, final)
                    break
        for folder in [self.root / c for c in self.classes] + [self.root / TRASH]:
            for leftover in folder.glob(".*.partial") if folder.is_dir() else []:
                leftover.unlink()
            if folder.name == TRASH and folder.is_dir():
                for trashed in folder.iterdir():
                    if trashed.name not in names:
                        trashed.unlink()

    def _candidates(self, name: str, final: Path) -> list[Path]:
        others = [p / name for p in self.root.iterdir() if p.is_dir() and p != final.parent]
        return [_partial(final), *others, self.root / TRASH / name]


class CollectError(BinsortError):
    """A refused feedback request, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def clean_jpeg(data: bytes, max_megapixels: float = MAX_MEGAPIXELS) -> bytes:
    """The photo in ``data`` as a JPEG: upright, without EXIF (GPS), colour profile kept; a
    JPEG keeps its own quantisation tables and chroma subsampling, so its quality. A JPEG too
    large to decode whole within ``max_megapixels`` is kept at the largest reduced scale
    (1/2, 1/4, 1/8) that fits; any other format was decoded whole to classify it."""
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(data)) as im:
        check_shape(im.size)
        budget = max_megapixels * 1_000_000
        factor = 1
        while im.width * im.height / factor**2 > budget and factor < 8:
            factor *= 2
        if factor > 1 and im.format == "JPEG":
            im.draft("RGB", (im.width // factor, im.height // factor))
        options: dict[str, Any] = {"quality": 95}
        if im.format == "JPEG" and getattr(im, "quantization", None):
            options = {
                "qtables": im.quantization,
                "subsampling": JpegImagePlugin.get_sampling(im),
            }
        if im.info.get("icc_profile"):
            options["icc_profile"] = im.info["icc_profile"]
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        upright = to_rgb(im)
    out = io.BytesIO()
    upright.save(out, "JPEG", **options)  # no exif= : the EXIF block is left behind
    return out.getvalue()


def _partial(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def _sync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _as_record(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    record = dict(row)
    record["probabilities"] = json.loads(record["probabilities"] or "{}")
    return record
