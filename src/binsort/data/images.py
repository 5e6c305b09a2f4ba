"""Opening one image the same way everywhere: oriented, RGB, and with a reason when it fails.

Every path that reads a photo (training, resizing, evaluation, prediction, the served page)
goes through ``open_rgb`` so that EXIF orientation, palette/CMYK/16-bit modes, HEIC photos
from iPhones (through pillow-heif) and hostile files are handled once.

What a decode may cost is decided per use, before anything is decoded, from the file's header:

- **A memory budget** (``max_megapixels``, default ``MAX_MEGAPIXELS``): the decoded image may
  take at most that many megapixels at 4 bytes each (Pillow holds an RGB or RGBA pixel in 4
  bytes, a grey one in 1, a 16-bit grey one in 2). Large JPEGs are decoded at a reduced scale
  when a small size is all that is needed (``min_side``), so a 200-megapixel phone JPEG costs
  a few megapixels; a 100-megapixel PNG cannot be decoded partly and is refused.
- **A shape bound** (``MAX_ASPECT``): a strip of 1 x 2,000,000 pixels is 8 KB as a PNG, but
  resized to a model's input it would take gigabytes; no photo is that thin.

After decoding, an image larger than needed is shrunk by an integer factor before any mode
conversion (the same idea as the JPEG decoder's reduced scale), so converting a 16-bit or
transparent image costs a fraction of the decode itself. Pillow's own process-wide pixel limit
is left as Pillow sets it; only a JPEG past it (a 200-megapixel phone photo) is reopened
through Pillow's JPEG reader, and then held to the budget like any other file.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from binsort.config import MAX_MEGAPIXELS
from binsort.errors import BinsortError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
    | {".heic", ".heif"}
)
BYTES_PER_PIXEL = 4  # what Pillow allocates for an RGB(A) pixel; the budget's unit
MAX_ASPECT = 20  # longer side over shorter: panoramas reach about 10
TOO_LARGE = "image too large"  # how every budget refusal starts, so callers can tell it apart
NOT_A_PHOTO_SHAPE = "not a photo's shape"

try:  # HEIC/HEIF: iPhones' default format
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - a dependency; absent only in a broken install
    pass


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_hidden(path: str | Path) -> bool:
    return Path(path).name.startswith(".")


def open_rgb(
    path: str | Path, min_side: int | None = None, max_megapixels: float = MAX_MEGAPIXELS
) -> Image.Image:
    """Decode ``path`` into an upright RGB image, within the budget ``max_megapixels``.

    ``min_side`` lets the decoder work at a reduced scale (JPEG's 1/2, 1/4, 1/8; an integer
    shrink for other formats) as long as the shorter side stays at least ``min_side``.
    Raises ``BinsortError`` with the reason when the file is not a readable image or is
    refused (``TOO_LARGE``, ``NOT_A_PHOTO_SHAPE``); nothing else escapes, whatever the file.
    """
    try:
        with _open(path) as im:
            check_shape(im.size)
            if min_side is not None and im.format in ("JPEG", "MPO"):
                factor = min(im.size) // min_side
                if factor >= 2:
                    im.draft("RGB", (im.width // factor, im.height // factor))
            check_budget(im.size, im.mode, max_megapixels)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return to_rgb(_shrink(_eight_bit(im), min_side))
    except BinsortError as exc:
        raise BinsortError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise BinsortError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BinsortError(f"{path}: is a folder, not an image") from None
    except MemoryError:
        raise BinsortError(f"{path}: not enough memory to decode it") from None
    except Exception as exc:  # any decoder failure is this file's problem, never the caller's
        raise BinsortError(f"{path}: not a readable image ({describe(exc)})") from None


def _open(path: str | Path) -> Image.Image:
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        # Past Pillow's own limit (179 MP). A phone JPEG that large still fits the budget
        # at reduced scale; Pillow's JPEG reader opens it without the global check, and the
        # budget then decides. Any other format that large could never fit.
        from PIL import JpegImagePlugin

        try:
            return JpegImagePlugin.JpegImageFile(path)
        except SyntaxError:  # not a JPEG
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000
            raise BinsortError(f"refused, {TOO_LARGE} (over {limit} megapixels)") from None


def check_shape(size: tuple[int, int]) -> None:
    """Refuse a strip no camera takes (``MAX_ASPECT``), from the declared size."""
    w, h = size
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise BinsortError(
            f"refused, {NOT_A_PHOTO_SHAPE} ({w} x {h} pixels; sides beyond {MAX_ASPECT}:1)"
        )


def check_max_megapixels(max_megapixels: float) -> None:
    """Refuse a budget that admits nothing (``--max-megapixels``)."""
    if not max_megapixels > 0:
        raise BinsortError(f"--max-megapixels must be above 0, got {max_megapixels}")


def check_budget(size: tuple[int, int], mode: str, max_megapixels: float) -> None:
    """Refuse a decode that would take more than ``max_megapixels`` 4-byte pixels."""
    w, h = size
    cost = w * h * _bytes_per_pixel(mode)
    budget = int(max_megapixels * 1_000_000) * BYTES_PER_PIXEL
    if cost > budget:
        raise BinsortError(
            f"refused, {TOO_LARGE} ({w} x {h} pixels: {cost / 1e6:.0f} MB to decode, over "
            f"the {max_megapixels:g}-megapixel budget of {budget / 1e6:.0f} MB)"
        )


def _bytes_per_pixel(mode: str) -> int:
    """Memory a pixel of ``mode`` takes to decode and bring to 8-bit bands (``_eight_bit``)."""
    if mode == "L":
        return 1
    if mode == "1":
        return 2
    if mode.startswith("I;16"):
        return 3  # 2 decoded + 1 for its 8-bit copy
    if mode in ("LA", "RGB", "RGBA", "RGBX"):
        return BYTES_PER_PIXEL
    if mode in ("P", "I", "F"):
        return BYTES_PER_PIXEL + 1  # P: 1 decoded + its RGBA copy; I, F: 4 + an 8-bit copy
    return 2 * BYTES_PER_PIXEL  # CMYK, YCbCr, LAB, HSV, PA, premultiplied: a converted copy


def shorter_side(path: str | Path) -> int | None:
    """The shorter side in pixels, from the header alone; None if the file cannot say."""
    try:
        with _open(path) as im:
            return min(im.size)
    except Exception:  # an unreadable file is reported where it is decoded, not here
        return None


def _eight_bit(im: Image.Image) -> Image.Image:
    """The image in a mode of 8-bit bands that ``Image.reduce`` takes (L, LA, RGB, RGBA):
    16- and 32-bit grey are scaled to 8 bits in integer arithmetic (not clipped to white)."""
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16 bits (or 32 holding 16-bit values) keep their top 8; 32 bits holding 8-bit values
        # are taken as they are. Band by band, so no full-size copy beyond the 8-bit result.
        import numpy as np

        top = 65535 if im.mode.startswith("I;16") or im.getextrema()[1] > 255 else 255
        shift = 8 if top == 65535 else 0
        w, h = im.size
        out = np.empty((h, w), np.uint8)
        for y in range(0, h, 256):
            band = np.asarray(im.crop((0, y, w, min(h, y + 256))))
            out[y : y + band.shape[0]] = np.right_shift(band.clip(0, top), shift)
        return Image.fromarray(out, "L")
    if im.mode == "F":
        return im.convert("L")
    if im.mode in ("P", "PA"):
        return im.convert("RGBA")
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("La", "RGBa"):
        return im.convert("RGBA")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _shrink(im: Image.Image, min_side: int | None) -> Image.Image:
    """An integer shrink, keeping the shorter side at least ``min_side``: JPEG's reduced-scale
    decoding for the other formats, done before the conversions that copy the image.

    Band by band: ``reduce`` of an RGBA image copies it whole (it premultiplies alpha), so
    bands of whole blocks keep the extra memory to one band, with the same pixels."""
    if min_side is None or min(im.size) // min_side < 2:
        return im
    factor = min(im.size) // min_side
    w, h = im.size
    step = factor * max(1, 256 // factor)
    out = Image.new(im.mode, (-(-w // factor), -(-h // factor)))
    for y in range(0, h, step):
        out.paste(im.crop((0, y, w, min(h, y + step))).reduce(factor), (0, y // factor))
    return out


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB from any PIL mode; transparency is composited on white, 16-bit is scaled to 8."""
    im = _eight_bit(im)
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def resize_shorter(im: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size``, aspect kept: torchvision's ``Resize(size)`` on a PIL image,
    pixel for pixel (same output size rounding, same bilinear filter), without torch.
    Refuses (``check_shape``) a strip that would grow to gigabytes."""
    w, h = im.size
    check_shape((w, h))
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
