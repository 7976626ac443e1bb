"""Adapters that say what they do: pytorch-grad-cam's AblationCAM sign (against the real
grad-cam package), Captum's output -> map conversion (channel reduction, sign) and its config
keys, and ``groundbench methods`` listing the adapter families with their import status."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from bench.cli import main as cli
from bench.methods import create_method

from test_methods_reference import SmallCNN, _import_pgc


class TwoChannelNet(nn.Module):
    """features: channel 0 = the red plane, channel 1 = the green plane (ReLU'd); the class-0
    logit is mean(ch0) + 0.5 mean(ch1) + bias, so ablating channel 0 drops it twice as much as
    channel 1 whatever the bias, and the bias sets the logit's sign."""

    def __init__(self, bias: float):
        super().__init__()
        conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
            conv.weight[1, 1] = 1.0
        self.features = nn.Sequential(conv, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5], [0.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([bias, 0.0]))

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _scene() -> torch.Tensor:
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, :4, :4] = 1.0  # red square: channel 0
    x[0, 1, -4:, -4:] = 1.0  # green square: channel 1
    return x


def _library_ablationcam(pgc, model, x, target):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with pgc.AblationCAM(model=model, target_layers=[model.features]) as cam:
        return torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))


def test_ablationcam_sign_is_fixed_where_the_target_score_is_negative():
    pgc = _import_pgc()
    x, t = _scene(), torch.tensor([0])
    positive, negative = TwoChannelNet(bias=1.0).eval(), TwoChannelNet(bias=-1.0).eval()
    assert positive(x)[0, 0] > 0 > negative(x)[0, 0]

    lib_pos = _library_ablationcam(pgc, positive, x, 0)
    lib_neg = _library_ablationcam(pgc, negative, x, 0)
    # The library's map where the logit is positive: red square 1, green square 0.5, rest 0.
    assert lib_pos[0, :4, :4].min() > 0.99 and abs(float(lib_pos[0, -2, -2]) - 0.5) < 0.02
    # The defect: a negative logit flips every weight; after the ReLU nothing is left.
    assert float(lib_neg.max()) == 0.0

    fixed_neg = create_method("pytorch_grad_cam:AblationCAM", layer="features")(negative, x, t)
    fixed_pos = create_method("pytorch_grad_cam:AblationCAM", layer="features")(positive, x, t)
    # Fixed: the same map as the positive logit's (weights differ by a positive factor only).
    torch.testing.assert_close(fixed_neg.cpu(), lib_pos, atol=1e-5, rtol=0)
    # Where the logit is positive the fix changes nothing, to the bit.
    assert torch.equal(fixed_pos.cpu(), lib_pos)
    # fix_score_sign = false reproduces the library, and is a distinct row label.
    raw = create_method("pytorch_grad_cam:AblationCAM", layer="features", fix_score_sign=False)
    assert torch.equal(raw(negative, x, t).cpu(), lib_neg)
    assert "fix_score_sign=False" in raw.label
    assert "fix_score_sign" not in create_method("pytorch_grad_cam:AblationCAM", layer="features").label


def test_only_score_dividing_classes_get_the_sign_parameter():
    _import_pgc()
    from bench.methods import METHODS

    assert METHODS.get("pytorch_grad_cam:AblationCAM").defaults["fix_score_sign"] is True
    assert "fix_score_sign" not in METHODS.get("pytorch_grad_cam:GradCAM").defaults
    assert "|target score|" in METHODS.get("pytorch_grad_cam:AblationCAM").description


# -- Captum: output -> map ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return model, x, torch.tensor([1, 5, 7])


