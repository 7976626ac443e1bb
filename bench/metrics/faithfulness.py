"""Faithfulness: does the model's output follow the map? Deletion and insertion curves (Petsiuk
et al., RISE, BMVC 2018) and average drop / increase in confidence (Chattopadhyay et al.,
Grad-CAM++, WACV 2018).

Unlike the grounding metrics these ask nothing of the ground truth; they re-run the model on
copies of its input edited in the order of the map. So they are functions of
``(model, inputs, maps, targets)``:

- ``inputs``: Bx3xhxw model inputs (after preprocessing), on the model's device;
- ``maps``: float Bxhxw maps **in the model's input space**. In a run, the map at the
  original image's resolution is taken there by the same resize and crop as the image
  (:meth:`bench.models.input_space.InputSpace.maps`): the pixel a map value sits on is the
  pixel the model sees;
- ``targets``: long B, the output each map explains (the same index the method was asked for).

Scores are the target's **softmax probability** (over all outputs, in float32). Every forward
pass is batched over the maps (chunks of at most ``max_batch`` images), under
``torch.no_grad``; nothing is copied to the host.

Shared conventions:

- Pixel order: pixels sorted by map value, most relevant (largest) first; ties go to the lower
  row-major index (a stable sort), so a result never depends on the sort's implementation.
  The map's raw values are used (negative values are least relevant); a pixel is removed or
  revealed in all three channels at once.
- Undefined (NaN, counted by the leaderboard, never a score): a map holding NaN or +-Inf, and
  a constant map (all-zero included), which orders no pixel before another.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from bench.interventions import DEFAULT_BLUR_SIGMA, blur_pixels, forward_in_chunks, gaussian_blur, target_scores
from bench.metrics.base import MODEL, ModelAccess, constant_maps, nonfinite_maps, register_metric

# (edited inputs N x 3 x h x w, rows long N) -> the target probability of row rows[n] on input n.
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def module_scorer(model: torch.nn.Module, targets: torch.Tensor, max_batch: int) -> Scorer:
    """A :data:`Scorer` that runs ``model`` in chunks of ``max_batch`` (the plain functions)."""

    def score(inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return target_scores(forward_in_chunks(model, inputs, max_batch), targets[rows])[0]

    return score


def access_scorer(model: ModelAccess) -> Scorer:
    """A :data:`Scorer` through the run's :class:`~bench.metrics.base.ModelAccess` (its chunks
    and autocast): what the registered metrics use in a run."""
    return lambda inputs, rows: model.scores(inputs, rows, softmax=True)

BASELINES = ("zero", "mean", "blur")
DEFAULT_STEPS = 20


def _check(inputs: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be Bx3xhxw model inputs, got shape {tuple(inputs.shape)}")
    if maps.shape != (inputs.shape[0], *inputs.shape[2:]):
        raise ValueError(
            f"maps {tuple(maps.shape)} must be in the model's input space, Bxhxw = "
            f"{(inputs.shape[0], *inputs.shape[2:])}"
        )
    if targets.shape != (inputs.shape[0],):
        raise ValueError(f"targets must be long B = {inputs.shape[0]}, got {tuple(targets.shape)}")


def undefined_maps(maps: torch.Tensor) -> torch.Tensor:
    """B bool: NaN/Inf or constant maps (no order of pixels)."""
    return nonfinite_maps(maps) | constant_maps(maps)


def baseline_inputs(inputs: torch.Tensor, baseline: str | torch.Tensor, blur_sigma: float = DEFAULT_BLUR_SIGMA) -> torch.Tensor:
    """What a removed pixel becomes, Bx3xhxw in input space:

    - ``"zero"``: 0 in the model's input space, i.e. the normalisation's mean colour (for an
      ImageNet-normalised model the dataset's mean colour; for the harbor nets, which take
      [0, 1] images as drawn, black). Petsiuk et al.'s deletion substrate.
    - ``"mean"``: the image's own mean colour (per channel, over the whole input).
    - ``"blur"``: a Gaussian blur of the input (:func:`bench.interventions.gaussian_blur`,
      standard deviation ``blur_sigma`` of the shorter side). Petsiuk et al.'s insertion
      substrate (they blur with a 11-pixel kernel, sigma 5, at 224 px).
    - a tensor broadcastable to the inputs: used as is.
    """
    if isinstance(baseline, torch.Tensor):
        return baseline.to(inputs.device, inputs.dtype).expand_as(inputs)
    if baseline == "zero":
        return torch.zeros_like(inputs)
    if baseline == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if baseline == "blur":
        return gaussian_blur(inputs, blur_pixels(blur_sigma, inputs.shape[2:]))
    raise ValueError(f"unknown baseline {baseline!r}; choose from {list(BASELINES)} or pass a tensor")


def relevance_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Long Bx(h*w): each pixel's position in the removal order (0 = most relevant), by map value
    descending, ties to the lower row-major index."""
    flat = maps.flatten(1)
    order = torch.sort(-flat.float(), dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=maps.device).expand_as(order))
    return ranks


