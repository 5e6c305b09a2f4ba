"""Shared fixtures: tiny synthetic ImageFolders made in ``tmp_path``.

Images are coloured by class (each class has its own base colour plus noise) so that a model
can actually learn them in a few steps, which keeps end-to-end tests meaningful and fast.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Wide, plain terminal output so that rich tables are not wrapped or coloured in assertions.
os.environ["COLUMNS"] = "200"
os.environ["NO_COLOR"] = "1"
os.environ.setdefault("TERM", "dumb")
# Tests never download: a hub lookup fails at once instead of retrying for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"

CLASSES = ("glass", "metal", "paper")
COLOURS = {"glass": (40, 160, 60), "metal": (150, 150, 160), "paper": (230, 220, 200)}


def view_mean_nll(views, temperature: float, labels) -> float:
    """The NLL of the mean over TTA views (``[V, N, C]`` logits) of softmax(logits / T): what
    a calibration for ``--tta`` minimises."""
    import torch

    from binsort.metrics import nll

    return nll(torch.softmax(views.double() / temperature, -1).mean(0), labels)


# `binsort train` options for a quick run: resnet18 from scratch on 16-px images, no workers.
TINY_TRAIN = [
    *("--model", "resnet18", "--weights", "none", "--input-size", "16"),
    *("--batch", "4", "--workers", "0"),
]


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = CLASSES,
    per_class: int = 8,
    size: tuple[int, int] = (40, 30),
    seed: int = 0,
    fmt: str = "JPEG",
    tag: str = "",
) -> Path:
    """Write ``per_class`` images of ``size`` (width, height) for each class under ``root``.

    ``tag`` goes into every file name: the leakage guard matches images by class and file
    name, so a folder meant to be held out needs names of its own."""
    rng = np.random.default_rng(seed)
    ext = {"JPEG": ".jpg", "PNG": ".png"}[fmt]
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(COLOURS.get(name, (60 * ci % 256, 90, 200 - 40 * ci % 200)), dtype=np.int16)
        for i in range(per_class):
            pixels = np.clip(base + smooth_noise(rng, size, 30), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{tag}_{i:03d}{ext}", fmt)
    return root


def smooth_noise(rng: np.random.Generator, size: tuple[int, int], amplitude: int) -> np.ndarray:
    """Random texture of ``size`` (width, height) that varies smoothly, as photos do: noise
    drawn at a quarter of the size and scaled up. Pixel-level noise would be screened out by
    predict as not a photo (binsort.screening)."""
    coarse = rng.integers(
        -amplitude, amplitude, size=(max(1, size[1] // 4), max(1, size[0] // 4), 3)
    )
    layers = [
        np.asarray(Image.fromarray(coarse[..., c].astype(np.float32)).resize(size, Image.BILINEAR))
        for c in range(3)
    ]
    return np.stack(layers, axis=-1).astype(np.int16)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of eight 40x30 JPEGs each."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark = usefixtures("one_thread")``):
    tiny models gain nothing from more, and lose much on a busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Two tiny resnet18 runs (seeds 1 and 2) on one folder with a held-out test split.

    Session-scoped: training is the slow part, so every test that needs a real binsort
    checkpoint shares these. Each item is a ``binsort.train.TrainResult``; the folder is
    ``result.run_dir``'s recorded root (``split.json``).
    """
    from binsort.config import TrainConfig
    from binsort.train import fit

    base = tmp_path_factory.mktemp("trained")
    root = make_image_folder(base / "images", per_class=10, size=(36, 36))
    results = []
    for seed in (1, 2):
        cfg = TrainConfig.from_options(
            root=str(root),
            model="resnet18",
            weights=None,
            input_size=32,
            epochs=2,
            batch=4,
            workers=0,
            split=0.2,
            test_split=0.2,
            seed=seed,
            out=str(base / "runs"),
            name=f"seed{seed}",
            lr=1e-3,
        )
        results.append(fit(cfg))
    return results


@pytest.fixture(scope="session")
def two_folder_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny run on two folders whose classes partly overlap: ``a`` has glass, metal and
    paper, ``b`` paper and a class of its own, landfill. Returns (TrainResult, a, b)."""
    from binsort.config import TrainConfig
    from binsort.train import fit

    base = tmp_path_factory.mktemp("two_folders")
    a = make_image_folder(base / "a", per_class=6, size=(36, 36), tag="_a")
    b = make_image_folder(base / "b", ("paper", "landfill"), per_class=6, size=(36, 36), tag="_b")
    cfg = TrainConfig.from_options(
        root=[str(a), str(b)],
        model="resnet18",
        weights=None,
        input_size=16,
        epochs=1,
        batch=4,
        workers=0,
        split=0.2,
        test_split=0.2,
        out=str(base / "runs"),
    )
    return fit(cfg), a, b


def png_declaring(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), data (13), CRC (4).
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)
