"""Class sensitivity on real photos: is the map of class A on A, and not on the image's class B?

On an image with two or more scored classes, each class A's map is scored against its own mask
and against every other class B's mask, with the pointing game and mass accuracy. A
class-sensitive method scores well on A and badly on B; a map that ignores the class (a saliency
detector, an edge map) scores the same on both. The gap own - other is the class sensitivity.

Conventions (pinned by tests):

- Pairs are ordered: an image with classes {dog, cat, boat} gives 6 pairs (A, B). Only scored
  targets take part (a class the model cannot represent, skipped by the run, is neither A
  nor B).
- "B's mask" is B's pixels that are not A's (``mask_B & ~mask_A``): where the classes overlap
  (a cup held in a hand), a pixel is evidence for A too and must not count against A's map.
  If B lies wholly inside A, nothing is left: that pair's "other" scores are NaN (excluded and
  counted, like every empty mask).
- The pointing game keeps its conventions (:func:`bench.metrics.pointing_game`: argmax, strict
  ``<`` tolerance at the maps' resolution, a constant or non-finite map a miss); mass accuracy
  is :func:`bench.metrics.mass_accuracy` (NaN without positive mass).
- Maps and masks are at the image's original resolution (the run's scoring resolution), so the
  "own" scores equal the run's own pointing-game and mass-accuracy scores of those rows.
"""

from __future__ import annotations

from typing import Sequence

import torch

from bench.metrics import mass_accuracy, pointing_game

COLUMNS = ("pointing_own", "pointing_other", "mass_own", "mass_other")
# Pairs scored at once: bounds memory to CHUNK maps of the image's size.
CHUNK = 16


def cross_class_pairs(images: Sequence[object], labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """Ordered pairs (a, b) of row indices with the same image and different labels, in row
    order (a major). ``images[i]``: row i's image (any hashable id); ``labels[i]``: its class."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} image ids but {len(labels)} labels")
    by_image: dict[object, list[int]] = {}
    for i, img in enumerate(images):
        by_image.setdefault(img, []).append(i)
    first, second = [], []
    for a, img in enumerate(images):
        for b in by_image[img]:
            if b != a and labels[b] != labels[a]:
                first.append(a)
                second.append(b)
    return first, second


def class_sensitivity(
    maps: torch.Tensor,
    masks: torch.Tensor,
    pairs: tuple[Sequence[int], Sequence[int]],
    tolerance: float = 15.0,
) -> dict[str, torch.Tensor]:
    """Scores of each pair (a, b): the map of row a against its own mask and against row b's
    mask outside row a's. ``maps`` float N x H x W, ``masks`` bool N x H x W (one image size).
    Returns :data:`COLUMNS` -> float P (NaN where undefined), on the maps' device."""
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps and masks must be N x H x W of one shape, got {tuple(maps.shape)}, {tuple(masks.shape)}")
    a_idx, b_idx = (torch.as_tensor(list(p), dtype=torch.long) for p in pairs)
    if a_idx.shape != b_idx.shape:
        raise ValueError("pairs must be two index lists of one length")
    n = int(a_idx.shape[0])
    out = {c: torch.empty(n, device=maps.device) for c in COLUMNS}
    nan = torch.tensor(float("nan"), device=maps.device)
    for start in range(0, n, CHUNK):
        a = a_idx[start : start + CHUNK].to(maps.device, non_blocking=True)
        b = b_idx[start : start + CHUNK].to(maps.device, non_blocking=True)
        m, own = maps[a], masks[a]
        other = masks[b] & ~own
        sl = slice(start, start + CHUNK)
        own_empty = ~own.flatten(1).any(dim=1)
        other_empty = ~other.flatten(1).any(dim=1)
        out["pointing_own"][sl] = torch.where(own_empty, nan, pointing_game(m, own, tolerance).float())
        out["pointing_other"][sl] = torch.where(other_empty, nan, pointing_game(m, other, tolerance).float())
        out["mass_own"][sl] = mass_accuracy(m, own).float()
        out["mass_other"][sl] = mass_accuracy(m, other).float()
    return out
