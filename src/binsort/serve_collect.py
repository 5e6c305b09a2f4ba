"""The routes of ``binsort serve --collect DIR``: labelling, reviewing and deleting photos.

- ``POST /feedback`` JSON ``{"photo_id": "...", "label": "<class>"}``: keep the photo the page
  just classified as ``DIR/<label>/<name>.jpg``, or move a kept one (its ``photo_id`` or its
  ``sha256``) to another class. The history of every label stays in the record.
- ``GET /review``: a page of the kept photos, newest first, filterable by "model was wrong",
  with relabel and delete. ``GET /collected`` (``?wrong=true``) lists them as JSON,
  ``GET /collected/{sha256}/photo`` is one photo, ``DELETE /collected/{sha256}`` removes one.

Who may write: on a loopback address the page is its user's own. On any other address a
token is required (``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` on the page's link),
compared in constant time; without it a 401 and nothing changes. Labelling is rate-limited
per client address (429), and past the collection's size cap it answers 507.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from importlib import resources
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel

from binsort.collect import CollectError, Collection
from binsort.config import FEEDBACK_PER_MINUTE

REVIEW_PAGE = resources.files("binsort").joinpath("assets/review.html").read_text("utf-8")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FEEDBACK_MAX_BYTES = 4096  # {"photo_id": ..., "label": ...} is under 200 bytes


class Feedback(BaseModel):
    photo_id: str
    label: str


def needs_token(host: str) -> bool:
    """Whether writing needs a token: on any address but this computer's own."""
    return host not in LOOPBACK


class RateLimit:
    """At most ``per_minute`` requests per client in any 60 seconds."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self.lock:
            times = self.seen[client]
            while times and now - times[0] > 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


def add_collect_routes(
    app: FastAPI,
    collection: Collection | None,
    token: str | None,
    per_minute: int = FEEDBACK_PER_MINUTE,
) -> None:
    """The routes above; with ``collection`` None, each answers 404 saying how to turn it on."""
    limit = RateLimit(per_minute)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def refused(request: Request, write: bool = True) -> JSONResponse | None:
        """The error that stops this request, or None when it may go on."""
        if collection is None:
            return error(404, "collecting is off: start binsort serve with --collect DIR")
        if token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query_params.get("token", "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return error(401, "a token is needed: open the link binsort serve printed")
        client = request.client.host if request.client else "unknown"
        if write and not limit.allow(client):
            return error(429, f"too many labels: at most {per_minute} a minute")
        return None

    @app.post("/feedback", max_body_size=FEEDBACK_MAX_BYTES)
    async def feedback(answer: Feedback, request: Request) -> JSONResponse:
        """Keep the photo just classified under ``label`` (or move a kept one there)."""
        if (stop := refused(request)) is not None:
            return stop
        try:
            record = await anyio.to_thread.run_sync(collection.label, answer.photo_id, answer.label)
        except CollectError as exc:
            return error(exc.status, str(exc))
        return JSONResponse(record)

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review(request: Request) -> Any:
        if (stop := refused(request, write=False)) is not None:
            return stop
        return HTMLResponse(REVIEW_PAGE)

    @app.get("/collected")
    def collected(request: Request, wrong: bool = False) -> Any:
        """The kept photos, newest first; ``wrong``: only those the model got wrong."""
        if (stop := refused(request, write=False)) is not None:
            return stop
        return {"classes": collection.classes, "photos": collection.records(wrong_only=wrong)}

    @app.get("/collected/{sha256}/photo")
    def photo(sha256: str, request: Request) -> Any:
        if (stop := refused(request, write=False)) is not None:
            return stop
        try:
            return FileResponse(collection.file_of(sha256), media_type="image/jpeg")
        except CollectError as exc:
            return error(exc.status, str(exc))

    @app.delete("/collected/{sha256}")
    async def delete(sha256: str, request: Request) -> JSONResponse:
        if (stop := refused(request)) is not None:
            return stop
        try:
            await anyio.to_thread.run_sync(collection.delete, sha256)
        except CollectError as exc:
            return error(exc.status, str(exc))
        return JSONResponse({"deleted": sha256})
