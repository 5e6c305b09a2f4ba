"""``binsort serve``: a web page where anyone photographs an item and sees its bin, and a JSON API.

``create_app(model, bins)`` returns a FastAPI application that answers with the same library
call as ``binsort predict`` (``predict_photos``), so the bundled ONNX model works with no
options and no torch is imported for ONNX models. Routes:

- ``GET /``: one self-contained HTML page (no CDN, no web font): take a photo with the phone's
  camera or choose or drop a file; the bin, big and in the bin's colour, its probability, the
  class, the top 3 and the bin's note, or "not sure" when the model is unsure.
- ``POST /predict``: a multipart upload (field ``file``); the answer is what
  ``binsort predict --format json`` gives for the same photo.
- ``GET /healthz``, ``GET /model`` (which model and bin map are served, the classes).

Every bad upload is a 4xx JSON ``{"error": "..."}`` with one clear message: 413 too large
(bytes or pixels), 415 not an image, 422 empty or unreadable. Inference runs in worker threads,
at most ``concurrency`` at a time, off the event loop.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from binsort.bins import BinMap, load_bin_map
from binsort.data.images import IMAGE_EXTENSIONS, TOO_LARGE
from binsort.errors import BinsortError
from binsort.predict import (
    answer_source,
    as_record,
    describe_model,
    load_model,
    predict_photos,
)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a 200-megapixel phone JPEG is 30-60 MB
DEFAULT_CONCURRENCY = 2  # photos classified at once; more only queue for the same cores
# Bin colours, given to a map's bins in the order they first appear; each passes WCAG AA
# (4.5:1) with white text.
PALETTE = ("#1f5fa8", "#2e7d32", "#8a4b08", "#6a1b9a", "#444444", "#00695c", "#ad1457")


@dataclass
class Served:
    """What the app serves: the loaded model, its bin map, and how to describe them."""

    model: Any
    bin_map: BinMap
    description: str
    source: dict[str, Any]  # predict's answer_source: model, file, SHA-256, bin map

    def info(self) -> dict[str, Any]:
        bins = {}
        for cls in self.model.classes:
            bin_ = self.bin_map.bin_for(cls)
            bins[cls] = {"bin": bin_.name, "note": bin_.note}
        names = list(dict.fromkeys(b["bin"] for b in bins.values()))
        return {
            "model": self.description,
            "file": self.source["model_file"],
            "sha256": self.source["model_sha256"],
            "classes": list(self.model.classes),
            "bin_map": self.bin_map.title or self.bin_map.source,
            "bins": bins,
            "colours": {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)},
        }


def load_served(model: str | Path | None, bins: str | Path = "psu") -> Served:
    """The model (None: the bundled default) and bin map, checked against each other."""
    loaded = load_model(model)
    bin_map = load_bin_map(bins, classes=loaded.classes)
    description = describe_model(loaded, default=model is None)
    return Served(loaded, bin_map, description, answer_source(model, loaded, bin_map))


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def classify_bytes(served: Served, data: bytes, filename: str) -> dict[str, Any]:
    """``predict --format json``'s record for one uploaded photo (raises ``UploadError``)."""
    if not data:
        raise UploadError(422, "the upload is empty")
    # The same library call as predict, on the same bytes: the photo goes through a file so
    # that every format predict reads (HEIC included) is read here the same way.
    suffix = Path(filename).suffix.lower()
    suffix = suffix if suffix in IMAGE_EXTENSIONS else ".img"
    with tempfile.TemporaryDirectory(prefix="binsort-serve-") as folder:
        photo = Path(folder) / f"upload{suffix}"
        photo.write_bytes(data)
        (row,) = list(predict_photos([photo], served.model, served.bin_map, workers=0))
    record = {**as_record(row), **served.source, "path": filename}
    if row.error is not None:
        if TOO_LARGE in row.error:
            raise UploadError(413, f"{filename}: refused, {TOO_LARGE}")
        raise UploadError(422, f"{filename}: not a readable image")
    return record


def create_app(
    served: Served,
    max_bytes: int = MAX_UPLOAD_BYTES,
    concurrency: int = DEFAULT_CONCURRENCY,
):
    """The FastAPI application serving ``served``."""
    app = FastAPI(
        title="binsort",
        description="Which bin does this go in? Upload a photo of one item of waste.",
        version=_version(),
    )
    limiter = anyio.CapacityLimiter(concurrency)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        return served.info()

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes + 1024 * 1024:
            return error(413, f"the upload is over {max_bytes // (1024 * 1024)} MB")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception:
            return error(422, "expected a multipart form with the photo in the field 'file'")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return error(422, "expected a multipart form with the photo in the field 'file'")
        kind = (upload.content_type or "").split(";")[0].strip().lower()
        if kind and not (kind.startswith("image/") or kind == "application/octet-stream"):
            return error(415, f"{upload.filename}: {kind} is not an image")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            return error(413, f"the upload is over {max_bytes // (1024 * 1024)} MB")
        name = Path(upload.filename or "photo").name
        try:
            record = await anyio.to_thread.run_sync(
                partial(classify_bytes, served, data, name), limiter=limiter
            )
        except UploadError as exc:
            return error(exc.status, exc.message)
        except BinsortError as exc:
            return error(422, str(exc))
        return JSONResponse(record)

    return app


