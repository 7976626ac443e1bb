"""``python:`` factories, ``file:`` weights (weights_only, strict), ``torchvision:``/``timm:``
glue when those packages are absent or present, and the probe that finds a default layer.

The factories below are referred to by spec as ``python:test_models_custom:NAME``: pytest puts
this folder on sys.path, so this very module is importable under that name.
"""

import sys
import types

import pytest
import torch
from torch import nn

from bench.models import load_model
from bench.models.base import TOP1, ClassMap, ModelBundle
from bench.models.probe import probe_module
from bench.models.transforms import ResizeNormalize
from bench.models.weights import MissingPackageError

HERE = "test_models_custom"


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_tiny(classes: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return TinyNet(classes)


def build_bundle():
    net = TinyNet(3)
    return ModelBundle(
        "ignored", net, ResizeNormalize((32, 32), (0.5,) * 3, (0.5,) * 3), "features.1",
        ClassMap({"a": [0], "b": [1, 2]}, num_outputs=3, name="mine"), {"made_by": "factory"},
    )


def build_string():
    return "not a model"


NOT_CALLABLE = 3


class ResNetLike(nn.Module):
    """Containers like a ResNet: the default layer must be the container ``layer4``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 2, 1)
        self.layer4 = nn.Sequential(nn.Sequential(nn.Conv2d(4, 6, 3, 1, 1), nn.ReLU()))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 1000)

    def forward(self, x):
        return self.fc(self.avgpool(self.layer4(self.stem(x))).flatten(1))


class ViTLike(nn.Module):
    """Patch embedding (a 4-D conv output) then token blocks: no CAM layer by default."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 8, 8)
        self.block = nn.Linear(8, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # B x N x 8
        return self.head(self.block(tokens).mean(1))


# -- probe ----------------------------------------------------------------------------------------


def test_probe_finds_the_last_feature_map_before_the_head():
    assert probe_module(TinyNet(4), (32, 32)).target_layer == "features"
    res = probe_module(ResNetLike(), (64, 64))
    assert (res.num_outputs, res.target_layer, res.target_shape) == (1000, "layer4", (6, 32, 32))
    vit = probe_module(ViTLike(), (32, 32))
    assert vit.num_outputs == 5 and vit.target_layer is None


def test_probe_rejects_models_that_do_not_return_logits():
    with pytest.raises(ValueError, match="B x K logits"):
        probe_module(nn.Conv2d(3, 2, 1), (8, 8))


# -- python: ---------------------------------------------------------------------------------------


def test_python_factory_returning_a_module():
    bundle = load_model(f"python:{HERE}:build_tiny", kwargs={"classes": 6}, input_size=[48, 64])
    assert isinstance(bundle.module, TinyNet) and not bundle.module.training
    assert bundle.spec == f"python:{HERE}:build_tiny"
    assert bundle.target_layer == "features"
    assert bundle.info["num_outputs"] == 6
    assert bundle.preprocess(torch.rand(3, 100, 50)).shape == (3, 48, 64)
    # no class map unless one is named: dataset classes are skipped, <top-1> still works
    assert bundle.class_map.indices("dog") == []
    assert bundle.class_map.indices(TOP1) == list(range(6))


def test_python_factory_gets_the_run_seed():
    a = load_model(f"python:{HERE}:build_tiny", seed=1).module.fc.weight
    b = load_model(f"python:{HERE}:build_tiny", seed=1).module.fc.weight
    c = load_model(f"python:{HERE}:build_tiny", seed=2).module.fc.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_python_factory_returning_a_bundle_keeps_it_and_allows_overrides():
    bundle = load_model(f"python:{HERE}:build_bundle")
    assert bundle.spec == f"python:{HERE}:build_bundle"
    assert bundle.class_map.indices("b") == [1, 2] and bundle.target_layer == "features.1"
    assert bundle.info["made_by"] == "factory"
    over = load_model(f"python:{HERE}:build_bundle", target_layer="features.3")
    assert over.target_layer == "features.3"
    with pytest.raises(ValueError, match="remove input_size"):
        load_model(f"python:{HERE}:build_bundle", input_size=64)


@pytest.mark.parametrize(
    "spec,error,message",
    [
        ("python:nomodule", ValueError, "python:package.module:factory"),
        ("python:no_such_module_xyz:f", ValueError, "cannot import module 'no_such_module_xyz'"),
        (f"python:{HERE}:build_tinny", ValueError, "did you mean 'build_tiny'"),
        (f"python:{HERE}:NOT_CALLABLE", ValueError, "not callable"),
        (f"python:{HERE}:build_string", TypeError, "returned a str"),
    ],
)
def test_python_spec_errors_are_clear(spec, error, message):
    with pytest.raises(error, match=message):
        load_model(spec)


def test_python_module_with_a_class_map_must_fit_its_outputs():
    with pytest.raises(ValueError, match="1000 outputs, but the model has 4"):
        load_model(f"python:{HERE}:build_tiny", class_map="coco")


# -- file: -----------------------------------------------------------------------------------------


def _saved_tiny(tmp_path, wrap=None):
    net = build_tiny(seed=123)
    state = net.state_dict()
    path = tmp_path / "tiny.pt"
    torch.save(wrap(state) if wrap else state, path)
    return net, path


def test_file_loads_weights_into_the_named_arch(tmp_path):
    net, path = _saved_tiny(tmp_path)
    bundle = load_model(f"file:{path}", arch=f"python:{HERE}:build_tiny")
    assert bundle.spec == f"file:{path}"
    for key, value in net.state_dict().items():
        assert torch.equal(bundle.module.state_dict()[key], value), key
    assert bundle.info["arch"] == f"python:{HERE}:build_tiny"
    assert len(bundle.info["weights_sha256"]) == 64
    assert bundle.target_layer == "features"


def test_file_takes_the_state_dict_out_of_a_training_checkpoint(tmp_path):
    net, path = _saved_tiny(tmp_path, wrap=lambda s: {"epoch": 3, "state_dict": s})
    bundle = load_model(f"file:{path}", arch=f"python:{HERE}:build_tiny")
    assert torch.equal(bundle.module.fc.bias, net.fc.bias)
    _, other = _saved_tiny(tmp_path, wrap=lambda s: {"epoch": 3, "ema": s})
    with pytest.raises(ValueError, match="state_dict_key"):
        load_model(f"file:{other}", arch=f"python:{HERE}:build_tiny")
    bundle = load_model(f"file:{other}", arch=f"python:{HERE}:build_tiny", state_dict_key="ema")
    assert torch.equal(bundle.module.fc.bias, net.fc.bias)


def test_file_refuses_pickled_modules(tmp_path):
    path = tmp_path / "whole_module.pt"
    torch.save(build_tiny(), path)  # a pickled nn.Module: code, not just tensors
    with pytest.raises(ValueError, match="weights_only=True"):
        load_model(f"file:{path}", arch=f"python:{HERE}:build_tiny")


def test_file_is_strict_about_keys_and_shapes(tmp_path):
    _, path = _saved_tiny(tmp_path)
    with pytest.raises(ValueError, match="do not match the architecture") as info:
        load_model(f"file:{path}", arch=f"python:{HERE}:build_tiny", arch_params={"kwargs": {"classes": 5}})
    assert "tiny.pt" in str(info.value)
    state = build_tiny().state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="extra.weight"):
        load_model(f"file:{tmp_path / 'extra.pt'}", arch=f"python:{HERE}:build_tiny")


def test_file_with_a_builtin_arch_skips_its_pretrained_weights(tmp_path):
    source = load_model("mobilenet_v2", pretrained=False)
    with torch.no_grad():
        source.module.classifier[1].bias.fill_(0.25)
    torch.save(source.module.state_dict(), tmp_path / "mnv2.pt")
    bundle = load_model(f"file:{tmp_path / 'mnv2.pt'}", arch="mobilenet_v2", class_map="voc")
    assert torch.all(bundle.module.classifier[1].bias == 0.25)
    assert bundle.target_layer == "features.18" and bundle.class_map.name == "imagenet->voc"


def test_file_spec_errors(tmp_path):
    _, path = _saved_tiny(tmp_path)
    with pytest.raises(ValueError, match="set the 'arch' parameter"):
        load_model(f"file:{path}")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(f"file:{tmp_path / 'missing.pt'}", arch=f"python:{HERE}:build_tiny")
    with pytest.raises(ValueError, match="itself a file: spec"):
        load_model(f"file:{path}", arch=f"file:{path}")


# -- torchvision: and timm: ------------------------------------------------------------------------


@pytest.mark.parametrize("spec,module", [("torchvision:resnet18", "torchvision"), ("timm:resnet18", "timm")])
def test_zoo_specs_say_what_to_install_when_the_package_is_missing(spec, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingPackageError, match=f"pip install {module}"):
        load_model(spec)


def test_zoo_specs_need_a_name():
    with pytest.raises(ValueError, match="needs a model name"):
        load_model("timm")


def test_timm_glue_with_a_stand_in_package(monkeypatch):
    # A stand-in with timm's two entry points we use; checks our glue, not timm itself.
    calls = {}

    def create_model(name, pretrained):
        calls["create"] = (name, pretrained)
        return ResNetLike()

    fake = types.ModuleType("timm")
    fake.__version__ = "0.fake"
    fake.create_model = create_model
    fake.data = types.SimpleNamespace(
        resolve_data_config=lambda args, model: {
            "input_size": (3, 96, 128), "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)
        }
    )
    monkeypatch.setitem(sys.modules, "timm", fake)
    bundle = load_model("timm:resnet_fake")
    assert calls["create"] == ("resnet_fake", True)
    assert bundle.preprocess.size == (96, 128)
    assert bundle.preprocess.mean == (0.1, 0.2, 0.3) and bundle.preprocess.std == (0.4, 0.5, 0.6)
    assert bundle.target_layer == "layer4"
    assert bundle.class_map.name == "imagenet->coco"  # 1000 outputs and pretrained
    assert bundle.info["library"] == "timm 0.fake"


def test_real_timm_model_if_installed():
    timm = pytest.importorskip("timm", reason="timm not installed")
    bundle = load_model("timm:resnet18", pretrained=False)
    assert bundle.target_layer == "layer4" and bundle.info["num_outputs"] == 1000
    assert timm.__version__


def test_real_torchvision_model_if_installed():
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a wheel for another torch fails with RuntimeError
        pytest.skip(f"torchvision not importable: {exc}")
    bundle = load_model("torchvision:resnet18", weights=None)
    assert bundle.target_layer == "layer4" and bundle.info["num_outputs"] == 1000
    assert bundle.class_map.name == "none"  # random weights: not an ImageNet classifier


def test_torchvision_glue_with_a_stand_in_package(monkeypatch, tmp_path):
    # A stand-in with the torchvision.models calls we use; checks our glue, not torchvision.
    import enum

    # The weights are "cached" where torch.hub looks, so nothing is downloaded or probed.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet_fake-v1.pth").write_bytes(b"")

    class Tf:
        crop_size = [160]
        mean = [0.1, 0.2, 0.3]
        std = [0.4, 0.5, 0.6]

    class FakeWeights(enum.Enum):
        IMAGENET1K_V1 = "v1"
        DEFAULT = "v1"  # an alias, as in torchvision

        def transforms(self):
            return Tf()

        @property
        def url(self):
            return "https://download.pytorch.org/models/resnet_fake-v1.pth"

    calls = []

    def get_model(name, weights):
        calls.append((name, weights))
        return ResNetLike()

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.fake"
    tv.models = types.SimpleNamespace(get_model=get_model, get_model_weights=lambda name: FakeWeights)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv.models)
    bundle = load_model("torchvision:resnet_fake", weights="ResNet_Weights.IMAGENET1K_V1")
    assert calls[-1] == ("resnet_fake", "ResNet_Weights.IMAGENET1K_V1")
    assert bundle.preprocess.size == (160, 160) and bundle.preprocess.std == (0.4, 0.5, 0.6)
    assert bundle.target_layer == "layer4" and bundle.class_map.name == "imagenet->coco"
    plain = load_model("torchvision:resnet_fake", pretrained=False)
    assert calls[-1] == ("resnet_fake", None)
    assert plain.class_map.name == "none" and plain.preprocess.size == (224, 224)
