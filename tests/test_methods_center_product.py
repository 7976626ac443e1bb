"""``center_product``: any method's map times the centre prior, as densities
(bench/methods/baselines.py), pinned by hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from bench.density import center_prior
from bench.methods import MethodConfigError, create_method
from bench.metrics.information import map_density


def test_product_of_densities_by_hand():
    # inner map [0, 1, 3] on 1 x 3 with eps = 0.25: qN = [0, 0.75, 2.25],
    # pN = 0.25 + 0.75 qN = [0.25, 0.8125, 1.9375]; the prior is symmetric [g, 1, g].
    class Fixed:
        label, needs_grad, stochastic = "fixed", False, False

        def __call__(self, model, inputs, targets, seeds=None):
            return torch.tensor([[[0.0, 1.0, 3.0]]]).expand(inputs.shape[0], 1, 3)

        def describe(self):
            return {"name": "fixed"}

    m = create_method("center_product", method="uniform", uniform_mix=0.25, sigma=0.25)
    m.inner = Fixed()
    out = m(None, torch.zeros(2, 3, 1, 3), torch.zeros(2))
    g = math.exp(-((1 / 3) ** 2) / (2 * 0.25**2))
    prior = [g / (2 * g + 1), 1 / (2 * g + 1), g / (2 * g + 1)]
    prior_n = [0.25 + 0.75 * 3 * p for p in prior]
    mine = [0.25, 0.8125, 1.9375]
    raw = [a * b for a, b in zip(mine, prior_n)]
    want = [r / sum(raw) for r in raw]
    assert out.dtype == torch.float32 and out.shape == (2, 1, 3)
    assert out[0].flatten().tolist() == pytest.approx(want, abs=1e-6)
    assert out[1].flatten().tolist() == pytest.approx(want, abs=1e-6)


def test_a_uniform_map_leaves_the_centre_prior_and_nan_stays_invalid():
    m = create_method("center_product", method="uniform")
    out = m(None, torch.zeros(1, 3, 20, 30), torch.zeros(1))
    prior = map_density(center_prior(20, 30, 0.25)[None])
    assert torch.allclose(out.double(), prior / prior.sum(), atol=1e-7)

    class Broken:
        label, needs_grad, stochastic = "broken", False, False

        def __call__(self, model, inputs, targets, seeds=None):
            maps = torch.rand(inputs.shape[0], 4, 4)
            maps[0, 1, 1] = float("nan")
            return maps

    m.inner = Broken()
    out = m(None, torch.zeros(2, 3, 4, 4), torch.zeros(2))
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()


def test_wraps_any_method_with_its_parameters_and_label():
    m = create_method("center_product", method="rise", params={"n_masks": 20, "cell": 4}, sigma=0.3)
    assert m.label == "center_product[rise[cell=4,n_masks=20],sigma=0.3]"
    assert m.describe()["stochastic"] is True and m.describe()["method"]["params"]["n_masks"] == 20
    assert create_method("center_product").label == "center_product[gradcam]"
    with pytest.raises(MethodConfigError, match="did you mean 'layer'"):
        create_method("center_product", params={"laye": "x"})
    with pytest.raises(MethodConfigError, match="nope"):
        create_method("center_product", method="nope")
    with pytest.raises(MethodConfigError, match="itself"):
        create_method("center_product", method="center_product")
    with pytest.raises(MethodConfigError, match="uniform_mix"):
        create_method("center_product", uniform_mix=0.0)


def test_its_flags_and_model_checks_are_the_wrapped_methods():
    from bench.models import load_model

    # needs_grad / stochastic: said once, by the wrapped method's class
    for inner in ("gradcam", "rise", "center"):
        m, cls = create_method("center_product", method=inner), create_method(inner)
        assert (m.needs_grad, m.stochastic) == (cls.needs_grad, cls.stochastic)
        assert (m.describe()["needs_grad"], m.describe()["stochastic"]) == (cls.needs_grad, cls.stochastic)
    # a misspelled layer of the wrapped method fails before a run scores anything
    bundle = load_model("harbor:object_only", seed=0)
    bad = create_method("center_product", params={"layer": "no.such.layer"})
    with pytest.raises(MethodConfigError, match="no.such.layer"):
        bad.check_model(bundle.module, (3, 96, 96))


def test_gradcam_on_a_real_model_times_the_prior():
    from bench.models import load_model

    bundle = load_model("harbor:object_only", seed=0)
    model = bundle.module.eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 2])
    m = create_method("center_product", method="gradcam").with_model_defaults(bundle.target_layer)
    assert m.inner.params["layer"] == bundle.target_layer
    out = m(model, x, t)
    gc = create_method("gradcam").with_model_defaults(bundle.target_layer)(model, x, t)
    h, w = gc.shape[-2:]
    want = map_density(gc) * map_density(center_prior(h, w, 0.25)[None])
    want = want / want.sum(dim=(1, 2), keepdim=True)
    assert torch.allclose(out.double(), want, atol=1e-7)
    assert torch.allclose(out.sum(dim=(1, 2)), torch.ones(2), atol=1e-5)
