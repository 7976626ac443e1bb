"""The sanity checks on one batch: maps of randomised models and of random targets, compared
with the original maps.

These functions take what a run already has for a batch (the model inputs, the resolved target
outputs, each method's per-image seeds and its original maps) and return similarities as
tensors on the device, one value per (image, target) and measure; turning them into rows is the
caller's. Every map is compared at the model input's resolution (:func:`similarity.to_size`).

Cost, in passes of the model, per (image, target) and method: the cascading test one method
call per layer step, the independent test the same again, the random-target test one call; a
method call costs what it costs in the run (Grad-CAM and the gradient one forward and one
backward, Integrated Gradients ``steps`` of each, RISE ``n_masks`` forwards). Class sensitivity
costs nothing: it re-scores the run's own maps. ``benchmarks/sanity_cost.py`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from bench.methods import AttributionMethod
from bench.sanity.randomisation import Mode, ModelRandomiser
from bench.sanity.similarity import compare, to_size


# (method, model, inputs, targets, seeds) -> (maps, {row: error}); the run passes
# bench.scoring.attribute, which retries image by image when a method raises.
Attribute = Callable[[AttributionMethod, nn.Module, torch.Tensor, torch.Tensor, Sequence[int]], tuple[torch.Tensor, dict[int, str]]]


def direct(method: AttributionMethod, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, seeds: Sequence[int]) -> tuple[torch.Tensor, dict[int, str]]:
    """Call the method on the whole batch; an exception propagates."""
    return method(model, inputs, targets, seeds=seeds), {}


@dataclass
class StepSimilarity:
    """Similarity of one method's maps on the randomised model of one step with its maps on the
    trained model: ``values[measure]`` is a B tensor (one per (image, target) of the batch);
    ``errors``: rows whose map could not be made (their values are NaN), with the error."""

    mode: Mode
    index: int  # 1-based; 1 = the output layer
    layer: str
    method: str
    values: dict[str, torch.Tensor]
    errors: dict[int, str] = field(default_factory=dict)


def randomisation_similarities(
    randomiser: ModelRandomiser,
    modes: Sequence[Mode],
    methods: Sequence[tuple[str, AttributionMethod]],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    seeds: dict[str, Sequence[int]],
    originals: dict[str, torch.Tensor],
    measures: Sequence[str],
    call: Attribute = direct,
) -> list[StepSimilarity]:
    """For each mode and layer step (outer loops: the working copy is reconfigured once per
    step, not once per method) and each method: the method's maps on the randomised model,
    compared with ``originals[label]`` (its maps on the trained model, any resolution).
    ``seeds[label]``: the per-image seeds the original maps were made with, so a stochastic
    method draws the same noise on both models. Targets are the trained model's: the test asks
    about the same class on every model. ``call`` makes the maps (default: the method on the
    whole batch)."""
    size = tuple(inputs.shape[-2:])
    reference = {label: to_size(originals[label], size) for label, _ in methods}
    out: list[StepSimilarity] = []
    try:
        for mode in modes:
            for step, model in randomiser.run(mode):
                for label, method in methods:
                    maps, errors = call(method, model, inputs, targets, seeds[label])
                    values = compare(reference[label], to_size(maps.detach(), size), measures)
                    out.append(StepSimilarity(mode, step.index, step.step.name, label, values, errors))
    finally:
        randomiser.restore()
    return out


def random_target_maps(
    method: AttributionMethod,
    model: nn.Module,
    inputs: torch.Tensor,
    random_targets: torch.Tensor,
    seeds: Sequence[int] | None,
    call: Attribute = direct,
) -> tuple[torch.Tensor, dict[int, str]]:
    """The method's maps for the random classes (:func:`random_target.random_other_outputs`),
    with the same per-image seeds as the target's maps, and the rows that failed."""
    maps, errors = call(method, model, inputs, random_targets, seeds)
    return maps.detach(), errors


def map_similarity(original: torch.Tensor, other: torch.Tensor, size: tuple[int, int], measures: Sequence[str]) -> dict[str, torch.Tensor]:
    """Similarity of two batches of maps of one method at ``size`` (the model input's)."""
    return compare(to_size(original, size), to_size(other, size), measures)
