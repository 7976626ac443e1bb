"""``torchvision:NAME`` / ``timm:NAME`` with pretrained weights and no network: one message that
names the model and the ways that work offline, before any library download starts; cached
weights load without touching the network. The network is taken away by replacing
``socket.create_connection`` (what the reachability probe uses) and the libraries' download
entry points with functions that fail the test if they are reached."""

from __future__ import annotations

import enum
import sys
import types
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.cli import main as cli
from bench.models import load_model
from bench.models import zoo_weights
from bench.models.zoo_weights import WeightsUnavailableError

URL = "https://download.pytorch.org/models/resnet_fake-11ad3fa6.pth"


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 2, 1)
        self.layer4 = nn.Sequential(nn.Conv2d(4, 6, 3, 1, 1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 1000)

    def forward(self, x):
        return self.fc(self.avgpool(self.layer4(self.stem(x))).flatten(1))


@pytest.fixture
def no_network(monkeypatch):
    """Every TCP connection fails, as on a machine without a route out; records the probes."""
    probes = []

    def refuse(address, timeout=None, *args, **kwargs):
        probes.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(zoo_weights.socket, "create_connection", refuse)
    monkeypatch.delenv("GROUNDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return probes


@pytest.fixture
def torch_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def fake_torchvision(monkeypatch):
    """torchvision's get_model / get_model_weights; get_model with weights downloads, as the
    real one does through torch.hub, and here that download fails like urllib offline."""
    calls = []

    class Tf:
        crop_size = [64]
        mean = [0.485, 0.456, 0.406]
        std = [0.229, 0.224, 0.225]

    class FakeWeights(enum.Enum):
        IMAGENET1K_V1 = "v1"
        DEFAULT = "v1"

        def transforms(self):
            return Tf()

        @property
        def url(self):
            return URL

    def get_model(name, weights):
        calls.append((name, weights))
        if weights is not None:
            cached = zoo_weights.torch_hub_checkpoint(URL)
            if not cached.is_file():
                raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))
        return TinyResNet()

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.fake"
    tv.models = types.SimpleNamespace(get_model=get_model, get_model_weights=lambda name: FakeWeights)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv.models)
    return calls


def _assert_offline_message(text: str, spec: str) -> None:
    assert spec in text
    assert "pretrained = false" in text
    assert "file:" in text and "arch" in text
    assert "local cache" in text


def test_torchvision_offline_fails_fast_before_downloading(no_network, torch_home, fake_torchvision):
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("torchvision:resnet_fake")
    msg = str(info.value)
    _assert_offline_message(msg, "torchvision:resnet_fake")
    assert "download.pytorch.org cannot be reached" in msg
    assert str(torch_home / "resnet_fake-11ad3fa6.pth") in msg  # where to put the file
    assert fake_torchvision == []  # the library's download never started
    assert len(no_network) == 1 and no_network[0][1] <= zoo_weights.PROBE_TIMEOUT_S


def test_torchvision_cached_weights_load_without_the_network(no_network, torch_home, fake_torchvision):
    torch_home.mkdir(parents=True)
    (torch_home / "resnet_fake-11ad3fa6.pth").write_bytes(b"cached")
    bundle = load_model("torchvision:resnet_fake")
    assert fake_torchvision == [("resnet_fake", "DEFAULT")]
    assert no_network == []  # a cached file needs no probe
    assert bundle.class_map.name == "imagenet->coco"


def test_torchvision_without_pretrained_weights_never_probes(no_network, torch_home, fake_torchvision):
    load_model("torchvision:resnet_fake", pretrained=False)
    assert fake_torchvision == [("resnet_fake", None)] and no_network == []


