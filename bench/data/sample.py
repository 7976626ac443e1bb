"""The Sample contract every loader produces (docs/design.md, "Sample").

Coordinates are always x = column, y = row, 0-based pixels; loaders convert into this once, at
the edge, and nothing downstream converts again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# The label of a target that stands for "the model's own top prediction": gaze datasets have no
# class, so their one target per image carries this label, and a model's class map resolves it
# to every output (the engine then picks the highest logit per image).
TOP1 = "<top-1>"


@dataclass
class Target:
    """One dataset class present in an image, with everything known about where it is.

    label: dataset class name (e.g. ``"boat"``).
    mask: bool HxW, union of the class's instance masks, or of its boxes where only boxes exist.
    instances: bool KxHxW, one mask per instance where the data has them (else None).
    boxes: float Nx4 xyxy pixels (x0, y0 exclusive-right x1, y1), may be empty.
    difficult: the dataset's own difficulty annotation (VOC's ``<difficult>``), False where it
      has none. Not the pointing game's "difficult" subset, which the scoring core computes per
      row (:func:`bench.data.annotations.pointing_difficult`).
    context: context-region name -> bool HxW mask (e.g. ``{"water": ...}`` for a boat); only
      regions present in the image, and only pairs named by the dataset's manifest.
    """

    label: str
    mask: torch.Tensor
    instances: torch.Tensor | None = None
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4)))
    difficult: bool = False
    context: dict[str, torch.Tensor] = field(default_factory=dict)

    def context_union(self) -> torch.Tensor:
        """Union of all context regions (all-false if there are none)."""
        out = torch.zeros_like(self.mask)
        for region in self.context.values():
            out |= region
        return out


@dataclass
class Sample:
    """One image and its ground truth.

    image: float 3xHxW in [0, 1] at original resolution.
    fixations: float Nx2 (x = column, y = row, 0-based) for gaze data, else None.
    density: float HxW fixation density where the dataset gives one, else None.
    other_fixations: float Mx2 (x, y as above) fixations pooled from other images of the same
      dataset, rescaled to this image's size: the negatives of shuffled AUC; else None.
    """

    image: torch.Tensor
    image_id: str
    targets: list[Target] = field(default_factory=list)
    fixations: torch.Tensor | None = None
    density: torch.Tensor | None = None
    other_fixations: torch.Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original image."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])


@dataclass(frozen=True)
class DroppedImage:
    """An image of the split that a loader leaves out (no target, a broken record), and why.
    Loaders list them in ``dataset.dropped``; a run records each in ``skipped.jsonl``, so every
    image of the split is either scored or counted with its reason. ``reason`` starts with its
    kind (the footer groups by the text before the first ':') and names the file and record."""

    image_id: str
    reason: str
