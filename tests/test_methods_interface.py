"""The one method interface: registry and metadata, labels and parameter checks, and the batch
contract every method keeps (a batch of 16 images with 16 different targets gives the maps of 16
single-image calls; no host sync; per-image seeds; chunking invisible)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.methods import METHODS, AttributionMethod, MethodConfigError, create_method
from bench.methods.base import FAMILIES, REDUCTIONS, reduce_channels

N_CLASSES = 16

EXPECTED = {
    "cam": "cam", "gradcam": "cam", "gradcampp": "cam", "xgradcam": "cam", "layercam": "cam",
    "scorecam": "cam", "eigencam": "cam",
    "gradient": "gradient", "gradient_x_input": "gradient", "smoothgrad": "gradient",
    "integrated_gradients": "gradient",
    "occlusion": "perturbation", "rise": "perturbation",
    "attention_rollout": "transformer", "grad_rollout": "transformer", "raw_attention": "transformer",
    "center": "baseline", "uniform": "baseline", "random": "baseline",
}
# Methods whose map does not depend on the target by design.
CLASS_AGNOSTIC = {"eigencam", "attention_rollout", "raw_attention", "center", "uniform", "random"}
# Small settings so the batch test stays fast; internal batch sizes that do not divide the work
# so chunk boundaries fall inside images.
SMALL = {
    "scorecam": {"internal_batch_size": 7},
    "smoothgrad": {"n_samples": 4, "internal_batch_size": 5},
    "integrated_gradients": {"steps": 8, "internal_batch_size": 7},
    "occlusion": {"window": 8, "stride": 8, "internal_batch_size": 11},
    "rise": {"n_masks": 24, "cell": 8, "internal_batch_size": 7},
}


class SmallCNN(nn.Module):
    """Conv features, global average pool, linear head: every CNN method applies."""

    def __init__(self, classes: int = N_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class Attention(nn.Module):
    """timm's layout: the softmaxed probabilities pass through ``attn_drop``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A ViT in miniature: 8x8 patches, class token, 2 blocks, head on the class token."""

    def __init__(self, classes: int = N_CLASSES, dim: int = 16, depth: int = 2, heads: int = 2, size: int = 32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, (size // 8) ** 2 + 1, dim) * 0.5)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def _model_for(name: str) -> tuple[nn.Module, str | None]:
    torch.manual_seed(0)
    if EXPECTED[name] == "transformer":
        return TinyViT().eval(), None
    return SmallCNN().eval(), "features.4"


def _method(name: str) -> AttributionMethod:
    _, layer = _model_for(name)
    return create_method(name, **SMALL.get(name, {})).with_model_defaults(layer)


def _inputs(b: int = 16) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, 3, 32, 32, generator=gen)
    targets = torch.randperm(N_CLASSES, generator=gen)[:b]
    return x, targets, [1000 + 7 * i for i in range(b)]


# -- registry and metadata ---------------------------------------------------------------------


def test_every_method_is_registered_with_family_description_and_defaults():
    for name, family in EXPECTED.items():
        cls = METHODS.get(name)
        assert cls.family == family, name
        assert cls.description, name
        assert isinstance(cls.defaults, dict), name
        described = cls().describe()
        assert described["family"] == family and described["params"] == cls.defaults
    assert set(EXPECTED) <= set(METHODS.names())
    assert all(METHODS.get(n).family in FAMILIES for n in METHODS.names())
    assert set(METHODS.prefixes()) == {"captum", "pytorch_grad_cam"}


def test_label_holds_the_defining_parameters_but_not_the_chunk_size():
    ig = create_method("integrated_gradients", steps=64, internal_batch_size=8)
    assert ig.label == "integrated_gradients[steps=64]"
    assert ig.describe()["params"]["internal_batch_size"] == 8
    assert create_method("integrated_gradients", steps=16).label != ig.label
    assert create_method("gradcam").label == "gradcam"
    bound = create_method("gradcam").with_model_defaults("features.4")
    assert bound.params["layer"] == "features.4" and bound.label == "gradcam"
    assert create_method("gradcam", layer="x").with_model_defaults("features.4").params["layer"] == "x"


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("integrated_gradients", {"step": 8}, "did you mean 'steps'"),
        ("integrated_gradients", {"steps": "8"}, "must be int"),
        ("integrated_gradients", {"method": "simpson"}, "must be one of"),
        ("gradient", {"reduce": "max"}, "must be one of"),
        ("scorecam", {"weighting": "logit"}, "must be one of"),
        ("rise", {"p": True}, "must be float"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(name, params, match):
    with pytest.raises(MethodConfigError, match=match):
        create_method(name, **params)


def test_unknown_method_suggests_a_name():
    with pytest.raises(KeyError, match="did you mean 'gradcam'"):
        METHODS.get("gradcamm")


def test_call_checks_targets_and_seeds():
    model, _ = _model_for("gradcam")
    x, targets, _ = _inputs(4)
    with pytest.raises(ValueError, match="one target index per image"):
        create_method("gradcam", layer="features.4")(model, x, targets[:3])
    with pytest.raises(ValueError, match="one seed per image"):
        create_method("random")(model, x, targets, seeds=[1, 2])
    with pytest.raises(MethodConfigError, match="needs a target layer"):
        create_method("gradcam")(model, x, targets)
    with pytest.raises(ValueError, match="did you mean 'features.4'"):
        create_method("gradcam", layer="features.44")(model, x, targets)


def test_a_module_that_runs_twice_is_refused_as_target_layer():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.act = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU6()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = self.act(self.conv2(self.act(self.conv1(x))))
            return self.fc(x.mean((2, 3)))

    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="more than once"):
        create_method("gradcam", layer="act")(Shared().eval(), x, torch.tensor([0, 1]))
    out = create_method("gradcam", layer="conv2:relu6")(Shared().eval(), x, torch.tensor([0, 1]))
    assert out.shape == (2, 12, 12)


# -- the batch contract --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_batch_of_16_with_16_targets_equals_16_single_calls(name):
    model, _ = _model_for(name)
    method = _method(name)
    x, targets, seeds = _inputs(16)
    assert len(set(targets.tolist())) == 16
    batch = method(model, x, targets, seeds=seeds)
    singles = torch.cat([method(model, x[i:i + 1], targets[i:i + 1], seeds=seeds[i:i + 1]) for i in range(16)])
    assert batch.ndim == 3 and batch.shape[0] == 16 and batch.dtype == torch.float32
    assert torch.isfinite(batch).all()
    scale = batch.abs().max()
    assert scale > 0, f"{name} returned all-zero maps"
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5 * float(scale))
    if EXPECTED[name] in ("gradient", "perturbation", "baseline"):
        assert batch.shape[-2:] == x.shape[-2:], "gradient and perturbation maps are at input resolution"
    if name not in CLASS_AGNOSTIC:
        # Silently ignoring the targets (e.g. always explaining the top class) must show.
        other = method(model, x, targets.roll(1), seeds=seeds)
        assert not torch.allclose(batch, other), f"{name} ignores the target"