def test_offline_environment_variable_means_no_probe(no_network, torch_home, fake_torchvision, monkeypatch):
    monkeypatch.setenv("GROUNDBENCH_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="forbids downloading"):
        load_model("torchvision:resnet_fake")
    assert no_network == [] and fake_torchvision == []


def test_a_download_that_fails_after_the_probe_is_one_message(torch_home, fake_torchvision, monkeypatch):
    """The host answers the probe but the download itself fails (a proxy, a firewall): the
    library's URLError becomes the same one message, without its traceback chain."""
    monkeypatch.setattr(zoo_weights, "host_reachable", lambda url, timeout=3.0: True)
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("torchvision:resnet_fake")
    _assert_offline_message(str(info.value), "torchvision:resnet_fake")
    assert "URLError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_run_prints_one_message_naming_the_model(no_network, torch_home, fake_torchvision, tmp_path, capsys):
    config = tmp_path / "zoo.toml"
    config.write_text(
        'name = "zoo"\nseed = 0\ndevice = "cpu"\n'
        '[dataset]\nname = "harbor"\nsplit = "test"\nn = 4\n'
        '[[models]]\nspec = "torchvision:resnet_fake"\n'
        '[[methods]]\nname = "center"\n'
        '[[metrics]]\nname = "pointing_game"\n'
    )
    code = cli(["run", str(config), "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    _assert_offline_message(captured.err, "torchvision:resnet_fake")
    assert len([line for line in captured.err.splitlines() if line.strip()]) <= 3


def _fake_timm(monkeypatch, cfg: dict, calls: list):
    class Cfg:
        def to_dict(self):
            return dict(cfg)

    def create_model(name, pretrained, **kwargs):
        calls.append((name, pretrained, kwargs))
        if pretrained and "pretrained_cfg_overlay" not in kwargs:
            raise AssertionError("timm was asked to download")
        return TinyResNet()

    fake = types.ModuleType("timm")
    fake.__version__ = "0.fake"
    fake.create_model = create_model
    fake.models = types.SimpleNamespace(get_pretrained_cfg=lambda name: Cfg())
    fake.data = types.SimpleNamespace(resolve_data_config=lambda args, model: {"input_size": (3, 64, 64)})
    monkeypatch.setitem(sys.modules, "timm", fake)


def test_timm_hub_weights_offline_fail_fast(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    calls: list = []
    _fake_timm(monkeypatch, {"hf_hub_id": "timm/resnet_fake.a1_in1k"}, calls)
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("timm:resnet_fake")
    msg = str(info.value)
    _assert_offline_message(msg, "timm:resnet_fake")
    assert "huggingface.co cannot be reached" in msg and "timm/resnet_fake.a1_in1k" in msg
    assert calls == [] and len(no_network) == 1


def test_timm_url_weights_cached_load_from_the_file(no_network, torch_home, monkeypatch):
    torch_home.mkdir(parents=True)
    cached = torch_home / "resnet_fake-11ad3fa6.pth"
    cached.write_bytes(b"cached")
    calls: list = []
    _fake_timm(monkeypatch, {"url": URL}, calls)
    load_model("timm:resnet_fake")
    assert calls == [("resnet_fake", True, {"pretrained_cfg_overlay": {"file": str(cached)}})]
    assert no_network == []


def test_real_torchvision_offline_if_installed(no_network, torch_home, monkeypatch):
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a wheel for another torch fails with RuntimeError
        pytest.skip(f"torchvision not importable: {exc}")

    def no_download(*args, **kwargs):
        raise AssertionError("torch.hub download reached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("torchvision:resnet18")
    _assert_offline_message(str(info.value), "torchvision:resnet18")


def test_real_timm_offline_if_installed(no_network, torch_home, monkeypatch, tmp_path):
    pytest.importorskip("timm", reason="timm not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a user without network sets
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("timm:resnet18")
    _assert_offline_message(str(info.value), "timm:resnet18")


def test_probe_is_a_single_bounded_connection(monkeypatch):
    seen = []

    class Conn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(address, timeout=None):
        seen.append((address, timeout))
        return Conn()

    monkeypatch.setattr(zoo_weights.socket, "create_connection", connect)
    assert zoo_weights.host_reachable("https://huggingface.co/timm/x")
    assert zoo_weights.host_reachable("http://example.org:8080/w.pth")
    assert seen == [(("huggingface.co", 443), 3.0), (("example.org", 8080), 3.0)]
    assert not zoo_weights.host_reachable("not a url")


def test_provenance_lists_only_packages_that_import(monkeypatch):
    from importlib.metadata import version

    from bench import provenance

    pytest.importorskip("captum")
    assert provenance.package_versions()["captum"] == version("captum")
    monkeypatch.setitem(sys.modules, "captum", None)  # installed, but `import captum` fails
    assert "captum" not in provenance.package_versions()
    assert provenance.unimportable_packages()["captum"].startswith(version("captum"))
    assert "torch" in provenance.package_versions()


def test_zoo_weights_source_paths(torch_home):
    assert zoo_weights.torch_hub_checkpoint(URL) == torch_home / "resnet_fake-11ad3fa6.pth"
    src = zoo_weights.timm_source("timm:x", {"file": "/w.pth", "hf_hub_id": "timm/x"})
    assert src is None  # timm reads a local file itself
    assert Path(zoo_weights.timm_source("timm:x", {"url": URL}).cached) == torch_home / "resnet_fake-11ad3fa6.pth"
