"""The metric contract and the metric registry (docs/design.md, "The metric contract").

A metric is a plain batched tensor function ``fn(maps, *required, **params) -> B`` over maps
BxHxW (float, at the images' original resolution) and ground truth on the same device, with its
conventions (ties, tolerance, NaN and empty-mask policy, normalisation) in its docstring and
pinned by a test. :func:`register_metric` registers it with its metadata; the registry's
:class:`MetricInfo` is what configs name and what the scoring core calls, always the same way:
``info.score(maps, truth, stats=..., model=..., **params)``.

What a metric may ask for (``requires``), each handed to ``fn`` positionally in the order given,
after ``maps``:

- truth fields of a :class:`TruthBatch`: ``masks`` (bool BxHxW, the target), ``instances``
  (bool BxKxHxW), ``context`` (bool BxHxW, union of the target's context regions, all-false where
  it has none), ``fixations`` and ``other_fixations`` (bool BxHxW fixated pixels of this image /
  of other images), ``density`` (float BxHxW). The scoring core builds only the fields some
  metric of the run requires.
- ``model``: a :class:`ModelAccess` for the rows: the model, each row's model input and target
  output, and :meth:`ModelAccess.scores`, which runs the extra forward passes a faithfulness
  metric needs in batches. A metric that requires the model cannot score saved maps.

and, besides ``requires``: a keyword-only parameter ``stats`` receives the group's
:class:`MapStats`, per-map intermediates (positive mass, its total, argmax, validity, per-mask
sums) computed once per group of maps and shared by every metric that asks for them. The
remaining parameters (with defaults) are the metric's own, set per config column.

What the contract guarantees of every registered score: float, one value per row; NaN where
undefined, including every row whose target mask is empty for a metric that requires ``masks``
and every +-Inf (a mean over rows cannot hold one); the leaderboard excludes NaN rows from the
mean and reports how many there were. An undefined row is never a hit.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ContextManager, Literal

import torch

from bench.registry import Registry, check_params

TRUTH_FIELDS = ("masks", "instances", "context", "fixations", "other_fixations", "density")
MODEL = "model"
REQUIREMENTS = (*TRUTH_FIELDS, MODEL)
STATS = "stats"  # the keyword-only parameter that receives the shared MapStats


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
    _empty: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def require(self, name: str, metric: str) -> torch.Tensor:
        """The truth field ``name`` a metric requires, or a clear error naming what is missing.
        ``context`` absent is no context anywhere: all-false, not an error."""
        value = getattr(self, name)
        if value is None and name == "context":
            return torch.zeros_like(self.masks)
        if value is None:
            raise ValueError(f"metric {metric!r} needs truth.{name}, but the batch has none")
        return value

    def empty_masks(self) -> torch.Tensor:
        """B bool: the target mask has no true pixel (computed once per batch)."""
        if self._empty is None:
            self._empty = empty_masks(self.masks)
        return self._empty


@dataclass
class ModelAccess:
    """What a metric that requires ``"model"`` receives for its rows: ``module`` (eval mode, on
    the maps' device), ``inputs`` (B x C x h x w, each row's preprocessed model input),
    ``targets`` (long B, each row's model output). :meth:`scores` runs forward passes on
    modified inputs in chunks of ``chunk`` under ``no_grad`` and the run's ``autocast``, so a
    metric states its perturbations for all rows at once and the passes are batched here.
    ``to_input``: takes maps at the images' original resolution (what a metric receives) into
    the model's input space by the same resize and crop as the image
    (:meth:`bench.models.input_space.InputSpace.maps`); :meth:`input_maps` applies it."""

    module: torch.nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    chunk: int = 64
    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    to_input: Callable[[torch.Tensor], torch.Tensor] | None = None

    def input_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps BxHxW (original resolution) -> Bxhxw on the model input's pixels: ``to_input``,
        or, without one, a bilinear resize to the input's size (exact only for a preprocessing
        that resizes without cropping)."""
        if self.to_input is not None:
            return self.to_input(maps)
        size = tuple(self.inputs.shape[-2:])
        if tuple(maps.shape[-2:]) == size:
            return maps
        return torch.nn.functional.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]

    def rows(self, index: torch.Tensor | None) -> "ModelAccess":
        """The access for a subset of the rows (``index`` long, or None: all)."""
        if index is None:
            return self
        return ModelAccess(self.module, self.inputs[index], self.targets[index], self.chunk, self.autocast, self.to_input)

    @torch.no_grad()
    def scores(self, inputs: torch.Tensor, rows: torch.Tensor, *, softmax: bool = False) -> torch.Tensor:
        """Target score (logit, or probability with ``softmax``) of each of N inputs
        (N x C x h x w), input n scored at the target of row ``rows[n]``: float N."""
        out = torch.empty(inputs.shape[0], device=inputs.device, dtype=torch.float32)
        for start in range(0, inputs.shape[0], max(1, int(self.chunk))):
            sl = slice(start, min(start + max(1, int(self.chunk)), inputs.shape[0]))
            with self.autocast():
                logits = self.module(inputs[sl])
            logits = logits.float().softmax(dim=1) if softmax else logits.float()
            out[sl] = logits.gather(1, self.targets[rows[sl]][:, None]).squeeze(1)
        return out


