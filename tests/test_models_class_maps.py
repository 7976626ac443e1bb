"""Class maps: the shipped ImageNet class list and ImageNet -> COCO / VOC maps are consistent,
bad map files fail with the file named, and the max-logit rule picks targets as stated."""

import json
import re
import zipfile
from pathlib import Path

import pytest
import torch

from bench.models.base import TOP1, ClassMap
from bench.models.class_maps import (
    BUILTIN_IMAGENET_MAPS,
    IMAGENET_CLASSES_FILE,
    ClassMapError,
    imagenet_classes,
    imagenet_classes_from_timm_wheel,
    load_class_map,
    mapped_and_unmapped,
    select_targets,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

COCO_80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]
VOC_20 = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


# -- imagenet_classes.txt -----------------------------------------------------------------------


def test_imagenet_classes_file_is_the_standard_order():
    classes = imagenet_classes()
    assert [c.index for c in classes] == list(range(1000))
    assert len({c.synset for c in classes}) == 1000
    # anchors of the standard ILSVRC-2012 order (sorted synset ids)
    assert [c.synset for c in classes] == sorted(c.synset for c in classes)
    assert (classes[0].synset, classes[0].name) == ("n01440764", "tench")
    assert classes[21].name == "kite" and classes[21].synset == "n01608432"  # the bird
    assert classes[151].name == "Chihuahua" and classes[268].name == "Mexican hairless"
    assert classes[472].name == "canoe" and classes[999].name == "toilet tissue"
    header = IMAGENET_CLASSES_FILE.read_text().split("\n", 8)[:7]
    text = "\n".join(header)
    assert "timm" in text and "sha256" in text and "Apache-2.0" in text and "WordNet" in text


def test_imagenet_classes_regenerate_from_a_timm_shaped_wheel(tmp_path):
    # Build a wheel with timm's two _info files from our own list; the generator must give
    # back exactly our lines (it reads the zip, never imports timm).
    classes = imagenet_classes()
    wheel = tmp_path / "timm-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("timm/data/_info/imagenet_synsets.txt", "\n".join(c.synset for c in classes))
        zf.writestr(
            "timm/data/_info/imagenet_synset_to_lemma.txt",
            "n00000001\tunrelated\n" + "\n".join(f"{c.synset}\t{', '.join(c.names)}" for c in classes),
        )
    text = imagenet_classes_from_timm_wheel(wheel)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    ours = [line for line in IMAGENET_CLASSES_FILE.read_text().splitlines() if not line.startswith("#")]
    assert body == ours
    assert wheel.name in text
    empty = tmp_path / "other.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x.txt", "x")
    with pytest.raises(ClassMapError, match="other.whl"):
        imagenet_classes_from_timm_wheel(empty)


# -- the shipped maps ---------------------------------------------------------------------------


def _raw(name):
    return json.loads(BUILTIN_IMAGENET_MAPS[name].read_text())


@pytest.mark.parametrize("name,labels", [("coco", COCO_80), ("voc", VOC_20)])
def test_shipped_maps_cover_every_class_with_consistent_indices(name, labels):
    raw = _raw(name)
    assert list(raw["classes"]) == labels
    assert raw["rule"] == "max_logit" and raw["num_outputs"] == 1000
    assert raw["shared_outputs"] == {}  # no output stands for two classes
    classes = imagenet_classes()
    seen = {}
    for label, entry in raw["classes"].items():
        for index, synset, cname in entry["outputs"]:
            assert 0 <= index < 1000
            assert classes[index].synset == synset and classes[index].name == cname, (label, index)
            assert index not in seen, f"output {index} in both {seen.get(index)} and {label}"
            seen[index] = label
        if not entry["outputs"]:
            assert entry.get("note"), f"{label}: an unmapped class must say why"
    cmap = load_class_map(name)  # the loader's own checks pass too
    assert cmap.num_outputs == 1000 and cmap.name == f"imagenet->{name}"


def test_coco_map_contents_pinned():
    cmap = load_class_map("coco")
    assert cmap.indices("dog") == list(range(151, 269))  # the 118 dog breeds
    assert len(cmap.indices("bird")) == 59 and 21 in cmap.indices("bird")  # kite the bird
    assert cmap.indices("kite") == []  # COCO kite is the toy: no ImageNet counterpart
    assert cmap.indices("cat") == [281, 282, 283, 284, 285]
    boat = set(cmap.indices("boat"))
    for name in ["canoe", "speedboat", "fireboat", "gondola", "yawl", "catamaran", "trimaran",
                 "schooner", "lifeboat", "container ship", "liner", "pirate"]:
        assert imagenet_index(name) in boat, name
    assert cmap.indices("elephant") == [101, 385, 386]
    mapped, unmapped = mapped_and_unmapped(cmap)
    assert len(mapped) == 63
    assert unmapped == sorted([
        "person", "fire hydrant", "giraffe", "suitcase", "frisbee", "snowboard", "kite",
        "baseball bat", "baseball glove", "skateboard", "surfboard", "fork", "carrot", "donut",
        "cake", "scissors", "toothbrush",
    ])
    assert cmap.indices("not a coco class") == []


