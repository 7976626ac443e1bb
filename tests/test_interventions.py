"""Measured reliance by intervention (bench.interventions): hand-computed removals, the removed
pixels after the input transform, controls, the NaN policy, and the harbor models' ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.interventions import (
    PARTS,
    control_draw,
    control_regions,
    gaussian_blur,
    measure_reliance,
    remove,
)
from bench.models.input_space import InputSpace
from bench.models.transforms import ResizeNormalize


class Recorder(nn.Module):
    """Returns fixed logits and keeps every input it is run on."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.zeros(x.shape[0], 2)


class ObjectSum(nn.Module):
    """logit 0 = sum of channel 0 over the pixels of ``weight``; logit 1 = 0."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.float())

    def forward(self, x):
        z = (x[:, 0] * self.weight).flatten(1).sum(dim=1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def test_mean_removal_by_hand():
    # channel 0 = [[1, 2, 3], [4, 5, 6]], channel 1 = 10x, channel 2 = 0; remove (0,1) and (1,1).
    x = torch.zeros(1, 3, 2, 3)
    x[0, 0] = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    x[0, 1] = 10 * x[0, 0]
    region = torch.tensor([[[False, True, False], [False, True, False]]])
    out = remove(x, region, "mean")
    # mean outside the region: (1 + 3 + 4 + 6) / 4 = 3.5 in channel 0, 35 in channel 1
    expected = x.clone()
    expected[0, 0, :, 1] = 3.5
    expected[0, 1, :, 1] = 35.0
    assert torch.equal(out, expected)
    # a region covering everything falls back to the whole image's mean
    everything = torch.ones(1, 2, 3, dtype=torch.bool)
    assert torch.allclose(remove(x, everything, "mean")[0, 0], torch.full((2, 3), 3.5))


def test_blur_removal_changes_only_the_region():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 24, generator=g)
    region = torch.rand(2, 20, 24, generator=g) > 0.6
    out = remove(x, region, "blur", blur_sigma=0.1)
    blurred = gaussian_blur(x, 0.1 * 20)
    assert torch.equal(out[~region[:, None].expand_as(x)], x[~region[:, None].expand_as(x)])
    assert torch.equal(out[region[:, None].expand_as(x)], blurred[region[:, None].expand_as(x)])
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)  # weights sum to 1, borders replicated
    with pytest.raises(ValueError, match="unknown removal mode"):
        remove(x, region, "erase")


def test_removed_pixels_are_exactly_context_minus_object_after_the_input_transform():
    # Original 8x8 image, model input 16x16 (bilinear, half-pixel centres): a rectangle of
    # original pixels becomes exactly the doubled rectangle (an input pixel next to the border
    # is covered 0.75 * 0.25 at most along one axis, below half).
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    obj = torch.zeros(1, 8, 8, dtype=torch.bool)
    obj[0, 2:5, 3:6] = True
    ctx = torch.zeros(1, 8, 8, dtype=torch.bool)
    ctx[0, 4:8, 0:8] = True  # the ground, overlapping the object's bottom row
    pre = ResizeNormalize((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    space = InputSpace(pre)
    inputs = pre(image)
    objects, contexts = space.masks(obj), space.masks(ctx)
    expected_obj = torch.zeros(1, 16, 16, dtype=torch.bool)
    expected_obj[0, 4:10, 6:12] = True
    expected_ctx = torch.zeros(1, 16, 16, dtype=torch.bool)
    expected_ctx[0, 8:16, :] = True
    assert torch.equal(objects, expected_obj) and torch.equal(contexts, expected_ctx)

    model = Recorder()
    res = measure_reliance(model, inputs, torch.tensor([0]), objects, contexts, torch.tensor([0.5]), modes=("mean",))["mean"]
    assert res.drop_prob["control_context"].item() == 0.0 and res.drop_prob["control_object"].item() == 0.0
    assert PARTS == ("context", "object", "control_context", "control_object")
    original, context_removed, object_removed, control_context, control_object = model.seen
    assert torch.equal(original, inputs)
    changed = (context_removed != original).any(dim=1)
    assert torch.equal(changed, expected_ctx & ~expected_obj)
    assert torch.equal((object_removed != original).any(dim=1), expected_obj)
    # The object's control: 36 pixels, like the object, outside both object and context. The
    # context's control would need 128 - 12 = 116 pixels, but only 256 - 128 - 24 = 104 are
    # free: it is all of them, and its area is recorded.
    moved = (control_object != original).any(dim=1)
    assert int(moved.sum()) == 36 and not (moved & (expected_obj | expected_ctx)).any()
    moved = (control_context != original).any(dim=1)
    assert torch.equal(moved, ~expected_obj & ~expected_ctx)
    assert res.area["control_context"].item() == pytest.approx(104 / 256)
    assert res.area["context"].item() == pytest.approx(116 / 256)


def test_drops_by_hand_and_the_nan_policy():
    # The model's logit is the sum of channel 0 over the object (ones there, zeros elsewhere).
    # Mean removal of the object fills it with the mean outside it, 0: the logit drops from
    # |object| = 4 to 0 and the probability from sigmoid(4) to 1/2. Context and controls hold
    # zeros where the model does not look: their drops are exactly 0.
    h, w = 6, 6
    obj = torch.zeros(h, w, dtype=torch.bool)
    obj[1:3, 1:3] = True
    ctx = torch.zeros(h, w, dtype=torch.bool)
    ctx[4:6, :] = True
    x = torch.zeros(2, 3, h, w)
    x[:, 0][:, obj] = 1.0
    objects = obj.expand(2, h, w).clone()
    contexts = torch.stack([ctx, torch.zeros_like(ctx)])  # image 1 has no context at all
    res = measure_reliance(ObjectSum(obj), x, torch.tensor([0, 0]), objects, contexts, torch.tensor([0.2, 0.7]), modes=("mean",))["mean"]
    sig4 = 1 / (1 + math.exp(-4))
    assert res.prob.tolist() == pytest.approx([sig4, sig4])
    assert res.drop_logit["object"].tolist() == pytest.approx([4.0, 4.0])
    assert res.drop_prob["object"].tolist() == pytest.approx([sig4 - 0.5] * 2)
    assert res.drop_prob["control_object"].tolist() == [0.0, 0.0]
    assert res.object_reliance.tolist() == pytest.approx([sig4 - 0.5] * 2)
    assert res.drop_prob["context"][0].item() == 0.0 and res.drop_prob["control_context"][0].item() == 0.0
    assert res.context_reliance[0].item() == 0.0
    # No context: NaN, never 0, for the context drops, its control and the context reliance.
    for values in (res.drop_prob["context"], res.drop_logit["context"], res.drop_prob["control_context"], res.context_reliance):
        assert math.isnan(values[1].item())
    assert int(torch.isnan(res.context_reliance).sum()) == 1
    assert res.area["context"].tolist() == pytest.approx([12 / 36, 0.0])
    assert res.area["object"].tolist() == pytest.approx([4 / 36, 4 / 36])


def test_control_regions_by_hand():
    free = torch.zeros(3, 4, 8, dtype=torch.bool)
    free[:, 2, :] = True  # one free row of 8 pixels
    regions, ok = control_regions(free, torch.tensor([3, 3, 9]), torch.tensor([0.0, 0.99, 0.5]))
    assert ok.tolist() == [True, True, True]
    # draw 0 -> seed at the first free pixel (column 0): its 3 nearest are columns 0, 1, 2;
    # draw 0.99 -> the 8th free pixel (column 7): columns 5, 6, 7. 9 > 8 free pixels: all 8.
    assert regions[0, 2].nonzero().flatten().tolist() == [0, 1, 2]
    assert regions[1, 2].nonzero().flatten().tolist() == [5, 6, 7]
    assert torch.equal(regions[2], free[2])
    # No free pixel, or nothing to match: undefined, empty.
    regions, ok = control_regions(torch.zeros(2, 4, 8, dtype=torch.bool) | torch.tensor([False, True])[:, None, None], torch.tensor([3, 0]), torch.tensor([0.5, 0.5]))
    assert ok.tolist() == [False, False] and not regions.any()
    # Equidistant pixels: the lower row-major index first (seed column 3; 4 and 2 tie at 1).
    regions, _ = control_regions(free[:1], torch.tensor([2]), torch.tensor([3.5 / 8]))
    assert regions[0, 2].nonzero().flatten().tolist() == [2, 3]


def test_control_regions_have_the_exact_area_inside_the_free_pixels():
    g = torch.Generator().manual_seed(3)
    free = torch.rand(16, 24, 24, generator=g) > 0.4
    areas = torch.randint(1, 200, (16,), generator=g)
    draws = torch.rand(16, generator=g, dtype=torch.float64)
    regions, ok = control_regions(free, areas, draws)
    assert ok.all()
    assert regions.flatten(1).sum(dim=1).tolist() == areas.tolist()
    assert not (regions & ~free).any()
    again, _ = control_regions(free[5:6], areas[5:6], draws[5:6])
    assert torch.equal(again[0], regions[5])  # per item, not per batch


def test_control_draw_is_a_pure_function_of_seed_image_and_target():
    a = control_draw(0, "img-1", "boat")
    assert a == control_draw(0, "img-1", "boat") and 0 <= a < 1
    assert len({a, control_draw(1, "img-1", "boat"), control_draw(0, "img-2", "boat"), control_draw(0, "img-1", "car")}) == 4


def test_a_batch_gives_what_its_items_give():
    g = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(5, 3, 12, 12, generator=g)
    objects = torch.rand(5, 12, 12, generator=g) > 0.8
    contexts = (torch.rand(5, 12, 12, generator=g) > 0.5) & ~objects
    contexts[2] = False
    targets = torch.tensor([0, 1, 2, 0, 1])
    draws = torch.rand(5, generator=g, dtype=torch.float64)
    whole = measure_reliance(model, x, targets, objects, contexts, draws, max_batch=2)
    for i in range(5):
        one = measure_reliance(model, x[i : i + 1], targets[i : i + 1], objects[i : i + 1], contexts[i : i + 1], draws[i : i + 1])
        for mode in whole:
            for part in PARTS:
                a, b = whole[mode].drop_prob[part][i], one[mode].drop_prob[part][0]
                assert (math.isnan(a) and math.isnan(b)) or a.item() == pytest.approx(b.item(), abs=1e-6)


# ------------------------------------------------------------------------ harbor models


@pytest.fixture(scope="module")
def harbor_jobs():
    from bench.data.registry import load_dataset
    from bench.data.synthetic import CLASSES

    ds = load_dataset("harbor", split="test", n=88, seed=1, size=96)  # 4 cycles of the 22 cells
    x, y, obj, ctx, draws, ids = [], [], [], [], [], []
    for i in range(len(ds)):
        s = ds[i]
        for t in s.targets:
            x.append(s.image)
            y.append(CLASSES.index(t.label))
            obj.append(t.mask)
            ctx.append(t.context_union())
            draws.append(control_draw(0, s.image_id, t.label))
            ids.append(s.image_id)
    return torch.stack(x), torch.tensor(y), torch.stack(obj), torch.stack(ctx), torch.tensor(draws, dtype=torch.float64), ids


def test_harbor_mean_fill_context_reliance_orders_the_models(harbor_jobs):
    """With the mean-fill removal, per-row context reliance (minus the control) is higher for
    the contextual model than for the object-only one: the same order as the repaint reliance
    in models.json. Paired over the rows (same scenes, same masks, same controls)."""
    from bench.models import load_model
    from bench.report.stats import paired_test

    x, y, obj, ctx, draws, ids = harbor_jobs
    rel = {}
    for variant in ("contextual", "object_only"):
        bundle = load_model(f"harbor:{variant}", progress=False)
        assert bundle.preprocess(x[:1]).equal(x[:1])  # harbor input space = the scene
        res = measure_reliance(bundle.module, x, y, obj, ctx, draws, modes=("mean",))["mean"]
        rel[variant] = res.context_reliance.numpy()
    defined = ~np.isnan(rel["contextual"])
    assert np.array_equal(defined, ~np.isnan(rel["object_only"]))
    assert defined.sum() >= 20
    test = paired_test(rel["contextual"], rel["object_only"], clusters=np.array(ids))
    assert test.difference > 0.1 and test.low > 0, test
