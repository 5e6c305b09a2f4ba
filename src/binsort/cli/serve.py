"""``binsort serve``: the page and the JSON API, on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from binsort.cli._common import BinsOption, MaxMegapixels, ModelOption, err_console, user_errors
from binsort.config import (
    COLLECT_MAX_GB,
    MAX_MEGAPIXELS,
    SERVE_CONCURRENCY,
    SERVE_MAX_UPLOAD_MB,
)


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
    collect: Annotated[
        Path | None,
        typer.Option(
            help="Ask on the page whether each answer was right, and keep the photos the user "
            "confirms or corrects here, one folder per class (an image folder train reads), "
            "with a record of every label. Off unless given.",
            show_default=False,
            rich_help_panel="Collecting",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="The token that labelling and deleting need when --host is not this "
            "computer's own address.",
            show_default="a new random one, printed with the page's link",
            rich_help_panel="Collecting",
        ),
    ] = None,
    collect_max_gb: Annotated[
        float,
        typer.Option(
            help="Stop keeping photos once the collection holds this much (507).",
            rich_help_panel="Collecting",
        ),
    ] = COLLECT_MAX_GB,
) -> None:
    """Serve a page where anyone photographs an item and sees its bin, and a JSON API.

    GET / is the page; POST /predict takes a photo (multipart field 'file') and answers
    what binsort predict --format json answers; GET /model and GET /healthz; the API's
    documentation is at /docs. With --collect DIR the page asks whether each answer was
    right and keeps the photos it is told about in DIR; GET /review shows them. See
    docs/serve.md and docs/collect.md.
    """
    with user_errors():
        from binsort.errors import BinsortError
        from binsort.serve import prepare

        if not 0 < port < 65536:
            raise BinsortError(f"--port must be between 1 and 65535, got {port}")
        if limit_concurrency is not None and limit_concurrency < 1:
            raise BinsortError(f"--limit-concurrency must be at least 1, got {limit_concurrency}")
        server = prepare(
            model,
            bins,
            host,
            port,
            max_bytes=int(max_upload_mb * 1024 * 1024),
            concurrency=concurrency,
            max_megapixels=max_megapixels,
            collect=collect,
            token=token,
            collect_max_gb=collect_max_gb,
        )
    import uvicorn

    for line in server.banner():
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    try:
        uvicorn.run(
            server.app,
            host=host,
            port=port,
            log_level="warning",
            limit_concurrency=limit_concurrency,
        )
    finally:
        server.close()
