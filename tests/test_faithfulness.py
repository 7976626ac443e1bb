"""Faithfulness metrics (bench.metrics.faithfulness): deletion and insertion by hand, deletion
against Quantus's PixelFlipping, average drop / increase in confidence against pytorch-grad-cam,
the NaN policy, and the registered columns on maps taken into a cropping model's input space
(Grad-CAM against the random map on the harbor object-only model, in a run:
tests/test_reliance_run.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.metrics.faithfulness import (
    average_drop,
    confidence_change,
    curve_auc,
    deletion,
    deletion_curve,
    explanation_map,
    increase_in_confidence,
    insertion,
    insertion_curve,
    relevance_ranks,
    step_counts,
)


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


class WeightedSum(nn.Module):
    """logit 0 = sum of channel 0 times ``weight``; logit 1 = 0 (so p = sigmoid(logit 0))."""

    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x):
        z = (x[:, 0] * self.weight).flatten(1).sum(dim=1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


@pytest.fixture
def hand_case():
    # ones everywhere; the model weighs pixels [[1, 2], [0, 0]]; the map orders the pixels
    # (0,0) 0.9, (1,0) 0.5, (1,1) 0.3, (0,1) 0.1.
    model = WeightedSum([[1.0, 2.0], [0.0, 0.0]])
    x = torch.ones(1, 3, 2, 2)
    maps = torch.tensor([[[0.9, 0.1], [0.5, 0.3]]])
    return model, x, maps, torch.tensor([0])


def test_insertion_by_hand(hand_case):
    model, x, maps, t = hand_case
    # zero baseline: logit 0 -> p 1/2; reveal (0,0): logit 1; (1,0), (1,1) add 0; (0,1) adds 2.
    curve = insertion_curve(model, x, maps, t, steps=4, baseline="zero")
    expected = [0.5, sig(1), sig(1), sig(1), sig(3)]
    assert curve[0].tolist() == pytest.approx(expected, abs=1e-6)
    auc = (0.5 / 2 + 3 * sig(1) + sig(3) / 2) / 4
    assert insertion(model, x, maps, t, steps=4, baseline="zero").item() == pytest.approx(auc, abs=1e-6)


def test_deletion_by_hand(hand_case):
    model, x, maps, t = hand_case
    curve = deletion_curve(model, x, maps, t, steps=4, baseline="zero")
    assert curve[0].tolist() == pytest.approx([sig(3), sig(2), sig(2), sig(2), 0.5], abs=1e-6)
    auc = (sig(3) / 2 + 3 * sig(2) + 0.5 / 2) / 4
    assert deletion(model, x, maps, t, steps=4, baseline="zero").item() == pytest.approx(auc, abs=1e-6)
    # 3 steps over 4 pixels remove floor(k * 4 / 3) = 0, 1, 2, 4 pixels.
    assert step_counts(4, 3) == [0, 1, 2, 4]
    curve3 = deletion_curve(model, x, maps, t, steps=3, baseline="zero")
    assert curve3[0].tolist() == pytest.approx([sig(3), sig(2), sig(2), 0.5], abs=1e-6)


def test_baselines_by_hand(hand_case):
    model, _, maps, t = hand_case
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    # "mean" baseline: the image's mean, 1 in channel 0; deleting everything gives logit 1 + 2.
    assert deletion_curve(model, x, maps, t, steps=1, baseline="mean")[0, -1].item() == pytest.approx(sig(3))
    # a tensor baseline is used as is
    base = torch.full((1, 3, 1, 1), -1.0)
    assert insertion_curve(model, x, maps, t, steps=1, baseline=base)[0, 0].item() == pytest.approx(sig(-3))
    with pytest.raises(ValueError, match="unknown baseline"):
        deletion(model, x, maps, t, baseline="grey")


def test_ties_go_to_the_lower_row_major_index():
    maps = torch.tensor([[[0.5, 1.0, 0.5], [1.0, 0.0, 0.5]]])
    assert relevance_ranks(maps)[0].tolist() == [2, 0, 3, 1, 5, 4]


def test_constant_and_nonfinite_maps_are_undefined(hand_case):
    model, x, maps, t = hand_case
    bad = torch.stack([maps[0], torch.zeros(2, 2), torch.tensor([[1.0, math.nan], [0.0, 0.0]])])
    xs, ts = x.expand(3, -1, -1, -1), t.expand(3)
    for fn in (deletion, insertion, average_drop, increase_in_confidence):
        out = fn(model, xs, bad, ts)
        assert math.isfinite(out[0].item()) and math.isnan(out[1].item()) and math.isnan(out[2].item()), fn.__name__
    with pytest.raises(ValueError, match="input space"):
        deletion(model, x, torch.rand(1, 3, 3), t)


def test_average_drop_and_increase_by_hand(hand_case):
    model, x, maps, t = hand_case
    # E = (m - 0.1) / 0.8: (0,0) -> 1, (0,1) -> 0; the model sees 1 * 1 + 2 * 0 = 1 instead of 3.
    drop, inc = confidence_change(model, x, maps, t)
    assert drop.item() == pytest.approx((sig(3) - sig(1)) / sig(3), abs=1e-6)
    assert inc.item() == 0.0
    up = WeightedSum([[1.0, -2.0], [0.0, 0.0]])  # hiding (0,1) now helps: 1 > 1 - 2
    drop, inc = confidence_change(up, x, maps, t)
    assert drop.item() == 0.0 and inc.item() == 1.0


# ------------------------------------------------------------------- references


def _small_cnn(seed: int, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    ).eval()


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def test_deletion_matches_quantus_pixel_flipping():
    """Quantus 0.6.0 PixelFlipping on the same maps: its curve is points 1..steps of ours (it
    records no point for the unedited input), with 3 channels x 4 pixels = 12 features a step,
    and its "black" baseline (the input's minimum) passed to ours as a tensor. Its AUC is
    np.trapz(dx=1) over its points."""
    quantus = pytest.importorskip("quantus", reason="Quantus is not installed (see the test extras)")
    g = torch.Generator().manual_seed(0)
    model = _small_cnn(0)
    x = torch.randn(4, 3, 6, 6, generator=g)
    maps = torch.rand(4, 6, 6, generator=g)  # distinct values: no ties
    y = torch.tensor([0, 1, 2, 3])
    # 36 pixels / 9 steps = 4 pixels a step = 12 features of Quantus's (it wants the step to
    # divide the pixel count, 36 % 12 == 0)
    steps = 9
    theirs = quantus.PixelFlipping(
        features_in_step=12, perturb_baseline="black", normalise=False, abs=False, disable_warnings=True
    )(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu", softmax=True)
    theirs = np.asarray(theirs, dtype=np.float64)
    black = x.amin(dim=(1, 2, 3), keepdim=True)
    ours = deletion_curve(model, x, maps, y, steps=steps, baseline=black).double().numpy()
    assert theirs.shape == (4, steps)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-5)
    auc_theirs = quantus.PixelFlipping(
        features_in_step=12, perturb_baseline="black", normalise=False, abs=False, disable_warnings=True,
        return_auc_per_sample=True,
    )(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu", softmax=True)
    np.testing.assert_allclose(np.trapz(ours[:, 1:], dx=1, axis=1), np.asarray(auc_theirs), atol=1e-5)
    # and ours is the trapezoid over the fraction removed, starting at the unedited input
    full = torch.from_numpy(ours)
    np.testing.assert_allclose(curve_auc(full).numpy(), np.trapz(ours, dx=1 / steps, axis=1), atol=1e-9)


def test_average_drop_and_increase_match_pytorch_grad_cam():
    """pytorch-grad-cam 1.5.7's DropInConfidence / IncreaseInConfidence on our explanation maps
    (the maps min-max scaled, as its CAMs are), with softmax targets: its drop is
    max(0, Y - O), ours (Y - O)+ / Y; its increase is our indicator."""
    from test_methods_reference import _import_pgc

    pgc = _import_pgc()
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence

    targets_mod = __import__("pytorch_grad_cam.utils.model_targets", fromlist=["ClassifierOutputSoftmaxTarget"])
    assert pgc is not None
    g = torch.Generator().manual_seed(1)
    model = _small_cnn(1)
    x = torch.randn(6, 3, 10, 10, generator=g)
    maps = torch.randn(6, 10, 10, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    cams = explanation_map(maps).numpy().astype(np.float32)
    softmax_targets = [targets_mod.ClassifierOutputSoftmaxTarget(int(c)) for c in y]
    their_drop = np.asarray(DropInConfidence()(x, cams, softmax_targets, model), dtype=np.float64).ravel()
    their_inc = np.asarray(IncreaseInConfidence()(x, cams, softmax_targets, model), dtype=np.float64).ravel()
    with torch.no_grad():
        base = model(x).softmax(1)[torch.arange(6), y].double().numpy()
    ours_drop = average_drop(model, x, maps, y).double().numpy()
    ours_inc = increase_in_confidence(model, x, maps, y).double().numpy()
    np.testing.assert_allclose(ours_drop * base, their_drop, atol=1e-6)
    np.testing.assert_array_equal(ours_inc, their_inc)
    assert 0 < their_inc.sum() < 6 or their_drop.max() > 0  # the case is not degenerate


# ------------------------------------------------------------------- in a run


def test_registered_metrics_take_maps_into_the_input_space_by_the_images_crop():
    """The registered columns (what a run scores) get maps at the image's original size and a
    ModelAccess; they equal the plain functions on the maps taken through the model's own
    resize and center crop (InputSpace), not on a plain resize of the whole map."""
    from bench.metrics import METRICS, ModelAccess, TruthBatch
    from bench.models.input_space import InputSpace
    from bench.models.transforms import CenterCropEval

    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 30, 40, generator=g)
    preprocess = CenterCropEval(mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), resize=20, crop=16)
    space = InputSpace(preprocess, "crop-model")
    model = _small_cnn(1).eval()
    inputs = torch.stack([preprocess(im) for im in images])
    targets = torch.tensor([0, 3, 1])
    maps = torch.rand(3, 30, 40, generator=g)
    maps[2] = 0.5  # constant: undefined
    access = ModelAccess(model, inputs, targets, chunk=7, to_input=space.maps)
    truth = TruthBatch(masks=torch.ones(3, 30, 40, dtype=torch.bool))
    in_space = space.maps(maps)
    assert in_space.shape == (3, 16, 16)
    expected = {
        "deletion": deletion(model, inputs, in_space, targets, steps=4),
        "insertion": insertion(model, inputs, in_space, targets, steps=4),
        "average_drop": average_drop(model, inputs, in_space, targets),
        "increase_in_confidence": increase_in_confidence(model, inputs, in_space, targets),
    }
    for name, want in expected.items():
        params = {"steps": 4} if name in ("deletion", "insertion") else {}
        got = METRICS.get(name).score(maps, truth, model=access, **params)
        assert METRICS.get(name).requires == ("model",)
        assert torch.allclose(got[:2], want[:2], atol=1e-6) and math.isnan(got[2])  # constant as given: NaN
    naive = torch.nn.functional.interpolate(maps[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert not torch.allclose(naive[:2], in_space[:2], atol=1e-3)  # the crop matters


