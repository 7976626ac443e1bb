"""Baselines are methods too, so every leaderboard has them as rows: they say what a score
means when the map knows nothing about the image."""

from __future__ import annotations

import torch

from bench.density import center_prior, map_density
from bench.methods.base import AttributionMethod, MethodConfigError, create_method, image_seeds, register_method
from bench.registry import UnknownNameError


@register_method
class CenterPrior(AttributionMethod):
    """Isotropic Gaussian at the image centre; ``sigma`` is a fraction of the image side
    (:func:`bench.density.center_prior`)."""

    name = "center"
    family = "baseline"
    defaults = {"sigma": 0.25}
    description = "Gaussian centre prior (the gaze field's standard baseline)"

    def validate(self) -> None:
        self.require("sigma", 0 < self.params["sigma"] < float("inf"), "a finite number > 0")

    def attribute(self, model, inputs, targets, *, seeds=None):
        b, _, h, w = inputs.shape
        g = center_prior(h, w, self.params["sigma"], device=inputs.device)
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


@register_method
class CenterProduct(AttributionMethod):
    """Any method's map combined with the centre prior: the product of their densities,
    ``p(x) = p_map(x) p_center(x) / sum_y p_map(y) p_center(y)``, where each map becomes a
    density by the rule of the information gain (:mod:`bench.density`: a negative
    minimum subtracted, normalised, ``uniform_mix`` of the uniform density mixed in) at the
    method's own resolution, and ``p_center`` is the ``center`` row's Gaussian (``sigma``).
    Product is how the field puts a centre bias into a model (Kümmerer et al.'s and DeepGaze's
    read-outs multiply by it). The map returned is that density.

    So the row's information gain (over the centre prior) is what the method's map adds to the
    centre bias, in bits per fixation: above 0 where the map moves probability towards where
    people look, below 0 where it moves it away. ``method`` names the method and ``params`` are
    its parameters; a map holding NaN/Inf stays invalid (NaN), never the centre prior alone.
    ``needs_grad`` and ``stochastic`` are the wrapped method's (set per instance from it, the
    one place they are said); layer checks and the model's default layer go to it too.
    """

    name = "center_product"
    family = "baseline"
    defaults = {"method": "gradcam", "params": {}, "sigma": 0.25, "uniform_mix": 0.01}
    description = "a method's map times the centre prior, as densities (what the map adds to the centre bias)"

    def __init__(self, **params):
        super().__init__(**params)
        try:
            self.inner = create_method(self.params["method"], **self.params["params"])
        except UnknownNameError as exc:
            raise MethodConfigError(f"method {self.name!r} parameter 'method': {exc}") from exc
        except MethodConfigError as exc:
            raise MethodConfigError(f"method {self.name!r} parameter 'params': {exc}") from exc
        self.needs_grad = self.inner.needs_grad
        self.stochastic = self.inner.stochastic

    def validate(self) -> None:
        self.require("method", self.params["method"] != self.name, "another method than itself")
        self.require("sigma", 0 < self.params["sigma"] < float("inf"), "a finite number > 0")
        self.require("uniform_mix", 0 < self.params["uniform_mix"] <= 1, "in (0, 1]")

    @property
    def label(self) -> str:
        """``center_product[<the method's label>]``, then any other parameter the user set."""
        rest = {k: v for k, v in self.user_params.items() if k not in ("method", "params") and k not in self.execution_params}
        extra = "".join(f",{k}={v:g}" if isinstance(v, float) else f",{k}={v}" for k, v in sorted(rest.items()))
        return f"{self.name}[{self.inner.label}{extra}]"

    def describe(self):
        return {**super().describe(), "method": self.inner.describe()}

    def check_model(self, model, input_shape) -> None:
        self.inner.check_model(model, input_shape)

    def with_model_defaults(self, target_layer):
        inner = self.inner.with_model_defaults(target_layer)
        if inner is self.inner:
            return self
        bound = type(self)(**self.user_params)
        bound.inner = inner
        return bound

    def attribute(self, model, inputs, targets, *, seeds=None):
        maps = self.inner(model, inputs, targets, seeds=seeds)
        b, h, w = maps.shape
        mix = float(self.params["uniform_mix"])
        prior = map_density(center_prior(h, w, self.params["sigma"], device=maps.device)[None], mix)
        product = map_density(maps, mix) * prior
        product = product / product.sum(dim=(1, 2), keepdim=True)
        bad = ~torch.isfinite(maps).flatten(1).all(dim=1)[:, None, None]
        return torch.where(bad, torch.full_like(product, float("nan")), product).float()
