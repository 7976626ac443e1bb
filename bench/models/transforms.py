"""Preprocessing: an image (3xHxW float in [0, 1], original size) becomes a model input.

:class:`ResizeNormalize` is what model bundles use: it resizes the *whole* image to the model's
input size (no crop, aspect ratio not kept) and normalises per channel. Because nothing is
cropped, a map at input resolution resizes back onto the whole image, pixel for pixel in
relative coordinates; the price is a mild anisotropic stretch of non-square photos, which the
ImageNet models tolerate (see tests/test_models_real.py for the measured predictions).

:class:`CenterCropEval` is the classic ImageNet evaluation transform (shorter side to 256,
center crop 224). It is *not* a bundle preprocessing (it drops the image borders, so maps would
not cover the image); it exists to check a model's ImageNet behaviour in the setting its
weights were validated in.

Both are small dataclasses rather than closures so that a DataLoader can pickle them into
worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or image.shape[-3] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"expected an RGB image 3xHxW (or Bx3xHxW) float in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}")
    return image


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    batch = image if image.ndim == 4 else image[None]
    if tuple(batch.shape[-2:]) != tuple(size):
        # antialias: photos are mostly downsampled, and aliasing would put texture noise into
        # both the prediction and the attribution maps.
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return batch if image.ndim == 4 else batch[0]


def _normalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - m) / s


@dataclass(frozen=True)
class ResizeNormalize:
    """Whole image -> ``size`` (h, w) by antialiased bilinear resizing, then ``(x - mean) / std``."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _check_image(image)
        return _normalize(_resize(image, self.size), self.mean, self.std)


@dataclass(frozen=True)
class CenterCropEval:
    """ImageNet evaluation transform: shorter side -> ``resize`` (aspect kept), center crop
    ``crop`` x ``crop``, normalise. Crops the image: for accuracy checks only."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int = 256
    crop: int = 224

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _check_image(image)
        h, w = image.shape[-2:]
        scale = self.resize / min(h, w)
        nh, nw = max(self.crop, round(h * scale)), max(self.crop, round(w * scale))
        image = _resize(image, (nh, nw))
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        image = image[..., top : top + self.crop, left : left + self.crop]
        return _normalize(image, self.mean, self.std)


def parse_size(value, *, what: str = "input_size") -> tuple[int, int]:
    """``224`` or ``[h, w]`` from a config -> (h, w)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an int or [height, width], got {value!r}")
    if isinstance(value, int):
        size = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        size = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{what} must be an int or [height, width], got {value!r}")
    if min(size) < 1:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return size
