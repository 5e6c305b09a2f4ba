"""``--cache``: the in-memory dataset, batched augmentation, and training with them end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from binsort.cli import app
from binsort.config import TrainConfig
from binsort.data import cache as cache_module
from binsort.data.batch_augment import BatchAugment
from binsort.data.cache import CachedImages, cache_side, cached_sets, decode_images, keep_batch
from binsort.data.transforms import PERSPECTIVE_P
from binsort.errors import BinsortError
from conftest import TINY_TRAIN

runner = CliRunner()
OFF = dict(hflip=0, vflip=0, rotation=0, shear=0, perspective=0, jitter=0, grayscale=0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 6, side: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=gen(seed))


def recipe(**changes) -> BatchAugment:
    """The default recipe's batched augmentation at 16 px, with ``changes``."""
    return replace(BatchAugment.from_config(TrainConfig.from_options(input_size=16)), **changes)


def samples_of(folder) -> list[tuple[str, int]]:
    classes = sorted(p.name for p in folder.iterdir())
    return [
        (f"{c}/{p.name}", label)
        for label, c in enumerate(classes)
        for p in sorted((folder / c).iterdir())
    ]


# --- batched augmentation ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_default_augmentation_keeps_shape_dtype_and_range(dtype):
    x = images()
    if dtype == torch.float32:
        x = x.float() / 255
    out = BatchAugment.from_config(TrainConfig.from_options(input_size=16))(x, gen())
    assert out.shape == (6, 3, 16, 16) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0


def test_batched_and_per_image_augmentation_take_the_same_parameters():
    from torchvision.transforms import v2

    from binsort.data.transforms import train_transform

    strengths = dict(aug_scale=0.3, hflip=0.2, vflip=0.7, rotation=15.0, shear=5.0)
    cfg = TrainConfig.from_options(
        input_size=16, perspective=0.3, jitter=0.1, grayscale=0.2, **strengths
    )
    batched = BatchAugment.from_config(cfg)
    steps = {type(t): t for t in train_transform(cfg).transforms}
    crop = steps[v2.RandomResizedCrop]
    assert (batched.size, batched.scale, batched.ratio) == (crop.size[0], crop.scale, crop.ratio)
    assert batched.hflip == steps[v2.RandomHorizontalFlip].p
    assert batched.vflip == steps[v2.RandomVerticalFlip].p
    affine = steps[v2.RandomAffine]
    assert affine.degrees == [-batched.rotation, batched.rotation]
    assert affine.shear == [-batched.shear, batched.shear]  # x-shear only
    assert affine.translate is None and affine.scale is None
    perspective = steps[v2.RandomPerspective]
    assert (perspective.distortion_scale, perspective.p) == (batched.perspective, PERSPECTIVE_P)
    jitter = steps[v2.ColorJitter]
    bounds = (1 - batched.jitter, 1 + batched.jitter)
    assert jitter.brightness == jitter.contrast == jitter.saturation == bounds
    assert jitter.hue is None
    assert batched.grayscale == steps[v2.RandomGrayscale].p


def test_same_seed_same_batch_other_seed_other_batch():
    augment = recipe(perspective=0.5)
    x = images(8)
    assert torch.equal(augment(x, gen(3)), augment(x, gen(3)))
    assert not torch.allclose(augment(x, gen(3)), augment(x, gen(4)))


def test_everything_off_is_the_identity_and_flips_flip():
    x = images()
    whole = dict(size=20, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    expected = x.float() / 255
    assert torch.allclose(BatchAugment(**whole, **OFF)(x, gen()), expected, atol=1e-5)
    hflip = BatchAugment(**whole, **{**OFF, "hflip": 1.0})(x, gen())
    assert torch.allclose(hflip, expected.flip(-1), atol=1e-5)
    vflip = BatchAugment(**whole, **{**OFF, "vflip": 1.0})(x, gen())
    assert torch.allclose(vflip, expected.flip(-2), atol=1e-5)


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.5, 1.0)])
def test_crop_boxes_match_torchvision_random_resized_crop(scale):
    from torchvision.transforms import RandomResizedCrop

    boxes = recipe(scale=scale).sample_boxes(20_000, gen())
    left, top, w, h = boxes.unbind(1)
    assert (w > 0).all() and (h > 0).all() and (left >= 0).all() and (top >= 0).all()
    assert (left + w <= 1 + 1e-6).all() and (top + h <= 1 + 1e-6).all()
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4

    side = 148
    torch.manual_seed(0)
    square = torch.zeros(3, side, side)
    params = [RandomResizedCrop.get_params(square, scale, (3 / 4, 4 / 3)) for _ in range(5000)]
    reference = sum(ph * pw for _, _, ph, pw in params) / (len(params) * side * side)
    assert abs(float((w * h).mean()) - reference) < 0.015


