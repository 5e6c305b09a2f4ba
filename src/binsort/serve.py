"""``binsort serve``: a web page where anyone photographs an item and sees its bin, and a JSON API.

``create_app(served)`` returns a FastAPI application that answers with the same library call
as ``binsort predict`` (``predict_photos``), so the bundled ONNX model works with no options
and no torch is imported for ONNX models. Routes:

- ``GET /``: one self-contained HTML page (``assets/serve.html``; no CDN, no web font): take a
  photo with the phone's camera or choose or drop a file; the bin, big and in the bin's
  colour, its probability, the class, the top 3 and the bin's note, or "not sure".
- ``POST /predict``: a multipart upload (field ``file``); the answer is what
  ``binsort predict --format json`` gives for the same photo.
- ``GET /healthz``, ``GET /model`` (which model and bin map are served, the classes).

Anyone who can reach the page can send anything, so every upload is bounded before work:

- **A slot first.** At most ``concurrency`` uploads are read and classified at once; the slot
  is taken before the body is read, so waiting uploads cost nothing but their connection.
- **Bytes while they stream.** The body is counted as it arrives (chunked uploads too) and
  refused with a 413 the moment it passes ``max_bytes``; the photo goes to a temporary file,
  not memory. An upload that stalls for ``UPLOAD_IDLE_SECONDS`` gives its slot back (408).
- **Pixels from the header.** The photo is decoded within ``max_megapixels``
  (``binsort.data.images``), checked before any pixel is decoded.

Every error, whatever its status (404 and 405 included), is JSON ``{"error": "..."}`` with one
clear message; answers never carry a path of the server's disk.
"""

from __future__ import annotations

import io
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from binsort.bins import BinMap, load_bin_map
from binsort.collect import Collection
from binsort.config import (
    COLLECT_MAX_GB,
    MAX_MEGAPIXELS,
    PREDICT_TOP_K,
    SERVE_CONCURRENCY,
    SERVE_MAX_UPLOAD_MB,
)
from binsort.data.images import (
    IMAGE_EXTENSIONS,
    NOT_A_PHOTO_SHAPE,
    TOO_LARGE,
    check_max_megapixels,
)
from binsort.errors import BinsortError
from binsort.predict import (
    answer_source,
    as_record,
    describe_model,
    load_model,
    predict_photos,
)
from binsort.serve_collect import FEEDBACK_MAX_BYTES, add_collect_routes, needs_token

UPLOAD_IDLE_SECONDS = 30.0  # a connection that sends nothing this long loses its slot
UPLOAD_PATHS = frozenset({"/predict"})  # the routes that take a body
NO_FILE = "expected a multipart form with the photo in the field 'file'"
# Bin colours, given to a map's bins in the order they first appear; each passes WCAG AA
# (4.5:1) with white text.
PALETTE = ("#1f5fa8", "#2e7d32", "#8a4b08", "#6a1b9a", "#444444", "#00695c", "#ad1457")


@dataclass
class Served:
    """What the app serves: the loaded model, its bin map, and how to describe them."""

    model: Any
    bin_map: BinMap
    description: str
    source: dict[str, Any]  # predict's answer_source, with the model file's name only

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
    source = answer_source(model, loaded, bin_map)
    # Strangers see which file answers (its name and SHA-256), never where it lies on disk.
    source["model_file"] = Path(source["model_file"]).name if source["model_file"] else None
    source["bin_map"] = Path(bin_map.source).name
    return Served(loaded, bin_map, description, source)


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def classify_upload(
    served: Served,
    upload: Any,
    filename: str,
    max_megapixels: float = MAX_MEGAPIXELS,
    collection: Collection | None = None,
) -> dict[str, Any]:
    """``predict --format json``'s record for one uploaded photo, read from the file object
    ``upload`` (raises ``UploadError``). With a ``collection``, a readable photo is held for
    its user's answer, and the record carries its ``photo_id``."""
    # The same library call as predict, on the same bytes: the photo goes through a file so
    # that every format predict reads (HEIC included) is read here the same way.
    suffix = Path(filename).suffix.lower()
    suffix = suffix if suffix in IMAGE_EXTENSIONS else ".img"
    with tempfile.TemporaryDirectory(prefix="binsort-serve-") as folder:
        photo = Path(folder) / f"upload{suffix}"
        with photo.open("wb") as out:
            shutil.copyfileobj(upload, out, 1 << 20)
        if photo.stat().st_size == 0:
            raise UploadError(422, "the upload is empty")
        classes = served.model.classes
        rows = predict_photos(
            [photo],
            served.model,
            served.bin_map,
            workers=0,
            max_megapixels=max_megapixels,
            top_k=len(classes),  # every probability, for the collection's record
        )
        (row,) = list(rows)
        photo_id = None
        # A photo the model does not recognise is held too: it may be an item of the user's
        # own bins that the model has never seen, exactly what collecting is for.
        if collection is not None and row.error is None:
            photo_id = collection.hold(photo, row.label, dict(row.top), max_megapixels)
    if row.error is not None:
        reason = row.error
        if reason.startswith(f"refused, {TOO_LARGE}"):
            raise UploadError(413, f"{filename}: {reason}")
        if reason.startswith(f"refused, {NOT_A_PHOTO_SHAPE}"):
            raise UploadError(422, f"{filename}: {reason}")
        raise UploadError(422, f"{filename}: not a readable image")
    record = {**as_record(row), **served.source, "path": filename}
    record["top"] = record["top"][:PREDICT_TOP_K]
    return record if collection is None else {**record, "photo_id": photo_id}


