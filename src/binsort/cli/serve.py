"""``binsort serve``: the page and the JSON API, on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from binsort.cli._common import BinsOption, MaxMegapixels, ModelOption, err_console, user_errors
from binsort.config import MAX_MEGAPIXELS, SERVE_CONCURRENCY, SERVE_MAX_UPLOAD_MB


def serve(
    model: ModelOption = None,
    bins: BinsOption = "psu",
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: 127.0.0.1 is this computer only; 0.0.0.0 lets a phone "
            "on the same network in.",
            rich_help_panel="Network",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", rich_help_panel="Network")] = 8000,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            help="Refuse an upload larger than this (413), counted while it arrives.",
            rich_help_panel="Limits",
        ),
    ] = SERVE_MAX_UPLOAD_MB,
    max_megapixels: MaxMegapixels = MAX_MEGAPIXELS,
    concurrency: Annotated[
        int,
        typer.Option(
            help="Uploads read and classified at once; the others wait their turn without "
            "being read.",
            rich_help_panel="Limits",
        ),
    ] = SERVE_CONCURRENCY,
    limit_concurrency: Annotated[
        int | None,
        typer.Option(
            help="Open connections past which the server answers 503 at once (uvicorn's limit).",
            show_default="no limit",
            rich_help_panel="Limits",
        ),
    ] = None,
) -> None:
    """Serve a page where anyone photographs an item and sees its bin, and a JSON API.

    GET / is the page; POST /predict takes a photo (multipart field 'file') and answers
    what binsort predict --format json answers; GET /model and GET /healthz; the API's
    documentation is at /docs. See docs/serve.md.
    """
    with user_errors():
        from binsort.errors import BinsortError
        from binsort.serve import create_app, load_served

        if not 0 < port < 65536:
            raise BinsortError(f"--port must be between 1 and 65535, got {port}")
        if limit_concurrency is not None and limit_concurrency < 1:
            raise BinsortError(f"--limit-concurrency must be at least 1, got {limit_concurrency}")
        if not max_megapixels > 0:
            raise BinsortError(f"--max-megapixels must be above 0, got {max_megapixels}")
        served = load_served(model, bins)
        app = create_app(
            served,
            max_bytes=int(max_upload_mb * 1024 * 1024),
            concurrency=concurrency,
            max_megapixels=max_megapixels,
        )
    import uvicorn

    where = "this computer only" if host in ("127.0.0.1", "localhost") else f"the network ({host})"
    err_console.print(
        f"binsort serve: {served.description}, bins {served.bin_map.source}; "
        f"open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/ "
        f"(reachable from {where}; Ctrl-C stops)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=limit_concurrency)