def test_rotation_fills_black_outside_the_crop_like_torchvision():
    white = torch.full((4, 3, 32, 32), 255, dtype=torch.uint8)
    whole = dict(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = BatchAugment(**whole, **{**OFF, "rotation": 45.0})(white, gen())
    assert (out[:, :, 16, 16] == 1).all()
    # A rotation of at least a few degrees moves some outside pixels into the corners.
    assert (out[:, :, 0, 0] == 0).all(1).any()


def test_perspective_applies_to_about_half_of_the_images():
    white = torch.full((400, 3, 16, 16), 255, dtype=torch.uint8)
    whole = dict(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = BatchAugment(**whole, **{**OFF, "perspective": 0.8})(white, gen())
    distorted = (out.amin(dim=(1, 2, 3)) < 0.5).float().mean()
    assert 0.4 < distorted < 0.6


def test_grayscale_and_jitter():
    x = images(50)
    whole = dict(size=20, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    gray = BatchAugment(**whole, **{**OFF, "grayscale": 1.0})(x, gen())
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    jittered = BatchAugment(**whole, **{**OFF, "jitter": 0.4})(x, gen())
    assert jittered.min() >= 0 and jittered.max() <= 1
    # Brightness, contrast and saturation factors average 1: the mean stays about the same.
    assert abs(float(jittered.mean() - x.float().mean() / 255)) < 0.05
    assert not torch.allclose(jittered, x.float() / 255)


# --- the cache ----------------------------------------------------------------------------------


def test_validation_cache_is_exactly_the_evaluation_preprocessing(image_folder):
    from binsort.data.images import open_rgb
    from binsort.data.transforms import eval_transform

    samples = samples_of(image_folder)[:5]
    cached = decode_images(image_folder, samples, 16, threads=2)
    assert cached.images.shape == (5, 3, 16, 16) and cached.images.dtype == torch.uint8
    for (path, label), image, cached_label in zip(
        samples, cached.images, cached.labels, strict=True
    ):
        expected = eval_transform(16)(open_rgb(image_folder / path, min_side=16))
        assert torch.equal(image, (expected * 255).round().to(torch.uint8))
        assert cached_label == label


def test_datamodule_with_cache_yields_uint8_batches(image_folder):
    from binsort.data.datamodule import BinDataModule

    samples = samples_of(image_folder)
    for imbalance in (False, True):
        cfg = TrainConfig.from_options(input_size=16, batch=4, cache=True, imbalance=imbalance)
        dm = BinDataModule(image_folder, samples[:20], samples[20:], cfg)
        dm.setup("fit")
        x, y = next(iter(dm.train_dataloader()))
        assert x.shape == (4, 3, cache_side(16), cache_side(16)) and x.dtype == torch.uint8
        assert y.shape == (4,) and y.dtype == torch.long
        val = list(dm.val_dataloader())
        assert sum(len(b[1]) for b in val) == 4 and val[0][0].shape[-1] == 16


def test_cached_images_index_a_whole_batch_at_once():
    data = CachedImages(images(10), torch.arange(10))
    x, y = keep_batch(data.__getitems__([3, 1, 4]))
    assert torch.equal(y, torch.tensor([3, 1, 4])) and torch.equal(x[0], data.images[3])
    assert data.nbytes == 10 * 3 * 20 * 20


def test_memory_check_refuses_a_cache_that_does_not_fit(image_folder, monkeypatch):
    monkeypatch.setattr(cache_module, "available_memory", lambda device="cpu": 1000)
    samples = samples_of(image_folder)
    with pytest.raises(BinsortError, match="binsort resize") as error:
        cached_sets(image_folder, samples[:20], samples[20:], 16)
    assert "without --cache" in str(error.value) and "50%" in str(error.value)


def test_memory_check_counts_every_process_on_the_machine(monkeypatch):
    monkeypatch.setattr(cache_module, "available_memory", lambda device="cpu": 10_000)
    cache_module.check_memory(4_000, copies=1)
    with pytest.raises(BinsortError, match="2 processes"):
        cache_module.check_memory(4_000, copies=2)


def test_module_augments_only_cached_training_batches():
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import Precision

    from binsort.models.module import Classifier

    cfg = TrainConfig.from_options(model="resnet18", weights=None, input_size=16, cache=True)
    module = Classifier(cfg.to_dict(), ["a", "b"], [0.5] * 3, [0.5] * 3)
    labels = torch.tensor([0, 1])
    module._trainer = SimpleNamespace(training=True, precision_plugin=Precision())
    x, y = module.on_after_batch_transfer((images(2, cache_side(16)), labels), 0)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and y is labels
    module._trainer.training = False
    val = images(2, 16)
    x, _ = module.on_after_batch_transfer((val, labels), 0)
    assert torch.allclose(x, val.float() / 255)
    floats = (val.float() / 255, labels)
    assert module.on_after_batch_transfer(floats, 0) is floats


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--imbalance", "--cutmix", "1.0", "--channels-last"]])
def test_one_epoch_with_cache_end_to_end(image_folder, tmp_path, extra):
    argv = ["train", "--root", str(image_folder), "--out", str(tmp_path / "runs"), *TINY_TRAIN]
    result = runner.invoke(app, [*argv, "--epochs", "1", "--cache", *extra])
    assert result.exit_code == 0, result.output
    assert "Training finished" in result.output and "on_after_batch_transfer" not in result.output
    folder = tmp_path / "runs" / "default" / "version_0"
    assert json.loads((folder / "config.json").read_text())["cache"] is True
    assert (folder / "checkpoints" / "last.ckpt").is_file()


def test_cache_that_does_not_fit_is_a_one_line_error(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "available_memory", lambda device="cpu": 1000)
    argv = ["train", "--root", str(image_folder), "--out", str(tmp_path / "runs"), *TINY_TRAIN]
    result = runner.invoke(app, [*argv, "--epochs", "1", "--cache"])
    assert result.exit_code == 1
    assert "--cache needs" in result.output and "Traceback" not in result.output