class UploadSlots:
    """ASGI middleware for the upload routes: a declared size over ``max_bytes`` is refused
    before anything is read; otherwise the route runs only with one of ``concurrency``
    slots, taken before its body is read, and a body that stalls loses its slot (408). The
    route itself counts the bytes as they stream (FastAPI's ``max_body_size``)."""

    def __init__(self, app: ASGIApp, max_bytes: int, concurrency: int, idle_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.slots = anyio.Semaphore(concurrency)
        self.idle_seconds = idle_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (*UPLOAD_PATHS, "/feedback"):
            await self.app(scope, receive, send)
            return
        # A declared length over the limit: refused before reading, in the one error shape
        # (the route's own limit would answer in plain text).
        declared = dict(scope["headers"]).get(b"content-length", b"")
        upload = scope["path"] in UPLOAD_PATHS
        limit = self.max_bytes if upload else FEEDBACK_MAX_BYTES
        if declared.isdigit() and int(declared) > limit:
            message = too_large(self.max_bytes) if upload else "the request is too large"
            await JSONResponse({"error": message}, status_code=413)(scope, receive, send)
            return
        if not upload:
            await self.app(scope, receive, send)
            return

        async def receive_or_stall() -> Message:
            with anyio.move_on_after(self.idle_seconds) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise HTTPException(408, f"the upload stalled for {self.idle_seconds:g} s")
            return message

        async with self.slots:
            await self.app(scope, receive_or_stall, send)


def check_limits(
    max_bytes: int = SERVE_MAX_UPLOAD_MB * 1024 * 1024,
    concurrency: int = SERVE_CONCURRENCY,
    max_megapixels: float = MAX_MEGAPIXELS,
    **_: Any,
) -> None:
    """Refuse limits that admit nothing (``create_app``'s; ``prepare`` checks them before
    the model is loaded)."""
    if concurrency < 1:
        raise BinsortError(f"--concurrency must be at least 1, got {concurrency}")
    if max_bytes < 1:
        raise BinsortError("--max-upload-mb must be above 0")
    check_max_megapixels(max_megapixels)


def create_app(
    served: Served,
    max_bytes: int = SERVE_MAX_UPLOAD_MB * 1024 * 1024,
    concurrency: int = SERVE_CONCURRENCY,
    max_megapixels: float = MAX_MEGAPIXELS,
    idle_seconds: float = UPLOAD_IDLE_SECONDS,
    collection: Collection | None = None,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI application serving ``served``; with a ``collection``, the page asks
    whether each answer was right and keeps the photos it is told about
    (``binsort.serve_collect``; ``token``, when set, is needed to write)."""
    check_limits(max_bytes, concurrency, max_megapixels)
    app = FastAPI(
        title="binsort",
        description="Which bin does this go in? Upload a photo of one item of waste.",
        version=_version(),
    )
    app.add_middleware(
        UploadSlots, max_bytes=max_bytes, concurrency=concurrency, idle_seconds=idle_seconds
    )

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 413:  # Starlette's own words are "Content Too Large"
            uploads = request.url.path in UPLOAD_PATHS
            message = too_large(max_bytes) if uploads else "the request is too large"
        return error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, NO_FILE if request.url.path in UPLOAD_PATHS else "invalid request")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return error(500, "the server failed on this request; it has been logged")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        return {**served.info(), "collecting": collection is not None}

    add_collect_routes(app, collection, token)

    @app.post(
        "/predict",
        max_body_size=max_bytes,
        responses={code: {"description": why} for code, why in _ERRORS.items()},
    )
    async def predict(file: UploadFile = File(description="The photo.")) -> JSONResponse:
        """Which bin this photo goes in: what ``binsort predict --format json`` answers."""
        name = Path(file.filename or "photo").name
        kind = (file.content_type or "").split(";")[0].strip().lower()
        if kind and not (kind.startswith("image/") or kind == "application/octet-stream"):
            return error(415, f"{name}: {kind} is not an image")
        try:
            record = await anyio.to_thread.run_sync(
                partial(classify_upload, served, file.file, name, max_megapixels, collection)
            )
        except UploadError as exc:
            return error(exc.status, exc.message)
        except BinsortError as exc:
            return error(422, str(exc))
        return JSONResponse(record)

    return app


def too_large(max_bytes: int) -> str:
    mb = max_bytes / (1024 * 1024)
    return f"the upload is over {mb:g} MB" if mb >= 1 else f"the upload is over {max_bytes} bytes"


_ERRORS = {
    408: "The upload stalled.",
    413: "The upload is too large, in bytes or in pixels to decode.",
    415: "The upload is not an image.",
    422: "No photo in the field 'file', an empty upload or an unreadable image.",
}


@dataclass
class Server:
    """What ``binsort serve`` runs: the app, and what to tell its user at start-up."""

    app: FastAPI
    served: Served
    base: str  # the page's address: http://HOST:PORT/
    token: str | None  # needed to label, relabel and delete; None on loopback
    collection: Collection | None

    def link(self, page: str = "") -> str:
        return self.base + page + (f"?token={self.token}" if self.token else "")

    def banner(self) -> list[str]:
        where = "this computer only" if self.base.startswith("http://127.") else "the network"
        lines = [
            f"binsort serve: {self.served.description}, bins {self.served.bin_map.source}; "
            f"open {self.link()} (reachable from {where}; Ctrl-C stops)"
        ]
        if self.collection is not None:
            lines.append(
                f"collecting: photos confirmed on the page are kept in {self.collection.root}; "
                f"review them at {self.link('review')}"
            )
            if self.token:
                lines.append("the link with its token, for a phone's camera:")
                lines.append(qr_code(self.link()))
        return lines

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()


def prepare(
    model: str | Path | None,
    bins: str | Path,
    host: str,
    port: int,
    *,
    collect: str | Path | None = None,
    token: str | None = None,
    collect_max_gb: float = COLLECT_MAX_GB,
    **limits: Any,
) -> Server:
    """The app ``binsort serve`` runs, with its collection and token when ``collect`` is set
    (a token is made when none is given and ``host`` is not loopback); ``limits`` go to
    ``create_app``."""
    if collect_max_gb <= 0:
        raise BinsortError(f"--collect-max-gb must be above 0, got {collect_max_gb}")
    check_limits(**limits)
    served = load_served(model, bins)
    collection = None
    if collect is not None:
        collection = Collection(
            collect,
            served.model.classes,
            served.source["model_sha256"],
            max_bytes=int(collect_max_gb * 1e9),
        )
        if needs_token(host):
            token = token or secrets.token_urlsafe(16)
    if collection is None or not needs_token(host):
        token = None
    app = create_app(served, collection=collection, token=token, **limits)
    return Server(app, served, f"http://{_address(host)}:{port}/", token, collection)


def _address(host: str) -> str:
    """An address a browser can open: for "every interface", this computer's own name's
    address (resolved locally; 127.0.0.1 when it has no other)."""
    if host not in ("0.0.0.0", "::"):
        return host
    import socket

    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def qr_code(link: str) -> str:
    """``link`` as a QR code in text, for a phone's camera."""
    import segno

    out = io.StringIO()
    segno.make(link, error="l").terminal(out=out, compact=True)
    return out.getvalue().rstrip()


def _version() -> str:
    from binsort import __version__

    return __version__


PAGE = resources.files("binsort").joinpath("assets/serve.html").read_text(encoding="utf-8")