def step_counts(n_pixels: int, steps: int) -> list[int]:
    """Pixels removed (or revealed) after step k = 0..steps: ``floor(k * n_pixels / steps)``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [(k * n_pixels) // steps for k in range(steps + 1)]


@torch.no_grad()
def _curve(model, inputs, maps, targets, *, steps, baseline, blur_sigma, max_batch, insert: bool) -> torch.Tensor:
    _check(inputs, maps, targets)
    return curve_with(module_scorer(model, targets, max(max_batch, inputs.shape[0])), inputs, maps, steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=max_batch, insert=insert)


@torch.no_grad()
def curve_with(score: Scorer, inputs, maps, *, steps, baseline, blur_sigma, max_batch, insert: bool) -> torch.Tensor:
    """The deletion (``insert=False``) or insertion curve of each map, Bx(steps+1), its forward
    passes made by ``score`` (:func:`deletion_curve`, :func:`insertion_curve`)."""
    b, c, h, w = inputs.shape
    base = baseline_inputs(inputs, baseline, blur_sigma)
    ranks = relevance_ranks(maps).view(b, 1, h, w)
    counts = step_counts(h * w, steps)
    # Steps go through the model in groups of whole batches (at most max_batch images a pass);
    # only one group of edited copies is in memory at a time.
    per_pass = max(1, int(max_batch) // max(b, 1))
    probs = []
    for start in range(0, len(counts), per_pass):
        group = counts[start : start + per_pass]
        edited = []
        for n in group:
            chosen = ranks < n  # the n most relevant pixels
            edited.append(torch.where(chosen, inputs, base) if insert else torch.where(chosen, base, inputs))
        rows = torch.arange(b, device=inputs.device).repeat(len(group))
        probs.append(score(torch.cat(edited), rows).view(len(group), b))
    curve = torch.cat(probs).T  # B x (steps + 1)
    return torch.where(undefined_maps(maps)[:, None], torch.full_like(curve, math.nan), curve)


def deletion_curve(model, inputs, maps, targets, *, steps: int = DEFAULT_STEPS, baseline: str | torch.Tensor = "mean", blur_sigma: float = DEFAULT_BLUR_SIGMA, max_batch: int = 256) -> torch.Tensor:
    """Bx(steps+1): the target's probability after the ``floor(k * h * w / steps)`` most relevant
    pixels (k = 0..steps) are replaced by the ``baseline`` (:func:`baseline_inputs`); point 0 is
    the original input, point ``steps`` the baseline alone. NaN rows for undefined maps."""
    return _curve(model, inputs, maps, targets, steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=max_batch, insert=False)


def insertion_curve(model, inputs, maps, targets, *, steps: int = DEFAULT_STEPS, baseline: str | torch.Tensor = "blur", blur_sigma: float = DEFAULT_BLUR_SIGMA, max_batch: int = 256) -> torch.Tensor:
    """Bx(steps+1): the target's probability when only the ``floor(k * h * w / steps)`` most
    relevant pixels of the input are shown on the ``baseline``; point 0 is the baseline alone,
    point ``steps`` the original input. NaN rows for undefined maps."""
    return _curve(model, inputs, maps, targets, steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=max_batch, insert=True)


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under Bx(K+1) curves over the removed fraction 0, 1/K, ..., 1 by the trapezoidal
    rule: ``(sum(points) - (first + last) / 2) / K``, in [0, 1] for probabilities."""
    k = curve.shape[1] - 1
    return (curve.sum(dim=1) - (curve[:, 0] + curve[:, -1]) / 2) / k