def _version() -> str:
    from binsort import __version__

    return __version__


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>binsort: which bin?</title>
<style>
  :root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
          color: #1a1a1a; background: #f6f6f4; }
  body { margin: 0 auto; max-width: 40rem; padding: 1rem; }
  h1 { font-size: 1.4rem; margin: 0.2rem 0 1rem; }
  label.pick { display: block; border: 3px dashed #777; border-radius: 1rem; padding: 2rem 1rem;
               text-align: center; font-size: 1.2rem; background: #fff; cursor: pointer; }
  label.pick:focus-within, label.pick.over { border-color: #1f5fa8; outline: 3px solid #1f5fa8; }
  input[type=file] { position: absolute; opacity: 0; width: 1px; height: 1px; }
  #preview { display: block; max-width: 100%; max-height: 40vh; margin: 1rem auto;
             border-radius: 0.5rem; }
  #bin { font-size: 2.2rem; font-weight: 700; color: #fff; border-radius: 1rem;
         padding: 1.2rem 1rem; text-align: center; margin: 1rem 0 0.5rem; }
  #bin.unsure { background: #5c5c5c; }
  .facts { font-size: 1.1rem; line-height: 1.5; }
  .note { background: #fff; border-left: 6px solid #1f5fa8; padding: 0.6rem 0.8rem; }
  .error { background: #fdecea; color: #8a1c12; padding: 0.8rem; border-radius: 0.5rem; }
  ol { padding-left: 1.4rem; }
  footer { margin-top: 2rem; color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>Which bin does it go in?</h1>
<label class="pick" id="drop">
  <strong>Take a photo</strong> of one item, or choose or drop a picture here
  <input id="photo" type="file" accept="image/*,.heic,.heif" capture="environment">
</label>
<img id="preview" alt="" hidden>
<div id="status" role="status" aria-live="polite"></div>
<section id="answer" hidden aria-live="polite">
  <div id="bin"></div>
  <p class="facts" id="summary"></p>
  <p class="note" id="note"></p>
  <p class="facts">Most likely classes:</p>
  <ol id="top"></ol>
</section>
<footer id="model"></footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let colours = {};
fetch("model").then((r) => r.json()).then((info) => {
  colours = info.colours;
  $("model").textContent = "Model: " + info.model + " \\u00b7 bins: " + info.bin_map;
});
const pct = (p) => Math.round(p * 100) + "%";
function show(record) {
  const bin = $("bin");
  if (record.not_recognised) {
    bin.className = "unsure";
    bin.style.background = "";
    bin.textContent = "Not recognised";
    $("summary").textContent = "This " + record.not_recognised + ".";
    $("note").hidden = true;
    $("top").replaceChildren();
    $("answer").hidden = false;
    return;
  }
  if (record.uncertain) {
    bin.className = "unsure";
    bin.style.background = "";
    bin.textContent = "Not sure: " + record.bin +
      (record.other_bin ? " or " + record.other_bin : "");
  } else {
    bin.className = "";
    bin.style.background = colours[record.bin] || "#1f5fa8";
    bin.textContent = record.bin;
  }
  $("summary").textContent = record.bin + ": " + pct(record.bin_probability) +
    " sure \\u00b7 looks like " + record["class"] + " (" + pct(record.probability) + ")";
  $("note").textContent = record.bin_note || "";
  $("note").hidden = !record.bin_note;
  const top = $("top");
  top.replaceChildren();
  for (const t of record.top) {
    const li = document.createElement("li");
    li.textContent = t["class"] + " " + pct(t.probability);
    top.appendChild(li);
  }
  $("answer").hidden = false;
}
async function send(file) {
  $("answer").hidden = true;
  $("status").className = "";
  $("status").textContent = "Looking at " + file.name + "\\u2026";
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.alt = "the photo: " + file.name;
  preview.hidden = false;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch("predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    $("status").textContent = "";
    show(body);
  } catch (err) {
    $("status").className = "error";
    $("status").textContent = "Could not sort this photo: " + err.message;
  }
}
$("photo").addEventListener("change", (e) => { if (e.target.files[0]) send(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
"""
