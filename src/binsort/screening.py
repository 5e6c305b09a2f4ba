"""Is it a photo at all? A check on image statistics before the model answers.

A classifier answers every input with one of its classes, confidently or not: a frame of
noise got *Mixed Paper 0.94* from the model that shipped before, and a blank frame a bin too.
``screen`` catches those two kinds of non-photo from the pixels alone, at the size the model
sees them:

- **blank**: the grey levels barely vary (standard deviation below ``BLANK_STD``): a white,
  black or grey frame, a lens cap, a fully transparent PNG (composited on white).
- **noise**: neighbouring pixels differ about as much as any two pixels do (mean absolute
  difference between neighbours over the standard deviation, ``roughness``, above
  ``NOISE_ROUGHNESS``). Natural photos are smooth at this scale; random noise is not.

Measured on all 2148 TrashNet photos (``benchmarks/screening.py``): the smallest standard
deviation is 0.030 and the largest roughness 0.32, so neither threshold fires on a real photo
there; random noise has a roughness near 0.98. It is not a detector of photos of other things
(a face, a cat): a model with its own out-of-distribution score does that (``binsort.ood``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BLANK_STD = 0.01  # grey levels in [0, 1]; TrashNet's flattest photo: 0.030
NOISE_ROUGHNESS = 0.6  # TrashNet's roughest photo: 0.32; random noise: about 0.98


def statistics(im: Image.Image) -> tuple[float, float]:
    """(standard deviation, roughness) of the image's grey levels in [0, 1]."""
    grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    std = float(grey.std())
    if std == 0.0:
        return 0.0, 0.0
    steps = (np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean()) / 2
    return std, float(steps) / std


def screen(im: Image.Image) -> str | None:
    """Why ``im`` is not a photo the model can sort (``None`` when it may be one)."""
    std, roughness = statistics(im)
    if std < BLANK_STD:
        return "a blank frame, not a photo of an item"
    if roughness > NOISE_ROUGHNESS:
        return "looks like noise, not a photo of an item"
    return None
