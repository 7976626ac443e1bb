"""Erasing cascades: attribute, erase what the map highlighted, attribute again (adversarial
erasing: Wei et al., "Object Region Mining with Adversarial Erasing", CVPR 2017; Zhang et al.,
ACoL, CVPR 2018), as a wrapper around any registered method.

A classifier often stops looking once it has enough evidence: its map covers the most
discriminative part of a large object, or one of several objects. Erasing that part from the
input and asking again uncovers the evidence the model holds in reserve.

The cascade, for ``steps`` = S, on the inputs x (model input space) and each image's target:

1. step k = 0 .. S-1 attributes the current input x_k with the base method: map m_k (h x w,
   the base method's own resolution);
2. *normalisation*: n_k = m_k / max(m_k over the live pixels), where the live pixels are the
   ones not yet erased (all of them at step 0); a map with no positive live value contributes
   nothing (at step 0 it is returned unchanged);
3. *combination*: C_k = the element-wise maximum of C_{k-1} and n_k on live pixels (C_0 = n_0);
   erased pixels keep the value that had them erased. A later step counts only while the model
   still recognises the target in what is left: the target's softmax probability on x_k must be
   at least ``min_prob`` (default 0.5), else the cascade stops for that image (Wei et al. stop
   mining once the classifier no longer recognises the class). Without this rule a step after
   the whole object is gone would normalise background noise up to 1;
4. *erasing*: the input pixels where C_k, resized to the input bilinearly (as the engine resizes
   maps), reaches ``threshold`` are replaced by the fill, giving x_{k+1}; erased regions only
   grow, and the fill always comes from the original input.

The method's map is C_{S-1}. With ``steps = 1`` it is the base method's map divided by its
maximum (where that is positive), bit for bit: ``tests/test_methods_erasing.py`` pins it.

Fills (model input units): ``"mean"`` each image's per-channel mean over all pixels (default;
the erased part carries no structure, and no value outside the image's own range); ``"zero"``
the input value 0 (black for [0, 1] inputs, the normalisation mean for mean/std inputs);
``"blur"`` a Gaussian blur of the image (sigma = 1/16 of its shorter side), which keeps colour
but removes shape.

Seeds: step 0 hands the base method the images' own seeds, so ``steps = 1`` reproduces the
base exactly; step k > 0 derives per-image seeds from (seed, k) by hashing, so a stochastic
base draws fresh randomness at each step and an image's maps never depend on its batch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from bench.methods.base import (
    AttributionMethod,
    MethodConfigError,
    create_method,
    image_seeds,
    register_method,
)

FILLS = ("mean", "zero", "blur")


def step_seeds(seeds: Sequence[int] | None, batch: int, step: int) -> list[int] | None:
    """The seeds a cascade's ``step`` hands its base method: the images' own at step 0."""
    if step == 0:
        return None if seeds is None else [int(s) for s in seeds]
    out = []
    for s in image_seeds(seeds, batch):
        digest = hashlib.sha256(f"{s}|erase|{step}".encode()).digest()
        out.append(int.from_bytes(digest[:7], "little"))
    return out


def normalise(maps: torch.Tensor, live: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps / peak, has_peak): ``peak`` the per-map maximum over ``live`` pixels (all when
    None). Where the peak is not positive (or NaN) the map is returned unchanged and
    ``has_peak`` is False."""
    src = maps if live is None else torch.where(live, maps, torch.full_like(maps, -math.inf))
    peak = src.amax(dim=(1, 2), keepdim=True)
    ok = peak > 0
    return torch.where(ok, maps / torch.where(ok, peak, torch.ones_like(peak)), maps), ok.flatten()


def fill_values(inputs: torch.Tensor, fill: str) -> torch.Tensor:
    """What erased pixels become, B x C x H x W (see the module doc)."""
    if fill == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if fill == "zero":
        return torch.zeros_like(inputs)
    if fill == "blur":
        return gaussian_blur(inputs, max(1.0, min(inputs.shape[-2:]) / 16))
    raise MethodConfigError(f"erase: unknown fill {fill!r} (use one of {FILLS})")