def test_voc_map_follows_voc_guidelines_where_they_differ_from_coco():
    coco, voc = load_class_map("coco"), load_class_map("voc")
    assert voc.indices("aeroplane") == coco.indices("airplane")
    assert voc.indices("tvmonitor") == coco.indices("tv")
    assert imagenet_index("tricycle") in voc.indices("bicycle")  # VOC: includes tricycles
    assert imagenet_index("tricycle") not in coco.indices("bicycle")
    assert imagenet_index("streetcar") not in voc.indices("train")  # VOC: trains exclude trams
    assert imagenet_index("ambulance") not in voc.indices("car")  # VOC: no emergency vehicles
    assert voc.indices("person") == []


def test_coco_names_match_the_official_annotations():
    ann = DATA / "coco_tiny" / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        pytest.skip(f"COCO sample not found at {ann}")
    names = [c["name"] for c in json.loads(ann.read_text())["categories"]]
    assert names == COCO_80


def imagenet_index(name):
    (index,) = [c.index for c in imagenet_classes() if c.name == name]
    return index


# -- loading user maps and their errors ------------------------------------------------------------


def _write(tmp_path, doc, name="map.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_user_map_with_plain_indices_and_intended_sharing(tmp_path):
    path = _write(tmp_path, {
        "name": "mine", "num_outputs": 5, "shared_outputs": {"2": ["b", "a"]},
        "classes": {"a": [0, 2], "b": {"outputs": [2, 4]}, "c": []},
    })
    cmap = load_class_map(str(path), num_outputs=5)
    assert cmap.indices("a") == [0, 2] and cmap.indices("b") == [2, 4] and cmap.indices("c") == []
    assert cmap.name == "mine"


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"classes": {"a": [0], "b": [0]}}, r"output 0 stands for several classes"),
        ({"classes": {"a": [7]}}, r"out of range \[0, 5\)"),
        ({"classes": {"a": [[0, "n99999999", "x"]]}}, r"output 0 is ImageNet synset n01440764"),
        ({"classes": {"a": ["zero"]}}, r"bad output entry"),
        ({"rule": "mean_logit", "classes": {}}, r"rule 'mean_logit' unknown"),
        ({"num_outputs": 10, "classes": {}}, r"10 outputs, but the model has 5"),
        ({"labels": {}}, r"'classes' object"),
    ],
)
def test_bad_map_files_name_the_file_and_the_problem(tmp_path, doc, message):
    path = _write(tmp_path, doc, "bad_map.json")
    with pytest.raises(ClassMapError, match=message) as info:
        load_class_map(str(path), num_outputs=5)
    assert "bad_map.json" in str(info.value)


def test_unknown_map_name_and_missing_file():
    with pytest.raises(ClassMapError, match="unknown class map 'cocoo'"):
        load_class_map("cocoo")
    with pytest.raises(ClassMapError, match="does not exist"):
        load_class_map("/nonexistent/map.json")


def test_imagenet_identity_map_skips_ambiguous_first_lemmas():
    cmap = load_class_map("imagenet")
    assert cmap.indices("canoe") == [472]
    assert cmap.indices("n01440764") == [0]
    assert cmap.indices("crane") == []  # bird 134 and machine 517 share the name
    assert cmap.indices("n02012849") == [134]


# -- the max-logit rule and <top-1> ----------------------------------------------------------------


def test_select_targets_by_hand():
    cmap = ClassMap({"boat": [1, 3], "car": [0], "giraffe": []}, num_outputs=4)
    logits = torch.tensor([
        [9.0, 1.0, 0.0, 2.0],  # boat: max(l1=1, l3=2) -> 3 (output 0 is larger but not a boat)
        [0.0, 5.0, 7.0, -1.0],  # boat: max(5, -1) -> 1
        [0.0, 5.0, 7.0, -1.0],  # car -> 0, its only output
        [0.0, 5.0, 7.0, -1.0],  # giraffe: no outputs -> -1 (skipped and counted)
        [0.0, 5.0, 7.0, -1.0],  # <top-1>: every output -> argmax 2
        [0.0, 5.0, 7.0, -1.0],  # a label the map does not know -> -1
    ])
    labels = ["boat", "boat", "car", "giraffe", TOP1, "zebra"]
    assert select_targets(cmap, logits, labels).tolist() == [3, 1, 0, -1, 2, -1]


def test_top1_label_needs_the_number_of_outputs():
    assert ClassMap({}, num_outputs=3).indices(TOP1) == [0, 1, 2]
    assert load_class_map("coco").indices("<top-1>") == list(range(1000))
    with pytest.raises(ValueError, match="number of outputs"):
        ClassMap({"a": [0]}).indices(TOP1)


def test_select_targets_checks_shapes_and_ranges():
    cmap = ClassMap({"a": [5]}, num_outputs=6)
    with pytest.raises(ValueError, match="B labels"):
        select_targets(cmap, torch.zeros(2, 6), ["a"])
    with pytest.raises(ValueError, match="output 5 but the model has 4"):
        select_targets(cmap, torch.zeros(1, 4), ["a"])


def test_shipped_map_json_is_one_class_per_line():
    # hand-curated data: one line per class keeps review diffs readable
    for path in BUILTIN_IMAGENET_MAPS.values():
        lines = path.read_text().splitlines()
        raw = json.loads(path.read_text())
        class_lines = [l for l in lines if re.match(r'    "[^"]+": \{"outputs"', l)]
        assert len(class_lines) == len(raw["classes"])