def deletion(model, inputs, maps, targets, *, steps: int = DEFAULT_STEPS, baseline: str | torch.Tensor = "mean", blur_sigma: float = DEFAULT_BLUR_SIGMA, max_batch: int = 256) -> torch.Tensor:
    """Deletion AUC (Petsiuk et al. 2018), float B in [0, 1], **lower is better**: the area
    under :func:`deletion_curve` over the deleted fraction of pixels, trapezoidal rule. A
    faithful map deletes the evidence first, so the probability falls early.

    ``steps + 1`` forward passes per map (default 20 steps: 5% of the pixels a step).

    Conventions and where others differ:

    - The curve starts at the unedited input (fraction 0) and ends at the baseline alone
      (fraction 1); the x axis is the fraction of pixels, so the AUC is in [0, 1] whatever the
      step count. Quantus's ``PixelFlipping`` records no point for the unedited input, counts
      features per channel (``features_in_step`` of 3 channels x k pixels removes k pixels when
      the three channel values of a pixel tie, as they do for a 2-D map broadcast over
      channels) and integrates with ``np.trapz(dx=1)``: its curve equals points 1..steps of
      ours and its AUC is ``steps`` times the trapezoid over those points (pinned by
      ``tests/test_faithfulness.py``). Quantus's ``"black"`` baseline is the input's minimum
      value; pass it as a tensor to compare.
    - Petsiuk et al. remove 224 pixels a step (224 steps at 224x224) on a zero substrate in the
      normalised input (our ``"zero"``); ``steps`` trades resolution for cost. Our default
      baseline is ``"mean"``, the image's own mean colour: what zero means depends on the
      model's normalisation (the ImageNet mean grey for ImageNet models, but black for the
      harbor nets, which take [0, 1] images, and black is a colour of harbor objects, so
      deleting into black paints new object-like evidence). The mean colour means the same
      for every model and is the fill of the ``"mean"`` reliance removal.
    - Scores are probabilities, not logits (Quantus's ``softmax=True``).
    """
    return curve_auc(deletion_curve(model, inputs, maps, targets, steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=max_batch))


def insertion(model, inputs, maps, targets, *, steps: int = DEFAULT_STEPS, baseline: str | torch.Tensor = "blur", blur_sigma: float = DEFAULT_BLUR_SIGMA, max_batch: int = 256) -> torch.Tensor:
    """Insertion AUC (Petsiuk et al. 2018), float B in [0, 1], **higher is better**: the area
    under :func:`insertion_curve` over the revealed fraction of pixels, trapezoidal rule,
    starting from the ``baseline`` (default ``"blur"``, Petsiuk et al.'s insertion substrate)
    and revealing the most relevant pixels first. Same conventions as :func:`deletion`;
    ``steps + 1`` forward passes per map."""
    return curve_auc(insertion_curve(model, inputs, maps, targets, steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=max_batch))


def explanation_map(maps: torch.Tensor) -> torch.Tensor:
    """Maps min-max scaled to [0, 1] per map (Grad-CAM++'s explanation map E): NaN where the
    map is constant or non-finite."""
    flat = maps.flatten(1).float()
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    scaled = (maps.float() - lo[:, None, None]) / span[:, None, None]
    return torch.where(undefined_maps(maps)[:, None, None], torch.full_like(scaled, math.nan), scaled)


@torch.no_grad()
def confidence_change(model, inputs, maps, targets, *, max_batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop, increase), float B each, from two forward passes per map: the original input
    (probability Y) and the input multiplied by the explanation map (probability O).

    drop = max(0, Y - O) / Y (Chattopadhyay et al.'s per-image Average Drop term, a fraction,
    not a percentage); increase = 1.0 if O > Y else 0.0 (the Increase in Confidence indicator).
    NaN for undefined maps, and the drop also where Y is 0."""
    _check(inputs, maps, targets)
    return confidence_change_with(module_scorer(model, targets, max_batch), inputs, maps)


@torch.no_grad()
def confidence_change_with(score: Scorer, inputs: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`confidence_change` with its two passes per map made by ``score``."""
    e = explanation_map(maps)
    masked = inputs * torch.nan_to_num(e, nan=1.0)[:, None].to(inputs.dtype)
    b = inputs.shape[0]
    rows = torch.arange(b, device=inputs.device)
    probs = score(torch.cat([inputs, masked]), torch.cat([rows, rows]))
    y, o = probs[:b], probs[b:]
    bad = undefined_maps(maps)
    nan = torch.full_like(y, math.nan)
    drop = torch.where(bad | (y <= 0), nan, (y - o).clamp(min=0) / torch.where(y > 0, y, torch.ones_like(y)))
    increase = torch.where(bad, nan, (o > y).float())
    return drop, increase


def average_drop(model, inputs, maps, targets, *, max_batch: int = 256) -> torch.Tensor:
    """Average Drop (Chattopadhyay et al. 2018), per map, float B in [0, 1], **lower is better**:
    ``max(0, Y - O) / Y`` with Y the target's probability on the input and O on the input
    multiplied pixel-wise by the map min-max scaled to [0, 1]. The leaderboard's mean over rows
    times 100 is the paper's percentage. Two forward passes per map.

    Conventions and where others differ:

    - The multiplication happens in the model's input space, after normalisation, as
      pytorch-grad-cam's ``CamMultImageConfidenceChange`` does (a pixel with map 0 becomes 0 in
      the normalised input, i.e. the normalisation's mean colour; for the harbor nets, which
      take [0, 1] images, black, as in the paper's image x map).
    - pytorch-grad-cam's ``DropInConfidence`` returns ``max(0, Y - O)`` unnormalised; ours
      divides by Y as the paper does (pinned against it by ``tests/test_faithfulness.py``).
      It scales maps with ``(m - min) / (max + 1e-7)`` after the subtraction; ours with
      ``(m - min) / (max - min)``, and a constant map is undefined (NaN) where theirs becomes
      all zeros.
    """
    return confidence_change(model, inputs, maps, targets, max_batch=max_batch)[0]