class _HostSyncWatch(TorchFunctionMode):
    """Records the tensor calls that copy a value to the host (a GPU sync). On the CPU a
    ``.to(device)`` of a CPU-made tensor cannot be told apart, so ``.to`` is not watched."""

    SYNC = {
        torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
        torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__,
    }

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SYNC:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_method_copies_values_to_the_host(name):
    model, _ = _model_for(name)
    method = _method(name)
    x, targets, seeds = _inputs(3)
    with _HostSyncWatch() as watch:
        method(model, x, targets, seeds=seeds)
    assert watch.seen == [], f"{name} syncs with the host via {sorted(set(watch.seen))}"


@pytest.mark.parametrize("name", [n for n in sorted(SMALL)])
def test_internal_batch_size_does_not_change_the_maps(name):
    model, layer = _model_for(name)
    x, targets, seeds = _inputs(3)
    params = {k: v for k, v in SMALL[name].items() if k != "internal_batch_size"}
    a = create_method(name, internal_batch_size=1, **params).with_model_defaults(layer)
    b = create_method(name, internal_batch_size=1000, **params).with_model_defaults(layer)
    out_a, out_b = a(model, x, targets, seeds=seeds), b(model, x, targets, seeds=seeds)
    torch.testing.assert_close(out_a, out_b, rtol=1e-4, atol=1e-5 * float(out_b.abs().max()))


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if METHODS.get(n).stochastic))
def test_stochastic_methods_follow_the_image_seed(name):
    assert name in {"smoothgrad", "rise", "random"}
    model, _ = _model_for(name)
    method = _method(name)
    x, targets, _ = _inputs(2)
    same = x[:1].expand(2, -1, -1, -1)
    t = targets[:1].expand(2)
    one = method(model, same, t, seeds=[5, 5])
    torch.testing.assert_close(one[0], one[1])
    two = method(model, same, t, seeds=[5, 6])
    assert not torch.allclose(two[0], two[1])
    torch.testing.assert_close(method(model, same, t), method(model, same, t, seeds=[0, 0]))


def test_reduce_channels_rules_by_hand():
    a = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])  # 1 x 3 x 1 x 1
    assert reduce_channels(a, "abs_max").item() == 3.0
    assert reduce_channels(a, "abs_sum").item() == 6.0
    assert reduce_channels(a, "sum").item() == 0.0
    assert reduce_channels(a, "l2").item() == pytest.approx(14.0 ** 0.5)
    assert set(REDUCTIONS) == {"abs_max", "abs_sum", "sum", "l2"}
