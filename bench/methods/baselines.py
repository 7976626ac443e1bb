"""Baselines are methods too, so every leaderboard has them as rows: they say what a score
means when the map knows nothing about the image."""

from __future__ import annotations

import torch

from bench.methods.base import AttributionMethod, image_seeds, register_method


@register_method
class CenterPrior(AttributionMethod):
    """Isotropic Gaussian at the image centre; ``sigma`` is a fraction of the image side."""

    name = "center"
    family = "baseline"
    defaults = {"sigma": 0.25}
    description = "Gaussian centre prior (the gaze field's standard baseline)"

    def validate(self) -> None:
        self.require("sigma", 0 < self.params["sigma"] < float("inf"), "a finite number > 0")

    def attribute(self, model, inputs, targets, *, seeds=None):
        b, _, h, w = inputs.shape
        ys = (torch.arange(h, device=inputs.device, dtype=torch.float32) + 0.5) / h - 0.5
        xs = (torch.arange(w, device=inputs.device, dtype=torch.float32) + 0.5) / w - 0.5
        s = float(self.params["sigma"])
        g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * s * s))
        return g.expand(b, h, w).clone()


@register_method
class Uniform(AttributionMethod):
    """All ones: carries no information, so pointing metrics must score it a miss."""

    name = "uniform"
    family = "baseline"
    description = "constant map (every pointing metric must score it a miss)"

    def attribute(self, model, inputs, targets, *, seeds=None):
        b, _, h, w = inputs.shape
        return torch.ones((b, h, w), device=inputs.device)


@register_method
class RandomMap(AttributionMethod):
    """Uniform noise on a coarse grid of ``cell`` pixels, bilinearly upsampled, one seed per
    image so the map of an image does not depend on its batch. The grid comes from a CPU
    generator (a few numbers per image), so the map does not depend on the device either."""

    name = "random"
    family = "baseline"
    stochastic = True
    defaults = {"cell": 8}
    description = "seeded random map (chance level)"

    def validate(self) -> None:
        self.require("cell", self.params["cell"] >= 1, "an integer >= 1")

    def attribute(self, model, inputs, targets, *, seeds=None):
        b, _, h, w = inputs.shape
        cell = max(1, int(self.params["cell"]))
        gh, gw = -(-h // cell), -(-w // cell)
        grids = []
        for s in image_seeds(seeds, b):  # one tiny draw per image: the only way to be batch-invariant
            gen = torch.Generator(device="cpu").manual_seed(int(s))
            grids.append(torch.rand((gh, gw), generator=gen))
        grid = torch.stack(grids).to(inputs.device)[:, None]
        up = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return up[:, 0]