def increase_in_confidence(model, inputs, maps, targets, *, max_batch: int = 256) -> torch.Tensor:
    """Increase in Confidence (Chattopadhyay et al. 2018), per map, 1.0 where the target's
    probability on the map-multiplied input exceeds that on the input (strictly), else 0.0;
    **higher is better**; its mean over rows is the paper's rate (times 100, its percentage).
    Same input as :func:`average_drop`; pytorch-grad-cam's ``IncreaseInConfidence`` is the same
    indicator."""
    return confidence_change(model, inputs, maps, targets, max_batch=max_batch)[1]


# -- registered: the metric contract's versions, for runs ------------------------------------------
#
# A run hands a metric maps at the images' original resolution; each is taken into the model's
# input space by the same resize and crop as the image (ModelAccess.input_maps, i.e.
# bench.models.input_space.InputSpace.maps), and the forward passes go through ModelAccess.scores
# (the run's chunking and autocast). Otherwise they are the functions above; a map that is
# undefined (constant, NaN/Inf) at its own resolution is undefined here too.


@register_metric(
    "deletion",
    higher_is_better=False,
    requires=(MODEL,),
    description="area under the target probability as the most relevant pixels are deleted (Petsiuk et al. 2018); steps + 1 passes per map",
)
def deletion_auc(maps: torch.Tensor, model: ModelAccess, steps: int = DEFAULT_STEPS, baseline: str = "mean", blur_sigma: float = DEFAULT_BLUR_SIGMA) -> torch.Tensor:
    """:func:`deletion` on the run's maps (taken into the model's input space) and model."""
    _check_steps(steps, baseline)
    curve = curve_with(access_scorer(model), model.inputs, model.input_maps(maps), steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=model.chunk, insert=False)
    return _undefined_as_given(maps, curve_auc(curve))


@register_metric(
    "insertion",
    higher_is_better=True,
    requires=(MODEL,),
    description="area under the target probability as the most relevant pixels are revealed on a blurred copy (Petsiuk et al. 2018); steps + 1 passes per map",
)
def insertion_auc(maps: torch.Tensor, model: ModelAccess, steps: int = DEFAULT_STEPS, baseline: str = "blur", blur_sigma: float = DEFAULT_BLUR_SIGMA) -> torch.Tensor:
    """:func:`insertion` on the run's maps (taken into the model's input space) and model."""
    _check_steps(steps, baseline)
    curve = curve_with(access_scorer(model), model.inputs, model.input_maps(maps), steps=steps, baseline=baseline, blur_sigma=blur_sigma, max_batch=model.chunk, insert=True)
    return _undefined_as_given(maps, curve_auc(curve))


@register_metric(
    "average_drop",
    higher_is_better=False,
    requires=(MODEL,),
    description="max(0, Y - O) / Y, O on the input times the min-max scaled map (Chattopadhyay et al. 2018); 2 passes per map",
)
def average_drop_score(maps: torch.Tensor, model: ModelAccess) -> torch.Tensor:
    """:func:`average_drop` on the run's maps (taken into the model's input space) and model."""
    return _undefined_as_given(maps, confidence_change_with(access_scorer(model), model.inputs, model.input_maps(maps))[0])


@register_metric(
    "increase_in_confidence",
    higher_is_better=True,
    requires=(MODEL,),
    description="1 where the target probability on the input times the min-max scaled map exceeds that on the input (Chattopadhyay et al. 2018); 2 passes per map",
)
def increase_in_confidence_score(maps: torch.Tensor, model: ModelAccess) -> torch.Tensor:
    """:func:`increase_in_confidence` on the run's maps (taken into the model's input space)."""
    return _undefined_as_given(maps, confidence_change_with(access_scorer(model), model.inputs, model.input_maps(maps))[1])


def _undefined_as_given(maps: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # Undefined is decided on the map as the method gave it: a constant map resampled into the
    # input space can pick up rounding-level differences that would order its pixels.
    return torch.where(undefined_maps(maps), torch.full_like(values, math.nan), values)


def _check_steps(steps: int, baseline: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {list(BASELINES)}")
