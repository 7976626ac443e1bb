"""Hand-computed cases that pin each method's convention (tiny models whose attributions are
known in closed form)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.methods import create_method
from bench.methods.gradient import ig_alphas
from bench.methods.perturbation import window_starts


class Linear(nn.Module):
    """logit_k(x) = sum(W_k * x) + b_k: gradient W_k, IG (x - x') * W_k, occlusion drop of a
    window = sum over it of W_k * (x - baseline)."""

    def __init__(self, shape=(3, 8, 8), classes=4):
        super().__init__()
        self.fc = nn.Linear(math.prod(shape), classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class GapLinear(nn.Module):
    """The input is the activation: features = identity (named so a layer can be hooked),
    global average pool, linear head."""

    def __init__(self, channels=4, classes=3):
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _w(model: Linear, targets: torch.Tensor, shape) -> torch.Tensor:
    return model.fc.weight.detach()[targets].reshape(-1, *shape)


# -- gradient family -----------------------------------------------------------------------------


def test_gradient_methods_on_a_linear_model():
    torch.manual_seed(0)
    model = Linear().eval()
    x = torch.randn(3, 3, 8, 8)
    t = torch.tensor([2, 0, 3])
    w = _w(model, t, (3, 8, 8))
    torch.testing.assert_close(create_method("gradient")(model, x, t), w.abs().amax(1))
    torch.testing.assert_close(create_method("gradient", reduce="sum")(model, x, t), w.sum(1))
    torch.testing.assert_close(create_method("gradient_x_input")(model, x, t), (w * x).abs().sum(1))
    # IG is exact on a linear model for any quadrature whose weights sum to 1.
    for method in ("gausslegendre", "riemann_trapezoid", "riemann_middle"):
        ig = create_method("integrated_gradients", steps=3, baseline=0.5, method=method, reduce="sum")
        torch.testing.assert_close(ig(model, x, t), ((x - 0.5) * w).sum(1))
    # SmoothGrad of a linear model: the gradient does not depend on the noise.
    torch.testing.assert_close(create_method("smoothgrad", n_samples=3)(model, x, t), w.abs().amax(1))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"])
def test_ig_quadrature_integrates_polynomials(method):
    alphas, weights = ig_alphas(8, method)
    assert sum(weights) == pytest.approx(1.0)
    exact_for = {"gausslegendre": 15, "riemann_trapezoid": 1, "riemann_middle": 1}.get(method, 0)
    for degree in range(exact_for + 1):
        approx = sum(w * a**degree for a, w in zip(alphas, weights))
        assert approx == pytest.approx(1 / (degree + 1), abs=1e-9)


def test_ig_completeness_on_a_nonlinear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    x = torch.randn(4, 3, 4, 4)
    t = torch.tensor([0, 1, 2, 4])
    maps = create_method("integrated_gradients", steps=32, reduce="sum", internal_batch_size=10)(model, x, t)
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x))).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(maps.sum((1, 2)), delta, rtol=1e-4, atol=1e-5)


# -- perturbation family -------------------------------------------------------------------------


def test_window_starts_cover_the_border():
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(9, 4, 4) == [0, 4, 5]
    assert window_starts(4, 4, 2) == [0]
    with pytest.raises(ValueError, match="larger than the input"):
        window_starts(4, 5, 1)


def test_occlusion_on_a_linear_model_by_hand():
    torch.manual_seed(0)
    model = Linear(shape=(1, 4, 4), classes=2).eval()
    x = torch.randn(1, 1, 4, 4)
    t = torch.tensor([1])
    contrib = (_w(model, t, (1, 4, 4)) * (x - 0.25))[0, 0]  # what each pixel adds to the logit
    out = create_method("occlusion", window=2, stride=1, baseline=0.25)(model, x, t)[0]
    expected = torch.zeros(4, 4)
    counts = torch.zeros(4, 4)
    for y in range(3):
        for x0 in range(3):
            drop = contrib[y:y + 2, x0:x0 + 2].sum()
            expected[y:y + 2, x0:x0 + 2] += drop
            counts[y:y + 2, x0:x0 + 2] += 1
    torch.testing.assert_close(out, expected / counts)
    # A window the size of the image: every pixel gets the whole logit drop.
    whole = create_method("occlusion", window=4, stride=4, baseline=0.25)(model, x, t)[0]
    torch.testing.assert_close(whole, torch.full((4, 4), float(contrib.sum())))


def test_rise_finds_the_pixels_the_logit_reads():
    class Corners(nn.Module):
        def forward(self, x):  # logit 0 reads the top-left 4x4 block, logit 1 the bottom-right
            return torch.stack([x[..., :4, :4].mean((1, 2, 3)), x[..., 12:, 12:].mean((1, 2, 3))], dim=1)

    x = torch.ones(1, 3, 16, 16)
    rise = create_method("rise", n_masks=500, cell=4, p=0.5, softmax=False)
    top = rise(Corners(), x, torch.tensor([0]), seeds=[3])[0]
    bottom = rise(Corners(), x, torch.tensor([1]), seeds=[3])[0]
    assert top[:4, :4].mean() > 1.2 * top[12:, 12:].mean()
    assert bottom[12:, 12:].mean() > 1.2 * bottom[:4, :4].mean()
    # Far from the block the mask is independent of the score: E[score M] / p = E[score] = p.
    assert top[12:, 12:].mean() == pytest.approx(0.5, rel=0.15)


# -- CAM family ----------------------------------------------------------------------------------


def test_cam_equals_gradcam_times_hw_on_a_gap_linear_model():
    torch.manual_seed(0)
    model = GapLinear().eval()
    acts = torch.randn(5, 4, 6, 7)
    t = torch.tensor([0, 2, 1, 1, 2])
    cam = create_method("cam", layer="features", relu=False)(model, acts, t)
    grad_cam = create_method("gradcam", layer="features", relu=False)(model, acts, t)
    torch.testing.assert_close(cam, grad_cam * 42, rtol=1e-5, atol=1e-6)
    by_hand = torch.einsum("bc,bchw->bhw", model.fc.weight.detach()[t], acts)
    torch.testing.assert_close(cam, by_hand)
    rectified = create_method("cam", layer="features", fc="fc")(model, acts, t)
    torch.testing.assert_close(rectified, by_hand.clamp_min(0))


def test_cam_refuses_a_head_that_does_not_match_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="4 channels"):
        create_method("cam", layer="0")(model.eval(), torch.randn(1, 3, 8, 8), torch.tensor([1]))


def test_layercam_and_xgradcam_on_a_gap_linear_model():
    # On GAP + linear the gradient is W[t, c] / (h w) at every position.
    torch.manual_seed(0)
    model = GapLinear().eval()
    acts = torch.rand(2, 4, 3, 3)
    t = torch.tensor([1, 0])
    w = model.fc.weight.detach()[t] / 9  # B x C
    layer = create_method("layercam", layer="features")(model, acts, t)
    torch.testing.assert_close(layer, torch.einsum("bc,bchw->bhw", w.clamp_min(0), acts).clamp_min(0))
    # XGrad-CAM: sum_xy(g A) / sum_xy(A) = g for a constant gradient, so it equals Grad-CAM.
    x = create_method("xgradcam", layer="features")(model, acts, t)
    torch.testing.assert_close(x, create_method("gradcam", layer="features")(model, acts, t), rtol=1e-5, atol=1e-6)


def test_gradcampp_weights_by_hand():
    # One channel, constant gradient g = w/(hw): alpha = g^2 / (2 g^2 + S g^3 + eps) everywhere,
    # weight = hw * alpha * relu(g).
    model = GapLinear(channels=1, classes=1).eval()
    with torch.no_grad():
        model.fc.weight.fill_(2.0)
    acts = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    g, s = 2.0 / 4, 10.0
    for eps in (0.0, 1e-6):
        alpha = g**2 / (2 * g**2 + s * g**3 + eps)
        out = create_method("gradcampp", layer="features", eps=eps)(model, acts, torch.tensor([0]))
        torch.testing.assert_close(out, 4 * alpha * g * acts[:, 0])


def test_scorecam_probability_weighting_ignores_constant_channels():
    class WithConstant(nn.Module):
        """Appends a constant channel (value ``v``) that the rest of the model never reads."""

        def __init__(self, v):
            super().__init__()
            self.v = v

        def forward(self, x):
            return torch.cat([x, torch.full_like(x[:, :1], self.v)], dim=1)

    def model(v):
        torch.manual_seed(0)
        m = nn.Sequential(WithConstant(v), nn.Conv2d(4, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
        with torch.no_grad():
            m[1].weight[:, 3] = 0
        return m.eval()

    x = torch.rand(2, 3, 6, 6)
    t = torch.tensor([2, 1])
    prob = create_method("scorecam", layer="0", weighting="probability", relu=False)
    torch.testing.assert_close(prob(model(0.7), x, t), prob(model(0.2), x, t))
    soft = create_method("scorecam", layer="0", relu=False)
    diff = soft(model(0.7), x, t) - soft(model(0.2), x, t)  # the constant channel's weight x 0.5
    assert (diff > 0).all()
    torch.testing.assert_close(diff, diff[:, :1, :1].expand_as(diff))


def test_eigencam_recovers_a_rank_one_pattern_with_a_fixed_sign():
    s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 0.0]])
    u = torch.tensor([1.0, 2.0, 0.5, 1.5])
    acts = (u[:, None, None] * s)[None]
    out = create_method("eigencam", layer="features", relu=False)(GapLinear().eval(), acts, torch.tensor([0]))[0]
    centred = s - s.mean()
    expected = centred * u.norm()  # projection on the unit principal direction u/|u|
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    flipped = create_method("eigencam", layer="features", relu=False)(GapLinear().eval(), -acts, torch.tensor([0]))[0]
    # -A has principal direction -u; the sign rule (non-negative component sum) flips it back.
    torch.testing.assert_close(flipped, -expected, rtol=1e-4, atol=1e-5)


# -- transformer family --------------------------------------------------------------------------


class FixedAttention(nn.Module):
    """A one-block "transformer" whose attention probabilities are given; the class token's
    output is (A V)[0] . w, so d logit / d A[0, j] = V_j . w and other rows get no gradient."""

    def __init__(self, attn: torch.Tensor, values: torch.Tensor, w: torch.Tensor):
        super().__init__()
        self.attn_drop = nn.Identity()
        self.register_buffer("a", attn)
        self.register_buffer("v", values)
        self.register_buffer("w", w)

    def forward(self, x):
        a = self.attn_drop(self.a.expand(x.shape[0], -1, -1, -1) * (1 + 0 * x.sum()))
        out = (a.mean(1) @ self.v)[:, 0] @ self.w
        return torch.stack([out, -out], dim=1)


def _attention(t: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 2, t, t, generator=gen).softmax(-1)


def test_attention_rollout_by_hand():
    a1, a2 = _attention(5, 0), _attention(5, 1)  # class token + 2x2 patches, 2 heads

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1, self.b2 = FixedAttention(a1, torch.eye(5), torch.ones(5)), FixedAttention(a2, torch.eye(5), torch.ones(5))

        def forward(self, x):
            return self.b1(x) + self.b2(x)

    def step(a):
        m = 0.5 * a[0].mean(0) + 0.5 * torch.eye(5)
        return m / m.sum(-1, keepdim=True)

    expected = (step(a2) @ step(a1))[0, 1:].reshape(2, 2)
    out = create_method("attention_rollout")(Two().eval(), torch.zeros(1, 3, 4, 4), torch.tensor([0]))
    torch.testing.assert_close(out[0], expected)
    fused_max = create_method("attention_rollout", head_fusion="max")(Two().eval(), torch.zeros(1, 3, 4, 4), torch.tensor([0]))
    assert not torch.allclose(fused_max, out)


def test_grad_rollout_by_hand():
    a = _attention(5, 2)
    values = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    w = torch.tensor([1.0, -2.0, 0.5])
    model = FixedAttention(a, values, w).eval()
    out = create_method("grad_rollout")(model, torch.zeros(1, 3, 4, 4), torch.tensor([0]))[0]
    # d logit / d A[h, 0, j] = (V_j . w) / heads; R = I + mean_h relu(grad * A); map = R[0, 1:].
    grad0 = (values @ w) / 2
    expected = torch.relu(grad0 * a[0, :, 0, :]).mean(0)[1:].reshape(2, 2)
    torch.testing.assert_close(out, expected)
    flipped = create_method("grad_rollout")(model, torch.zeros(1, 3, 4, 4), torch.tensor([1]))[0]
    torch.testing.assert_close(flipped, torch.relu(-grad0 * a[0, :, 0, :]).mean(0)[1:].reshape(2, 2))


def test_rollout_explains_a_missing_attention_module():
    with pytest.raises(ValueError, match="attn_pattern"):
        create_method("attention_rollout")(Linear().eval(), torch.zeros(1, 3, 8, 8), torch.tensor([0]))


def test_rollout_checks_the_patch_grid():
    model = FixedAttention(_attention(5, 0), torch.eye(5), torch.ones(5)).eval()
    with pytest.raises(ValueError, match="prefix_tokens"):
        create_method("attention_rollout", prefix_tokens=2)(model, torch.zeros(1, 3, 4, 4), torch.tensor([0]))


# -- baselines -----------------------------------------------------------------------------------


def test_baselines_by_hand():
    x = torch.zeros(2, 3, 5, 7)
    t = torch.tensor([0, 1])
    center = create_method("center", sigma=0.25)(None, x, t)
    assert center.shape == (2, 5, 7)
    assert center[0].argmax() == 2 * 7 + 3  # the middle pixel
    torch.testing.assert_close(center[0], center[0].flip(0))
    torch.testing.assert_close(center[0], center[0].flip(1))
    # value at pixel (row 2, col 0): x offset (0.5/7 - 0.5), y offset 0
    assert center[0, 2, 0].item() == pytest.approx(math.exp(-((0.5 / 7 - 0.5) ** 2) / (2 * 0.25**2)), rel=1e-5)
    assert torch.equal(create_method("uniform")(None, x, t), torch.ones(2, 5, 7))
    rand = create_method("random", cell=2)(None, x, t, seeds=[1, 2])
    assert rand.shape == (2, 5, 7) and not torch.allclose(rand[0], rand[1])
    assert (rand >= 0).all() and (rand <= 1).all()
