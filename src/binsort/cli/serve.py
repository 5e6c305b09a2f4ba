"""``binsort serve``: the page and the JSON API, on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from binsort.cli._common import BinsOption, ModelOption, err_console, user_errors


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
) -> None:
    """Serve a page where anyone photographs an item and sees its bin, and a JSON API.

    GET / is the page; POST /predict takes a photo (multipart field 'file') and answers
    what binsort predict --format json answers; GET /model and GET /healthz; the API's
    documentation is at /docs. See docs/serve.md.
    """
    with user_errors():
        from binsort.serve import create_app, load_served

        if not 0 < port < 65536:
            from binsort.errors import BinsortError

            raise BinsortError(f"--port must be between 1 and 65535, got {port}")
        served = load_served(model, bins)
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
    uvicorn.run(create_app(served), host=host, port=port, log_level="warning")