def gaussian_blur(inputs: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, reflected borders), per channel."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, min(inputs.shape[-2:]) - 1) or 1
    x = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = inputs.shape[1]
    out = F.pad(inputs, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass
class Cascade:
    """Everything a cascade computed: per step the normalised map n_k (h x w, before masking),
    the live pixels it was normalised over, whether it counted (B bool: the model still gave
    the target ``min_prob`` on x_k) and that probability (B; 1 at step 0, where it is not
    asked); the input-resolution erased region after each step; and the combined map (the
    method's output)."""

    steps: list[torch.Tensor]
    live: list[torch.Tensor]
    counted: list[torch.Tensor]
    probability: list[torch.Tensor]
    erased: list[torch.Tensor]
    combined: torch.Tensor


def erasing_cascade(
    base: AttributionMethod,
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    threshold: float,
    fill: str,
    min_prob: float = 0.5,
    seeds: Sequence[int] | None = None,
) -> Cascade:
    """Run the cascade of the module doc with ``base`` (batched: every image at once)."""
    b, _, h, w = inputs.shape
    fills = fill_values(inputs, fill)
    x = inputs
    erased = torch.zeros((b, 1, h, w), dtype=torch.bool, device=inputs.device)
    active = torch.ones(b, dtype=torch.bool, device=inputs.device)
    combined: torch.Tensor | None = None
    out = Cascade([], [], [], [], [], inputs.new_empty(0))
    for k in range(steps):
        maps = base(model, x, targets, seeds=step_seeds(seeds, b, k))
        if combined is None:
            live = torch.ones(maps.shape, dtype=torch.bool, device=maps.device)
            norm, _ = normalise(maps)
            combined = norm
            prob = torch.ones(b, device=inputs.device)
        else:
            with torch.no_grad():
                prob = model(x).float().softmax(dim=1).gather(1, targets[:, None]).squeeze(1)
            # Once the model no longer sees the target in what is left, the image is done.
            active = active & (prob >= min_prob)
            live = combined < threshold
            norm, has_peak = normalise(maps, live)
            take = live & (has_peak & active)[:, None, None]
            combined = torch.where(take, torch.maximum(combined, norm), combined)
        out.steps.append(norm)
        out.live.append(live)
        out.counted.append(active.clone())
        out.probability.append(prob)
        if k + 1 < steps:
            up = F.interpolate(combined[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)
            erased = erased | (up >= threshold)
            x = torch.where(erased, fills, inputs)
        out.erased.append(erased[:, 0])
    out.combined = combined
    return out


@register_method
class ErasingCascade(AttributionMethod):
    """Adversarial erasing around any registered method (see the module doc): ``base`` names
    it, ``base_params`` holds its parameters; ``steps`` attributions, each on the input with
    every pixel the combined map so far reaches ``threshold`` on (a fraction of the peak)
    replaced by ``fill``; map = the element-wise maximum of the per-step maps, each divided by
    its maximum over the pixels not yet erased; a later step counts while the model still gives
    the target ``min_prob`` softmax probability on the erased input. Deterministic when the base
    is; a stochastic base gets the image's seed at step 0 and seeds derived from it after."""

    name = "erase"
    family = "perturbation"
    defaults: dict[str, Any] = {
        "base": "gradcam",
        "base_params": {},
        "steps": 3,
        "threshold": 0.5,
        "fill": "mean",
        "min_prob": 0.5,
    }
    choices = {"fill": FILLS}
    description = "erasing cascade (adversarial erasing, Wei et al. CVPR 2017) around any method: erase, attribute again, max"

    def __init__(self, **params: Any):
        super().__init__(**params)
        steps, threshold = self.params["steps"], self.params["threshold"]
        if steps < 1:
            raise MethodConfigError(f"method 'erase' parameter 'steps' must be >= 1, got {steps}")
        if not 0.0 < float(threshold) <= 1.0:
            raise MethodConfigError(f"method 'erase' parameter 'threshold' must lie in (0, 1], got {threshold}")
        if not 0.0 <= float(self.params["min_prob"]) <= 1.0:
            raise MethodConfigError(f"method 'erase' parameter 'min_prob' must lie in [0, 1], got {self.params['min_prob']}")
        base = self.params["base"]
        if base == self.name:
            raise MethodConfigError("method 'erase' cannot wrap itself")
        try:
            self.base = create_method(base, **dict(self.params["base_params"]))
        except KeyError as exc:
            raise MethodConfigError(f"method 'erase' parameter 'base': {exc}") from exc
        except MethodConfigError as exc:
            raise MethodConfigError(f"method 'erase' base_params: {exc}") from exc
        # What the cascade needs follows from the method it wraps.
        self.needs_grad = self.base.needs_grad
        self.stochastic = self.base.stochastic

    @property
    def label(self) -> str:
        """``erase[base=<base label>,...]``: the base's own label (with its parameters) nested,
        then the cascade's parameters the user set."""
        shown = {
            k: v for k, v in self.user_params.items() if k not in self.execution_params | {"base", "base_params"}
        }
        parts = [f"base={self.base.label}"] + [f"{k}={_fmt(v)}" for k, v in sorted(shown.items())]
        return f"{self.name}[{','.join(parts)}]"

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["base"] = self.base.describe()
        return out

    def with_model_defaults(self, target_layer: str | None) -> "ErasingCascade":
        bound_base = self.base.with_model_defaults(target_layer)
        if bound_base is self.base:
            return self
        bound = type(self)(**self.user_params)
        bound.base = bound_base
        return bound

    def attribute(self, model, inputs, targets, *, seeds=None):
        return erasing_cascade(
            self.base,
            model,
            inputs,
            targets,
            steps=int(self.params["steps"]),
            threshold=float(self.params["threshold"]),
            fill=str(self.params["fill"]),
            min_prob=float(self.params["min_prob"]),
            seeds=seeds,
        ).combined


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
