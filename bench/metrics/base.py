"""Metric metadata and the registry (docs/design.md, "The metric contract").

The public metric functions (``bench.metrics.pointing_game`` and friends) are plain batched
tensor functions over ``maps`` BxHxW and bool masks BxHxW. The registry wraps each in a
:class:`MetricInfo` whose ``score(maps, truth, **params)`` takes a :class:`TruthBatch`, so the
engine can call every metric the same way and a config can name it.

Undefined values (an empty ground-truth mask, no context region in the image, a map with no
positive mass) are NaN in the registered score: the leaderboard excludes them from the mean and
reports how many there were. They are never a hit.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from bench.registry import Registry

REQUIREMENTS = ("masks", "boxes", "instances", "context", "fixations", "density")


@dataclass
class TruthBatch:
    """Ground truth for a batch of (image, target) pairs that share one image size HxW.

    masks: bool BxHxW target masks. context: bool BxHxW union of the target's context regions
    (all-false where it has none). instances: bool BxKxHxW padded with all-false masks, with
    ``instance_counts`` B. fixations: bool BxHxW fixated pixels; density: float BxHxW;
    other_fixations: bool BxHxW fixations pooled from other images (shuffled AUC negatives).
    labels: the dataset class of each row.
    """

    masks: torch.Tensor
    labels: list[str] = field(default_factory=list)
    context: torch.Tensor | None = None
    instances: torch.Tensor | None = None
    instance_counts: torch.Tensor | None = None
    fixations: torch.Tensor | None = None
    density: torch.Tensor | None = None
    other_fixations: torch.Tensor | None = None


@dataclass(frozen=True)
class MetricInfo:
    name: str
    score: Callable[..., torch.Tensor]
    higher_is_better: bool
    requires: tuple[str, ...]
    aggregate: Literal["mean", "class_mean"]
    description: str = ""

    @property
    def defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.score)
        return {
            k: p.default
            for k, p in list(sig.parameters.items())[2:]
            if p.default is not inspect.Parameter.empty
        }

    def validate_params(self, params: dict[str, Any]) -> None:
        import difflib

        for key in params:
            if key not in self.defaults:
                close = difflib.get_close_matches(key, list(self.defaults), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"metric {self.name!r} has no parameter {key!r}{hint} "
                    f"(parameters: {', '.join(self.defaults) or 'none'})"
                )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "higher_is_better": self.higher_is_better,
            "requires": list(self.requires),
            "aggregate": self.aggregate,
            "params": self.defaults,
        }


METRICS: Registry[MetricInfo] = Registry("metric", "groundbench.metrics")


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    requires: tuple[str, ...],
    aggregate: Literal["mean", "class_mean"] = "mean",
    description: str = "",
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorate ``score(maps, truth: TruthBatch, **params) -> float tensor B`` (NaN where
    undefined) to register it under ``name``."""
    bad = set(requires) - set(REQUIREMENTS)
    if bad:
        raise ValueError(f"metric {name!r}: unknown requirements {sorted(bad)}")

    def add(score: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        METRICS.add(
            name,
            MetricInfo(name, score, higher_is_better, tuple(requires), aggregate, description),
        )
        return score

    return add


def invalid_maps(maps: torch.Tensor) -> torch.Tensor:
    """B bool: the map has a NaN or Inf, or is constant (no location is preferred)."""
    flat = maps.flatten(1)
    hi, lo = flat.amax(dim=1), flat.amin(dim=1)
    return ~(torch.isfinite(hi) & torch.isfinite(lo)) | (hi == lo)


def positive_mass(maps: torch.Tensor) -> torch.Tensor:
    """The positive part of each map, with non-finite maps zeroed whole (their scores are NaN)."""
    pos = torch.clamp(maps, min=0)
    return torch.where(nonfinite_maps(maps)[:, None, None], torch.zeros_like(pos), pos)


def nan_where(values: torch.Tensor, undefined: torch.Tensor) -> torch.Tensor:
    """``values`` as floats (float32 unless already floating) with NaN where ``undefined``."""
    if not values.is_floating_point():
        values = values.float()
    return torch.where(undefined, torch.full_like(values, float("nan")), values)


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype mask and mass metrics compute in: the maps' own float32 or float64 (half
    precision is promoted to float32). torch's float32 sums are pairwise: over a 3-megapixel
    map their relative error stays near 1e-7, well inside the 1e-6 the reference tests ask,
    at a tenth of the cost of float64."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def exact_dtype(t: torch.Tensor) -> torch.dtype:
    """float64, the precision of the MIT MATLAB code the gaze metrics follow (its KL
    regulariser 2^-52 vanishes in float32); float32 on MPS, which has no float64."""
    return torch.float32 if t.device.type == "mps" else torch.float64


def nonfinite_maps(maps: torch.Tensor) -> torch.Tensor:
    """B bool: the map holds a NaN or +-Inf (every continuous score is NaN there). Two
    reductions and no temporary: max and min propagate NaN, and an Inf is an extreme."""
    flat = maps.flatten(1)
    return ~(torch.isfinite(flat.amax(dim=1)) & torch.isfinite(flat.amin(dim=1)))


def constant_maps(maps: torch.Tensor) -> torch.Tensor:
    """B bool: every value of the map is equal (all-zero maps included). False for a map
    holding NaN, which :func:`nonfinite_maps` reports."""
    flat = maps.flatten(1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def empty_masks(masks: torch.Tensor) -> torch.Tensor:
    """B bool: the mask has no true pixel."""
    return ~masks.flatten(1).any(dim=1)


def mass_fraction(maps: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mass inside ``region`` / total positive mass, undefined) per map, summed in
    :func:`work_dtype`. Undefined where the map has no positive mass or a NaN; callers also
    mark maps holding +-Inf undefined."""
    pos = maps.flatten(1).to(work_dtype(maps)).clamp(min=0)
    total = pos.sum(dim=1)
    inside = torch.where(region.flatten(1), pos, torch.zeros_like(pos)).sum(dim=1)
    undefined = ~(total > 0)  # NaN totals included: the caller marks NaN/Inf maps undefined
    return inside / torch.where(undefined, torch.ones_like(total), total), undefined


def require(truth: TruthBatch, field_name: str, metric: str) -> torch.Tensor:
    """The ground truth a registered metric needs, or a clear error naming what is missing."""
    value = getattr(truth, field_name)
    if value is None:
        raise ValueError(f"metric {metric!r} needs truth.{field_name}, but the batch has none")
    return value


def check_pair(maps: torch.Tensor, masks: torch.Tensor, what: str = "masks") -> None:
    if maps.ndim != 3:
        raise ValueError(f"maps must be BxHxW, got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be a float tensor, got {maps.dtype}")
    if masks.shape != maps.shape:
        raise ValueError(f"{what} shape {tuple(masks.shape)} != maps shape {tuple(maps.shape)}")
    if masks.dtype != torch.bool:
        raise TypeError(f"{what} must be bool, got {masks.dtype}")
    if masks.device != maps.device:
        raise ValueError(f"{what} on {masks.device} but maps on {maps.device}")
