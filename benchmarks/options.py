"""Command-line options shared by the benchmarks that compare models in one run."""

from __future__ import annotations

import argparse


def add_model_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--model PATH``, repeatable, into ``args.models`` (``--checkpoint``, its old name, too)."""
    parser.add_argument(
        "--model", "--checkpoint", dest="models", action="append", default=[], help=help
    )
