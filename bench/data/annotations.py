"""Helpers every annotation loader shares: reading JSON with errors that name the file, path
parameters relative to a dataset root, boxes as pixel masks, and the pointing game's one
"difficult" rule. Conventions: boxes are xyxy in pixels, pixel (c, r) covering [c, c+1) x [r, r+1)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIFFICULT_AREA_FRACTION = 0.25


class DatasetFormatError(ValueError):
    """A dataset file breaks its format; the message names the file."""


def check_limit(limit: object) -> None:
    """A loader's ``limit`` (keep the first N samples) is None or an integer >= 1."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 (or absent for the whole split), got {limit!r}")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc


def resolve(root: Path, given: str | Path | None, default: str) -> Path:
    """A path parameter: absolute as given, else relative to the dataset root."""
    path = Path(given) if given is not None else Path(default)
    return path if path.is_absolute() else root / path


def box_mask(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Union of xyxy boxes rasterised as the pixels they cover: columns floor(x0) .. ceil(x1)-1
    and rows floor(y0) .. ceil(y1)-1, clipped to the image."""
    out = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        c1, r1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
        if c1 > c0 and r1 > r0:
            out[r0:r1, c0:c1] = True
    return out


def xywh_to_xyxy(bbox: list[float]) -> list[float]:
    x, y, bw, bh = (float(v) for v in bbox)
    return [x, y, x + bw, y + bh]


def pointing_difficult(target, targets) -> bool:
    """The pointing game's "difficult" subset (TorchRay), the one difficulty rule: ``target``'s
    mask covers less than 1/4 of the image and another class is present among its sample's
    ``targets``, where a class with no ground-truth pixel is not present. The scoring core
    computes it for every row (the ``difficult`` column); loaders do not."""
    area = float(target.mask.float().mean())
    present = sum(bool(t.mask.any()) for t in targets)
    return area < DIFFICULT_AREA_FRACTION and present > 1


def check_image_size(image: torch.Tensor, h: int, w: int, path: Path, source: str) -> None:
    if tuple(image.shape[-2:]) != (h, w):
        raise DatasetFormatError(
            f"{path}: image is {image.shape[-1]}x{image.shape[-2]} (WxH) but {source} says "
            f"{w}x{h}"
        )
