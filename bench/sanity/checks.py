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

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from bench.methods import AttributionMethod
from bench.sanity.randomisation import Mode, ModelRandomiser
from bench.sanity.similarity import compare, to_size


@dataclass
class StepSimilarity:
    """Similarity of one method's maps on the randomised model of one step with its maps on the
    trained model: ``values[measure]`` is a B tensor (one per (image, target) of the batch)."""

    mode: Mode
    index: int  # 1-based; 1 = the output layer
    layer: str
    method: str
    values: dict[str, torch.Tensor]


def randomisation_similarities(
    randomiser: ModelRandomiser,
    modes: Sequence[Mode],
    methods: Sequence[tuple[str, AttributionMethod]],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    seeds: dict[str, Sequence[int]],
    originals: dict[str, torch.Tensor],
    measures: Sequence[str],
) -> list[StepSimilarity]:
    """For each mode and layer step (outer loops: the working copy is reconfigured once per
    step, not once per method) and each method: the method's maps on the randomised model,
    compared with ``originals[label]`` (its maps on the trained model, any resolution).
    ``seeds[label]``: the per-image seeds the original maps were made with, so a stochastic
    method draws the same noise on both models. Targets are the trained model's: the test asks
    about the same class on every model."""
    size = tuple(inputs.shape[-2:])
    reference = {label: to_size(originals[label], size) for label, _ in methods}
    out: list[StepSimilarity] = []
    try:
        for mode in modes:
            for step, model in randomiser.run(mode):
                for label, method in methods:
                    maps = to_size(method(model, inputs, targets, seeds=seeds[label]).detach(), size)
                    out.append(StepSimilarity(mode, step.index, step.step.name, label, compare(reference[label], maps, measures)))
    finally:
        randomiser.restore()
    return out


def random_target_maps(
    method: AttributionMethod,
    model: nn.Module,
    inputs: torch.Tensor,
    random_targets: torch.Tensor,
    seeds: Sequence[int] | None,
) -> torch.Tensor:
    """The method's maps for the random classes (:func:`random_target.random_other_outputs`),
    with the same per-image seeds as the target's maps."""
    return method(model, inputs, random_targets, seeds=seeds).detach()


def map_similarity(original: torch.Tensor, other: torch.Tensor, size: tuple[int, int], measures: Sequence[str]) -> dict[str, torch.Tensor]:
    """Similarity of two batches of maps of one method at ``size`` (the model input's)."""
    return compare(to_size(original, size), to_size(other, size), measures)