class MapStats:
    """Per-map intermediates of one group of maps (BxHxW), each computed on first use and kept,
    so every metric of the group that takes ``stats`` shares one computation. Each is exactly
    the expression a metric computes without it (same dtype, same reduction), so a score never
    depends on whether it was shared."""

    def __init__(self, maps: torch.Tensor):
        self.maps = maps
        self._inside: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @cached_property
    def extremes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(max, min) of each map; NaN propagates."""
        flat = self.maps.flatten(1)
        return flat.amax(dim=1), flat.amin(dim=1)

    @cached_property
    def nonfinite(self) -> torch.Tensor:
        """B bool: :func:`nonfinite_maps`."""
        hi, lo = self.extremes
        return ~(torch.isfinite(hi) & torch.isfinite(lo))

    @cached_property
    def invalid(self) -> torch.Tensor:
        """B bool: :func:`invalid_maps` (NaN/Inf, or constant)."""
        hi, lo = self.extremes
        return self.nonfinite | (hi == lo)

    @cached_property
    def argmax(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, x) of each map's maximum: :func:`argmax_points`."""
        return argmax_points(self.maps)

    @cached_property
    def positive(self) -> torch.Tensor:
        """B x HW: the maps' positive part in :func:`work_dtype` (NaN stays NaN), each map whose
        sum could overflow rescaled by a power of two (:func:`without_overflow`; every other map
        is multiplied by exactly 1.0)."""
        return without_overflow(self.maps.flatten(1).to(work_dtype(self.maps)).clamp(min=0))

    @cached_property
    def positive_total(self) -> torch.Tensor:
        """B: total positive mass."""
        return self.positive.sum(dim=1)

    def positive_inside(self, region: torch.Tensor) -> torch.Tensor:
        """B: positive mass inside ``region`` (bool BxHxW), kept per region tensor."""
        key = id(region)
        if key not in self._inside or self._inside[key][0] is not region:
            pos = self.positive
            self._inside[key] = (region, torch.where(region.flatten(1), pos, torch.zeros_like(pos)).sum(dim=1))
        return self._inside[key][1]


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric: its function ``fn`` and metadata. ``alias_of``: the registered
    name whose number this one is (computed by the same function)."""

    name: str
    fn: Callable[..., torch.Tensor]
    higher_is_better: bool
    requires: tuple[str, ...]
    aggregate: Literal["mean", "class_mean"]
    description: str = ""
    alias_of: str | None = None
    # Checks parameter values (raises ValueError); run with the config, before anything runs.
    check: Callable[[dict[str, Any]], None] | None = None

    @property
    def uses_stats(self) -> bool:
        p = inspect.signature(self.fn).parameters.get(STATS)
        return p is not None and p.kind is inspect.Parameter.KEYWORD_ONLY

    @property
    def defaults(self) -> dict[str, Any]:
        """The metric's own parameters and their defaults (``maps``, the bound requirements
        and ``stats`` excluded)."""
        params = list(inspect.signature(self.fn).parameters.values())[1 + len(self.requires):]
        return {p.name: p.default for p in params if p.name != STATS and p.default is not inspect.Parameter.empty}

    def validate_params(self, params: dict[str, Any]) -> None:
        check_params(f"metric {self.name!r}", params, self.defaults)

        if self.check is not None:
            try:
                self.check({**self.defaults, **params})
            except ValueError as exc:
                raise ValueError(f"metric {self.name!r}: {exc}") from exc

    def score(
        self,
        maps: torch.Tensor,
        truth: TruthBatch,
        *,
        stats: MapStats | None = None,
        model: ModelAccess | None = None,
        **params: Any,
    ) -> torch.Tensor:
        """The metric on ``maps`` against ``truth``: float B, NaN where undefined (module doc)."""
        args = []
        for need in self.requires:
            if need == MODEL:
                if model is None:
                    raise ValueError(f"metric {self.name!r} needs the model, but none is given (saved maps have none)")
                args.append(model)
            else:
                args.append(truth.require(need, self.name))
        if self.uses_stats:
            params = {**params, STATS: stats if stats is not None else MapStats(maps)}
        values = self.fn(maps, *args, **params)
        undefined = ~torch.isfinite(values) if values.is_floating_point() else torch.zeros_like(values, dtype=torch.bool)
        if "masks" in self.requires:
            undefined = undefined | truth.empty_masks()
        return nan_where(values, undefined)

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
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorate a metric function ``fn(maps, *required, **params) -> B`` (module doc) to
    register it under ``name``; ``fn`` itself is returned unchanged. ``check(params)`` raises
    ValueError for parameter values out of range; configs run it before anything runs."""
    bad = set(requires) - set(REQUIREMENTS)
    if bad:
        raise ValueError(f"metric {name!r}: unknown requirements {sorted(bad)} (known: {', '.join(REQUIREMENTS)})")

    def add(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        positional = [
            p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(positional) < 1 + len(requires):
            raise ValueError(f"metric {name!r}: {fn.__name__} must take maps and then one argument per requirement {requires}")
        METRICS.add(name, MetricInfo(name, fn, higher_is_better, tuple(requires), aggregate, description, check=check))
        return fn

    return add


def register_alias(name: str, of: str, description: str) -> MetricInfo:
    """Register ``name`` as another name for the registered metric ``of``: the same function and
    metadata (so the same number), under its own name in configs and tables."""
    base = METRICS.get(of)
    info = MetricInfo(name, base.fn, base.higher_is_better, base.requires, base.aggregate, description, alias_of=of, check=base.check)
    METRICS.add(name, info)
    return info


def argmax_points(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x) of each map's maximum. Ties go to the first maximum in row-major order (smallest
    row, then smallest column), as ``torch.argmax`` documents."""
    b, h, w = maps.shape
    # A map holding NaN is invalid (a miss) wherever its argmax lands, so NaN needs no care.
    idx = maps.flatten(1).argmax(dim=1)
    return idx // w, idx % w


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


def without_overflow(pos: torch.Tensor) -> torch.Tensor:
    """Non-negative ``pos`` (B x N) with each row whose sum could overflow its dtype (peak x N
    beyond half the largest finite value: a float32 map with values near 3e38) divided by a
    power of two that brings it back in range. A ratio of two sums over the row is unchanged,
    and a power of two scales exactly; every other row is multiplied by exactly 1.0, so its
    scores stay bit-identical. NaN/Inf rows are left as they are (their scores are NaN)."""
    limit = torch.finfo(pos.dtype).max / 2 / max(pos.shape[1], 1)
    exponent = torch.ceil(torch.log2(pos.amax(dim=1) / limit)).clamp(min=0)
    exponent = torch.where(torch.isfinite(exponent), exponent, torch.zeros_like(exponent))
    return pos * torch.exp2(-exponent)[:, None]


def mass_fraction(maps: torch.Tensor, region: torch.Tensor, stats: MapStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mass inside ``region`` / total positive mass, undefined) per map, summed in
    :func:`work_dtype` (``stats``: the shared intermediates of ``maps``). Undefined where the map
    has no positive mass or a NaN; callers also mark maps holding +-Inf undefined. Maps large
    enough to overflow the sum are rescaled first (:attr:`MapStats.positive`)."""
    stats = stats if stats is not None else MapStats(maps)
    total = stats.positive_total
    inside = stats.positive_inside(region)
    undefined = ~(total > 0)  # NaN totals included: the caller marks NaN/Inf maps undefined
    return inside / torch.where(undefined, torch.ones_like(total), total), undefined


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
