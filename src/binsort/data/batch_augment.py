"""Training augmentation of whole batches on the training device, for ``--cache``.

The per-image path (``binsort.data.transforms.train_transform``) augments one PIL image at a
time in DataLoader workers. With ``--cache`` the decoded images are already uint8 tensors in
memory (``binsort.data.cache``), so the same augmentations run here on a whole batch at once,
on the device that trains; the LightningModule calls it on each training batch::

    augment = BatchAugment.from_config(cfg)
    generator = torch.Generator().manual_seed(seed)
    x = augment(images, generator)  # uint8 [B, 3, S, S] -> float32 [B, 3, size, size] in [0, 1]

Same options, defaults and order as the per-image path: RandomResizedCrop (area scale
``(aug_scale, 1)``, aspect ratio ``(3/4, 4/3)``), horizontal and vertical flips, RandomAffine
(rotation, x-shear), RandomPerspective (p=0.5), ColorJitter (brightness, contrast,
saturation) and RandomGrayscale. The geometric steps are all projective maps, so they are
composed into one sampling grid per image and the batch is resampled once with
``grid_sample``: one bilinear resample instead of three. Pixels that the affine or the
perspective step moves in from outside the crop are black, as with torchvision's ``fill=0``.

Every random parameter (a few numbers per image) is drawn on the CPU from the explicit
``torch.Generator`` and then moved to the images' device, so a seed gives the same
augmentation on every device. Differences from the per-image path, all small: the crop is
taken from the cached centre square, not the full image; crop boxes are continuous, not
rounded to pixels; the affine step is bilinear, not nearest; ColorJitter's steps run in a
fixed order (brightness, contrast, saturation) instead of a random order per image.

Not kornia.augmentation: it does the same steps, but one resample per geometric step and from
torch's global generator, and ran at half this speed or less on a 2-core CPU
(``benchmarks/augment_speed.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from binsort.data.transforms import CROP_RATIO, PERSPECTIVE_P

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale uses.
_GRAY = (0.2989, 0.587, 0.114)
# A grid coordinate outside [-1, 1]: grid_sample's zero padding makes those pixels black.
_OUTSIDE = 3.0
# RandomResizedCrop's tries before it falls back to the whole (square) image.
_CROP_TRIES = 10


@dataclass(frozen=True)
class BatchAugment:
    # No defaults: the strengths come from TrainConfig (``from_config``), the fixed parts from
    # binsort.data.transforms, as for the per-image path.
    size: int
    scale: tuple[float, float]
    hflip: float
    vflip: float
    rotation: float
    shear: float
    perspective: float
    jitter: float
    grayscale: float
    ratio: tuple[float, float] = CROP_RATIO

    @classmethod
    def from_config(cls, cfg) -> BatchAugment:
        """The augmentation that ``train_transform(cfg)`` does per image, for batches."""
        return cls(
            size=cfg.data.input_size,
            scale=(cfg.aug.aug_scale, 1.0),
            hflip=cfg.aug.hflip,
            vflip=cfg.aug.vflip,
            rotation=cfg.aug.rotation,
            shear=cfg.aug.shear,
            perspective=cfg.aug.perspective,
            jitter=cfg.aug.jitter,
            grayscale=cfg.aug.grayscale,
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch of square images (uint8 in [0, 255] or float in [0, 1])."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"expected square RGB images [B, 3, S, S], got {list(images.shape)}")
        x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        grid = self.sampling_grid(len(x), generator, x.device)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self.colour(x, generator)

    # --- geometry ---------------------------------------------------------------------------

    def sample_boxes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """RandomResizedCrop boxes ``[n, 4]`` as (left, top, width, height), fractions of the side.

        torchvision's sampling, vectorised: up to ten tries of (area ~ U(scale), log aspect ~
        U(log ratio)) per image, the first box that fits is taken, else the whole image.
        """
        lo, hi = self.scale
        area = torch.empty(n, _CROP_TRIES).uniform_(lo, hi, generator=generator)
        log_ratio = torch.empty(n, _CROP_TRIES).uniform_(
            math.log(self.ratio[0]), math.log(self.ratio[1]), generator=generator
        )
        aspect = log_ratio.exp()
        w = (area * aspect).sqrt()
        h = (area / aspect).sqrt()
        fits = (w <= 1) & (h <= 1)
        # Index of the first try that fits (argmax of a bool finds the first True).
        first = fits.int().argmax(dim=1, keepdim=True)
        w = torch.where(fits.any(1), w.gather(1, first).squeeze(1), torch.ones(n))
        h = torch.where(fits.any(1), h.gather(1, first).squeeze(1), torch.ones(n))
        left = torch.rand(n, generator=generator) * (1 - w)
        top = torch.rand(n, generator=generator) * (1 - h)
        return torch.stack([left, top, w, h], dim=1)

    def sampling_grid(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``grid_sample``'s grid ``[n, size, size, 2]``: where each output pixel comes from.

        Output coordinates are mapped back through the steps in reverse order: perspective,
        affine, flips, then the crop box into the source square (coordinates in [-1, 1],
        ``align_corners=False``).
        """
        boxes = self.sample_boxes(n, generator)
        flip_x = torch.where(torch.rand(n, generator=generator) < self.hflip, -1.0, 1.0)
        flip_y = torch.where(torch.rand(n, generator=generator) < self.vflip, -1.0, 1.0)
        affine = self._inverse_affine(n, generator)
        homography, perspective = self._inverse_perspective(n, generator)

        # Elementwise on [n, size, size] planes with per-image [n, 1, 1] coefficients: several
        # times faster on CPUs than batched matmuls on [n, size * size, 3] points.
        def coef(t: torch.Tensor) -> torch.Tensor:
            return t.to(device)[:, None, None]

        centres = (torch.arange(self.size, dtype=torch.float32, device=device) * 2 + 1) / self.size
        centres = centres - 1
        ux, uy = centres[None, None, :], centres[None, :, None]
        if perspective:
            # Output -> the affine step's output (projective: divide by the third coordinate).
            h = [[coef(homography[:, i, j]) for j in range(3)] for i in range(3)]
            w = h[2][0] * ux + h[2][1] * uy + h[2][2]
            px = (h[0][0] * ux + h[0][1] * uy + h[0][2]) / w
            py = (h[1][0] * ux + h[1][1] * uy + h[1][2]) / w
            inside = (px.abs() <= 1) & (py.abs() <= 1)
        else:
            px, py, inside = ux, uy, None
        # Affine: -> the crop after flips; a 2x2 linear map about the centre.
        a = [[coef(affine[:, i, j]) for j in range(2)] for i in range(2)]
        vx = a[0][0] * px + a[0][1] * py
        vy = a[1][0] * px + a[1][1] * py
        inside_v = (vx.abs() <= 1) & (vy.abs() <= 1)
        inside = inside_v if inside is None else inside & inside_v
        # Flips and the crop box: -> source coordinates. Outside the crop: black, like fill=0.
        left, top, bw, bh = boxes.unbind(1)
        sx = vx.mul_(coef(bw * flip_x)).add_(coef(2 * left + bw - 1))
        sy = vy.mul_(coef(bh * flip_y)).add_(coef(2 * top + bh - 1))
        grid = torch.stack([sx, sy], dim=-1)
        return grid.masked_fill_(~inside[..., None], _OUTSIDE)

    def _inverse_affine(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, 2, 2]``: inverse of RandomAffine's rotation times x-shear (about the centre).

        The crop is square, so [-1, 1] coordinates are isotropic and the matrix is the same as
        in pixels. Angles are symmetric around 0, so the sign convention does not matter.
        """
        angle = torch.empty(n).uniform_(-self.rotation, self.rotation, generator=generator)
        shear = torch.empty(n).uniform_(-self.shear, self.shear, generator=generator)
        a, s = torch.deg2rad(angle), torch.deg2rad(shear)
        cos, sin, tan = a.cos(), a.sin(), s.tan()
        # torchvision's RSS with no y-shear and scale 1: R(a) @ [[1, -tan(s)], [0, 1]].
        forward = torch.stack(
            [torch.stack([cos, -cos * tan - sin], 1), torch.stack([sin, -sin * tan + cos], 1)], 1
        )
        return torch.linalg.inv(forward)

    def _inverse_perspective(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, bool]:
        """``[n, 3, 3]`` homographies from output to input coordinates (identity when off),
        and whether any image in the batch is distorted.

        RandomPerspective moves each corner inwards by up to ``perspective`` of the half side
        on each axis; the image at the moved corners is the original corner's content, so the
        sampling map takes the moved corners back to the original ones.
        """
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        inward = -corners  # the direction towards the centre, per corner and axis
        offsets = torch.rand(n, 4, 2, generator=generator) * self.perspective
        applied = torch.rand(n, generator=generator) < PERSPECTIVE_P
        if self.perspective <= 0:
            applied[:] = False
        moved = corners + inward * offsets * applied[:, None, None]
        return _homography(moved, corners.expand(n, 4, 2)), bool(applied.any())

    # --- colour -----------------------------------------------------------------------------

    def colour(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """ColorJitter (brightness, contrast, saturation), then RandomGrayscale; x in place."""
        n = len(x)

        def factors() -> torch.Tensor:
            lo, hi = max(0.0, 1 - self.jitter), 1 + self.jitter
            return torch.empty(n).uniform_(lo, hi, generator=generator).to(x.device)[:, None]

        if self.jitter > 0:
            brightness, contrast, saturation = factors(), factors(), factors()
            x = x.mul_(brightness[..., None, None]).clamp_(0, 1)
            mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean, contrast[..., None, None])
            x = _blend(x, _gray(x), saturation[..., None, None])
        if self.grayscale > 0:
            to_gray = (torch.rand(n, generator=generator) < self.grayscale).to(x.device)
            x = torch.where(to_gray[:, None, None, None], _gray(x).expand_as(x), x)
        return x.contiguous()


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend``: ``ratio * x + (1 - ratio) * other``, clamped; in place on x."""
    return x.mul_(ratio).add_(other * (1 - ratio)).clamp_(0, 1)


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``[n, 3, 3]`` maps taking the 4 points ``src[i]`` to ``dst[i]`` (solved in float64)."""
    src, dst = src.double(), dst.double()
    x, y = src.unbind(-1)
    u, v = dst.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], dim=1)  # [n, 8, 8]
    b = torch.cat([u, v], dim=1)  # [n, 8]
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1).reshape(-1, 3, 3).float()