def test_captum_layer_gradcam_conversion_is_stated_and_configurable(small):
    attr = pytest.importorskip("captum.attr")
    model, x, t = small
    ref = attr.LayerGradCam(model, model.features[3]).attribute(x, target=t)  # B x 1 x h x w, signed
    assert float(ref.min()) < 0  # no ReLU by default: the map is signed

    default = create_method("captum:LayerGradCam", layer="features.3")
    assert default.params["reduce"] == "sum" and default.params["sign"] == "keep"
    torch.testing.assert_close(default(model, x, t), ref[:, 0], rtol=0, atol=0)
    relu = create_method("captum:LayerGradCam", layer="features.3", sign="relu")
    torch.testing.assert_close(relu(model, x, t), ref[:, 0].clamp_min(0), rtol=0, atol=0)
    assert relu.label == "captum:LayerGradCam[layer=features.3,sign=relu]"
    # Captum's own switch gives the same map as sign = "relu".
    own = create_method("captum:LayerGradCam", layer="features.3", relu_attributions=True)
    torch.testing.assert_close(own(model, x, t), relu(model, x, t), rtol=0, atol=0)
    absolute = create_method("captum:LayerGradCam", layer="features.3", sign="abs")
    torch.testing.assert_close(absolute(model, x, t), ref[:, 0].abs(), rtol=0, atol=0)


def test_captum_input_attribution_channel_reduction(small):
    attr = pytest.importorskip("captum.attr")
    model, x, t = small
    ref = attr.InputXGradient(model).attribute(x.clone().requires_grad_(True), target=t).detach()
    cases = {
        None: ref.abs().sum(1),  # the default for input attributions
        "abs_max": ref.abs().amax(1),
        "sum": ref.sum(1),
        "l2": ref.pow(2).sum(1).sqrt(),
    }
    for reduce, expected in cases.items():
        params = {} if reduce is None else {"reduce": reduce}
        got = create_method("captum:InputXGradient", **params)(model, x, t)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    signed_relu = create_method("captum:InputXGradient", reduce="sum", sign="relu")(model, x, t)
    torch.testing.assert_close(signed_relu, ref.sum(1).clamp_min(0), rtol=1e-6, atol=1e-7)


def test_captum_conversion_keys_come_from_a_config():
    pytest.importorskip("captum.attr")
    from bench.config import parse_config
    from bench.methods.base import MethodConfigError

    cfg = parse_config({
        "name": "x", "dataset": {"name": "harbor", "split": "test", "n": 2},
        "models": [{"spec": "harbor:contextual"}],
        "methods": [{"name": "captum:Saliency", "reduce": "abs_max", "sign": "relu"}],
        "metrics": [{"name": "pointing_game"}],
    })
    method = create_method(cfg.methods[0].name, **cfg.methods[0].params)
    assert method.label == "captum:Saliency[reduce=abs_max,sign=relu]"
    with pytest.raises(MethodConfigError, match="sign"):
        create_method("captum:Saliency", sign="square")


# -- groundbench methods --------------------------------------------------------------------------


def test_methods_lists_adapter_families_and_whether_they_import(capsys, monkeypatch):
    pytest.importorskip("captum")
    assert cli(["methods"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("adapter families"):]
    captum_line = next(line for line in section.splitlines() if line.startswith("captum:NAME"))
    assert "imports" in captum_line and "does not import" not in captum_line
    assert "pytorch_grad_cam:NAME" in section and "grad-cam" in section

    monkeypatch.setitem(sys.modules, "captum", None)  # installed, not importable
    assert cli(["methods"]) == 0
    out = capsys.readouterr().out
    captum_line = next(line for line in out.splitlines() if line.startswith("captum:NAME"))
    assert "does not import" in captum_line and "groundbench[captum]" in captum_line


def test_ablationcam_score_sign_per_image_in_a_batch():
    """One batch, one image whose target logit is negative and one positive: each image's
    weights follow its own score's sign."""
    pgc = _import_pgc()
    x = _scene().repeat(2, 1, 1, 1)
    x[1, 0, :8, :8] = 1.0  # a bigger red square: a larger logit
    model = TwoChannelNet(bias=-0.1).eval()
    logits = model(x)[:, 0]
    assert logits[0] < 0 < logits[1]
    # The same channel-weight ratios with every logit positive: the maps the fix must give.
    expected = torch.cat([_library_ablationcam(pgc, TwoChannelNet(bias=1.0).eval(), x[i:i + 1], 0) for i in range(2)])
    got = create_method("pytorch_grad_cam:AblationCAM", layer="features")(model, x, torch.tensor([0, 0]))
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=0)
    raw = create_method("pytorch_grad_cam:AblationCAM", layer="features", fix_score_sign=False)(model, x, torch.tensor([0, 0]))
    assert float(raw[0].max()) == 0.0 and torch.allclose(raw[1].cpu(), expected[1], atol=1e-5)
