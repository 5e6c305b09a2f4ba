"""Opening one image the same way everywhere: oriented, RGB, and with a reason when it fails.

Every path that reads a photo (training, resizing, evaluation, prediction) goes through
``open_rgb`` so that EXIF orientation, palette/CMYK/16-bit modes, HEIC photos from iPhones
(through pillow-heif) and decompression bombs are handled once.

Pillow refuses images over 89 megapixels by default, but phones now take 100-200 megapixel
photos. binsort raises the limit to ``MAX_PIXELS`` (250 megapixels) for the whole process,
and decodes large JPEGs at a reduced scale when a small size is all that is needed, so such a
photo costs little memory. A file that declares more pixels is still refused, from its header,
before anything is allocated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps

from binsort.errors import BinsortError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
    | {".heic", ".heif"}
)
MAX_PIXELS = 250_000_000  # above every phone camera of today (200 MP), below a bomb's
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
TOO_LARGE = f"image too large (over {MAX_PIXELS // 1_000_000} megapixels)"  # the reason given

try:  # HEIC/HEIF: iPhones' default format
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - a dependency; absent only in a broken install
    pass


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_hidden(path: str | Path) -> bool:
    return Path(path).name.startswith(".")


def open_rgb(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Decode ``path`` into an upright RGB image.

    ``min_side`` lets the JPEG decoder decode at a reduced scale (1/2, 1/4, 1/8) as long as the
    shorter side stays at least ``min_side``: several times faster when the target is small.
    Raises ``BinsortError`` with the reason when the file is not a readable image.
    """
    try:
        with warnings.catch_warnings():
            # A declared size over PIL's limit is a decompression bomb: an error, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if min_side is not None and im.format == "JPEG":
                    scale = min(im.size) / min_side
                    if scale >= 2:
                        im.draft("RGB", (im.width // int(scale), im.height // int(scale)))
                im.load()
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except FileNotFoundError:
        raise BinsortError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BinsortError(f"{path}: is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BinsortError(f"{path}: refused, {TOO_LARGE}") from None
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
        raise BinsortError(f"{path}: not a readable image ({describe(exc)})") from None


def shorter_side(path: str | Path) -> int | None:
    """The shorter side in pixels, from the header alone; None if the file cannot say."""
    try:
        with Image.open(path) as im:
            return min(im.size)
    except (OSError, SyntaxError, ValueError):
        return None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB from any PIL mode; transparency is composited on white, 16-bit is scaled to 8."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16/32-bit grey: scale to 8 bits instead of letting convert() clip it to white.
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def resize_shorter(im: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size``, aspect kept: torchvision's ``Resize(size)`` on a PIL image,
    pixel for pixel (same output size rounding, same bilinear filter), without torch."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return im
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return im.resize((new_w, new_h), resample=Image.Resampling.BILINEAR)


def center_crop(im: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square, placed as torchvision's ``CenterCrop`` does."""
    w, h = im.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))
