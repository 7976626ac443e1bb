"""The erasing cascade (bench/methods/erasing.py): with one step it is its base method's map
after the cascade's normalisation, to the last digit; on a model whose evidence sits in two
known places, the second step finds the second place; batched, seeded, one signature."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.methods import METHODS, MethodConfigError, create_method
from bench.methods.erasing import erasing_cascade, normalise, step_seeds
from bench.models.harbor import HarborNet


def _net() -> nn.Module:
    torch.manual_seed(0)
    return HarborNet(width=8).eval()


def _inputs(b: int = 4):
    gen = torch.Generator().manual_seed(3)
    return torch.rand(b, 3, 48, 48, generator=gen), torch.tensor([0, 1, 2, 3][:b]), [11 * i + 5 for i in range(b)]


@pytest.mark.parametrize(
    "base, params",
    [
        ("gradcam", {}),
        ("layercam", {}),
        ("gradient", {}),
        ("integrated_gradients", {"steps": 4}),
        ("smoothgrad", {"n_samples": 3}),
        ("rise", {"n_masks": 16, "cell": 8}),
        ("occlusion", {"window": 16, "stride": 16}),
    ],
)
def test_one_step_equals_the_base_after_the_same_normalisation(base, params):
    model = _net()
    x, targets, seeds = _inputs()
    cascade = create_method("erase", base=base, base_params=params, steps=1).with_model_defaults("features")
    ref = create_method(base, **params).with_model_defaults("features")(model, x, targets, seeds=seeds)
    got = cascade(model, x, targets, seeds=seeds)
    peak = ref.amax(dim=(1, 2), keepdim=True)
    assert int((peak > 0).sum()) >= 3
    # Bit for bit, not approximately: divided by the peak where it is positive, else as is.
    assert torch.equal(got, torch.where(peak > 0, ref / peak, ref))


def test_normalisation_leaves_maps_without_a_positive_peak_alone():
    maps = torch.tensor([[[2.0, -1.0]], [[-1.0, -3.0]], [[0.0, 0.0]]])
    norm, ok = normalise(maps)
    assert torch.equal(norm, torch.tensor([[[1.0, -0.5]], [[-1.0, -3.0]], [[0.0, 0.0]]]))
    assert ok.tolist() == [True, False, False]
    # Over live pixels only: the peak of the not-yet-erased part.
    live = torch.tensor([[[False, True]]])
    norm, ok = normalise(torch.tensor([[[4.0, 2.0]]]), live)
    assert torch.equal(norm, torch.tensor([[[2.0, 1.0]]])) and ok.tolist() == [True]


class TwoPlaces(nn.Module):
    """Evidence for class 0 is the mean brightness of each 4x4 cell; the logit is the best cell
    (global max pooling): the model stops at the strongest place, so its gradient shows only that
    place. Cell A (top left) is brighter than cell B (bottom right)."""

    def __init__(self):
        super().__init__()
        self.features = nn.AvgPool2d(4)

    def forward(self, x):
        evidence = self.features(x).sum(dim=1).flatten(1)
        best = evidence.amax(dim=1)
        return torch.stack([best, -best], dim=1)


A = (slice(0, 4), slice(0, 4))
B = (slice(12, 16), slice(8, 12))


def _two_places_input():
    x = torch.zeros(1, 3, 16, 16)
    x[:, :, A[0], A[1]] = 1.0
    x[:, :, B[0], B[1]] = 0.6
    return x


def test_the_second_step_finds_the_second_place():
    model, x = TwoPlaces().eval(), _two_places_input()
    base = create_method("gradient")
    res = erasing_cascade(base, model, x, torch.tensor([0]), steps=2, threshold=0.5, fill="zero")
    first, second = res.steps
    in_a = torch.zeros(16, 16, dtype=torch.bool)
    in_a[A] = True
    in_b = torch.zeros(16, 16, dtype=torch.bool)
    in_b[B] = True
    # Step one: the gradient of the max sees place A only.
    assert (first[0][in_a] == 1).all() and (first[0][~in_a] == 0).all()
    # Place A was erased (and only A), then step two sees place B only.
    assert torch.equal(res.erased[0][0], in_a)
    assert (second[0][in_b] == 1).all() and (second[0][~in_a & ~in_b] == 0).all()
    # The combined map covers both places; the base alone only the first.
    combined = create_method("erase", base="gradient", steps=2, fill="zero")(model, x, torch.tensor([0]))
    assert torch.equal(combined[0] == 1, in_a | in_b)
    assert torch.equal(combined, res.combined)
    alone = create_method("gradient")(model, x, torch.tensor([0]))
    assert (alone[0][in_b] == 0).all()
    # With A gone the model still sees class 0 (in B: p = sigmoid(2 * 1.8)), so step two counts;
    # asked for more confidence than that, the cascade stops after step one.
    assert res.counted[1].tolist() == [True] and 0.97 < res.probability[1].item() < 0.98
    stopped = erasing_cascade(base, model, x, torch.tensor([0]), steps=2, threshold=0.5, fill="zero", min_prob=0.99)
    assert stopped.counted[1].tolist() == [False] and torch.equal(stopped.combined, first)


def test_a_batch_equals_its_images_one_by_one_and_seeds_are_per_image():
    model = _net()
    x, targets, seeds = _inputs()
    for base, params in (("gradient", {}), ("smoothgrad", {"n_samples": 3})):
        m = create_method("erase", base=base, base_params=params, steps=3).with_model_defaults("features")
        batch = m(model, x, targets, seeds=seeds)
        singles = torch.cat([m(model, x[i : i + 1], targets[i : i + 1], seeds=seeds[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5)
        assert torch.equal(batch, m(model, x, targets, seeds=seeds))
    sg = create_method("erase", base="smoothgrad", base_params={"n_samples": 3}).with_model_defaults("features")
    assert sg.stochastic and sg.needs_grad
    same = x[:1].expand(2, -1, -1, -1)
    two = sg(model, same, targets[:1].expand(2), seeds=[5, 6])
    assert not torch.allclose(two[0], two[1])
    # Later steps draw fresh seeds derived from the image's seed, never its batch position.
    assert step_seeds([5, 6], 2, 0) == [5, 6]
    assert step_seeds([5, 6], 2, 1) == step_seeds([5], 1, 1) + step_seeds([6], 1, 1)
    assert step_seeds([5], 1, 1) != step_seeds([5], 1, 2)


@pytest.mark.parametrize("fill", ["mean", "zero", "blur"])
def test_fills_and_a_map_that_only_grows_over_steps(fill):
    model = _net()
    x, targets, seeds = _inputs(2)
    base = create_method("gradcam").with_model_defaults("features")
    res = erasing_cascade(base, model, x, targets, steps=3, threshold=0.5, fill=fill)
    assert len(res.steps) == len(res.erased) == 3
    assert (res.erased[1] >= res.erased[0]).all()  # erased regions only grow
    assert (res.combined >= res.steps[0] - 1e-7).all()  # the cascade never lowers step one's map
    assert res.combined.amax(dim=(1, 2)).allclose(torch.ones(2))


def test_label_registry_and_bad_parameters():
    cls = METHODS.get("erase")
    assert cls.family == "perturbation" and cls.description
    m = create_method("erase", base="smoothgrad", base_params={"n_samples": 8}, steps=2)
    assert m.label == "erase[base=smoothgrad[n_samples=8],steps=2]"
    assert create_method("erase").label == "erase[base=gradcam]"
    assert create_method("erase").with_model_defaults("features").base.params["layer"] == "features"
    assert m.describe()["base"]["label"] == "smoothgrad[n_samples=8]"
    with pytest.raises(MethodConfigError, match="steps"):
        create_method("erase", steps=0)
    with pytest.raises(MethodConfigError, match="threshold"):
        create_method("erase", threshold=1.5)
    with pytest.raises(MethodConfigError, match="min_prob"):
        create_method("erase", min_prob=-0.1)
    with pytest.raises(MethodConfigError, match="fill"):
        create_method("erase", fill="noise")
    with pytest.raises(MethodConfigError, match="base"):
        create_method("erase", base="gradcamm")
    with pytest.raises(MethodConfigError, match="base_params"):
        create_method("erase", base="rise", base_params={"n_mask": 3})
    with pytest.raises(MethodConfigError, match="itself"):
        create_method("erase", base="erase")
