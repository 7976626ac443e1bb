"""PASCAL VOC loader on a fixture written here in the official layout and XML format (the
real test set is 450 MB; the format is what matters)."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from bench.data.annotations import DatasetFormatError
from bench.data.registry import load_dataset
from bench.data.voc import VocDetection, parse_annotation, voc
from bench.data.annotations import pointing_difficult

OBJECT = """  <object>
    <name>{name}</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>
"""
XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>{id}.jpg</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <segmented>0</segmented>
{objects}</annotation>
"""

# (id, width, height, objects as (name, difficult, xmin, ymin, xmax, ymax), 1-based inclusive)
IMAGES = [
    ("000001", 60, 40, [("dog", 0, 1, 1, 10, 5), ("dog", 0, 51, 31, 60, 40), ("person", 0, 1, 1, 60, 40)]),
    ("000002", 50, 30, [("boat", 1, 5, 5, 14, 9), ("cat", 0, 20, 10, 29, 19)]),
    ("000003", 30, 20, [("boat", 1, 2, 2, 8, 8)]),
    ("000004", 30, 20, [("car", 0, 1, 1, 30, 20)]),
]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    top = tmp_path_factory.mktemp("voc")
    base = top / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    for image_id, w, h, objects in IMAGES:
        body = "".join(
            OBJECT.format(name=n, difficult=d, x0=a, y0=b, x1=c, y1=e) for n, d, a, b, c, e in objects
        )
        (base / "Annotations" / f"{image_id}.xml").write_text(XML.format(id=image_id, w=w, h=h, objects=body))
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(base / "JPEGImages" / f"{image_id}.jpg")
    (base / "ImageSets/Main/test.txt").write_text("\n".join(i[0] for i in IMAGES) + "\n")
    return top


def test_boxes_are_converted_from_1_based_inclusive(voc_root):
    ann = parse_annotation(voc_root / "VOCdevkit/VOC2007/Annotations/000001.xml")
    assert (ann["width"], ann["height"]) == (60, 40)
    assert ann["objects"][0]["box"] == [0.0, 0.0, 10.0, 5.0]  # xmin=1 -> 0, xmax=10 -> 10 (excl.)
    assert ann["objects"][1]["box"] == [50.0, 30.0, 60.0, 40.0]  # touches the far corner


def test_masks_are_box_unions_covering_exactly_the_voc_pixels(voc_root):
    ds = voc(voc_root, manifest="voc2007-test")
    assert ds.class_names[:4] == ["aeroplane", "bicycle", "bird", "boat"]
    s = ds[0]
    assert s.image_id == "000001" and s.image.shape == (3, 40, 60)
    assert [t.label for t in s.targets] == ["dog", "person"]  # VOC class order
    dog = s.targets[0].mask.numpy()
    # Boxes of 10x5 and 10x10 pixels (xmax - xmin + 1 columns, VOC-inclusive).
    assert np.count_nonzero(dog) == 10 * 5 + 10 * 10
    assert dog[0:5, 0:10].all() and dog[30:40, 50:60].all()
    assert s.targets[0].instances.shape == (2, 40, 60)
    assert s.targets[0].boxes.tolist() == [[0, 0, 10, 5], [50, 30, 60, 40]]
    # Pointing-game difficult (the one rule): dog is small and another class is present;
    # person covers all.
    assert pointing_difficult(s.targets[0], s.targets) and not pointing_difficult(s.targets[1], s.targets)


def test_difficult_object_policies(voc_root):
    torchray = VocDetection(voc_root)  # default: classes whose objects are all difficult go
    assert [s.image_id for s in (torchray[i] for i in range(len(torchray)))] == [
        "000001", "000002", "000004"
    ]
    assert torchray.skipped == {"no_targets": 1}  # 000003 has only a difficult boat
    assert [t.label for t in torchray[1].targets] == ["cat"]
    include = VocDetection(voc_root, difficult_objects="include")  # Target.difficult: VOC's own flag
    labels = {s.image_id: {t.label: t.difficult for t in s.targets}
              for s in (include[i] for i in range(len(include)))}
    assert labels["000002"] == {"boat": True, "cat": False}
    assert labels["000003"] == {"boat": True}
    exclude = VocDetection(voc_root, difficult_objects="exclude")
    assert len(exclude) == 3


def test_root_may_be_any_level_and_registry_works(voc_root):
    for root in (voc_root, voc_root / "VOCdevkit", voc_root / "VOCdevkit" / "VOC2007"):
        assert len(VocDetection(root)) == 3
    assert len(load_dataset("voc", root=str(voc_root), limit=2)) == 2
    with pytest.raises(FileNotFoundError, match="no VOC folder"):
        VocDetection(voc_root / "VOCdevkit" / "VOC2007" / "JPEGImages")


def test_unknown_class_and_broken_xml_are_named(tmp_path, voc_root):
    import shutil

    root = tmp_path / "VOC2007"
    shutil.copytree(voc_root / "VOCdevkit" / "VOC2007", root)
    xml = root / "Annotations" / "000004.xml"
    xml.write_text(xml.read_text().replace("<name>car</name>", "<name>kar</name>"))
    with pytest.raises(DatasetFormatError, match="kar"):
        voc(root)  # the manifest's class list catches the typo
    xml.write_text("<annotation><size><width>3</width>")
    with pytest.raises(DatasetFormatError, match="000004.xml"):
        VocDetection(root)


def test_image_size_mismatch_is_named(tmp_path, voc_root):
    import shutil

    root = tmp_path / "VOC2007"
    shutil.copytree(voc_root / "VOCdevkit" / "VOC2007", root)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "JPEGImages" / "000004.jpg")
    ds = VocDetection(root)
    with pytest.raises(DatasetFormatError, match="000004.jpg"):
        ds[2]
