"""Read a torch file without running code from it: tensors and plain values only.

Every file binsort reads with torch (checkpoints, ensemble files, ``--weights`` files) goes
through ``safe_load``, so a file that would run code when unpickled is refused in one line.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from binsort.errors import BinsortError


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain values only, no code run; a file
    it refuses is a ``BinsortError`` that says why, in one line."""
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write; the refusal says enough.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BinsortError(f"{path}: refused to load: {load_failure(exc)}") from None


def load_failure(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in words (torch's own text is long and
    suggests loading with ``weights_only=False``, which is exactly what must not be done)."""
    text = " ".join(str(exc).split())
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return (
            f"it holds Python objects ({unsupported[1]}) that could run code when unpickled; "
            "binsort reads only checkpoints made of tensors and plain values"
        )
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "not a file torch.load(weights_only=True) can read "
            "(a plain pickle, another format, or a damaged checkpoint)"
        )
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    first = text.split(". ")[0][:160] or type(exc).__name__
    return f"not a checkpoint, or a damaged one ({first})"
