"""Decoding image files into the Sample contract's ``image``: float 3xHxW in [0, 1], RGB.

Every loader decodes through :func:`load_image`, lazily, in ``__getitem__``. Conventions:

- Pixels are taken as stored: EXIF orientation tags are *not* applied, because the datasets'
  annotations (COCO, VOC, the gaze sets) are drawn on the stored pixel grid.
- Grayscale (``L``, ``1``), palette (``P``), CMYK and YCbCr become RGB by Pillow's conversion.
- An alpha channel (``RGBA``, ``LA``, ``PA``, palette transparency) is dropped, not composited:
  the colour under a transparent pixel is what the file stores, as torchvision's ``read_image``
  does in RGB mode.
- 16-bit grayscale (``I;16*``, and ``I`` which Pillow uses for 16-bit PNGs) is scaled by 1/65535,
  so full scale stays 1.0 instead of clipping at 255 as a plain ``convert("RGB")`` would.
- A truncated or corrupt file raises :class:`ImageDecodeError` naming the file. Pillow's global
  ``LOAD_TRUNCATED_IMAGES`` switch is never touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Decompression-bomb limit, checked on the header before any pixel is decoded. Pillow only
# warns between its own limit and twice that, and a 100-megapixel image is 1.2 GB as float32.
MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS default


class ImageDecodeError(OSError):
    """An image file could not be read or decoded."""


def _to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """H x W x 3 float32 in [0, 1]."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        gray = np.clip(gray, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise ImageDecodeError(
            f"{path}: floating-point images (Pillow mode 'F') have no defined [0, 1] range; "
            "convert the file to 8- or 16-bit first"
        )
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | Path) -> torch.Tensor:
    """Decode ``path`` into a float32 tensor 3xHxW in [0, 1] (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{path}: {w}x{h} = {w * h} pixels is over the decompression-bomb limit "
                    f"of {MAX_PIXELS} pixels; refusing to decode it"
                )
            img.load()
            arr = _to_rgb_array(img, path)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{path}: not a readable image ({exc})") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(
            f"{path}: cannot decode image, truncated or corrupt ({exc})"
        ) from exc
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: cannot read image header ({exc})") from exc
    return int(h), int(w)


def load_gray(path: str | Path) -> np.ndarray:
    """A single-channel map file (density or fixation map) as float32 HxW in [0, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in SIXTEEN_BIT_MODES:
                return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
            if img.mode != "L":
                img = img.convert("L")
            return np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode map image ({exc})") from exc
