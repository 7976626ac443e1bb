"""PASCAL VOC detection XML -> :class:`Sample` (boxes only, so target masks are box unions).

Layout: ``<root>/Annotations/<id>.xml``, ``<root>/JPEGImages/<id>.jpg`` and
``<root>/ImageSets/Main/<split>.txt``, where ``root`` may also be the folder holding
``VOCdevkit/VOC<year>`` (as the official tar extracts).

Conventions:

- VOC boxes are 1-based and inclusive (``xmin=1`` is the first column, ``xmax`` the last one
  covered). They become 0-based xyxy with an exclusive right/bottom edge:
  ``[xmin - 1, ymin - 1, xmax, ymax]``, so the box covers exactly the pixels VOC meant (as
  TorchRay's ``voc_as_mask``).
- One :class:`Target` per class present; ``mask`` is the union of the class's boxes;
  ``instances`` one box mask per object; ``boxes`` the objects' boxes.
- VOC's own per-object ``difficult`` flag, policy ``difficult_objects=``: ``"torchray"``
  (default; TorchRay's VOC pointing game): a class whose objects are *all* difficult is not a
  target, otherwise its difficult boxes count like the others; ``"include"``: difficult objects
  count like any other; ``"exclude"``: difficult objects are ignored.
- ``Target.difficult`` is VOC's own annotation: all of the class's objects are marked difficult
  (only possible with ``difficult_objects="include"``). The pointing game's "difficult" subset
  is another thing, computed per row by the scoring core
  (:func:`bench.data.annotations.pointing_difficult`).
- ``image_id`` is the VOC id (``000001``); images follow the split file's order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.annotations import DatasetFormatError, box_mask, check_image_size, check_limit
from bench.data.images import load_image
from bench.data.manifest import Manifest, optional_manifest
from bench.data.registry import register_dataset
from bench.data.sample import DroppedImage, Sample, Target

DIFFICULT_OBJECT_POLICIES = ("torchray", "include", "exclude")


def find_voc_root(root: Path, year: str) -> Path:
    for candidate in (root, root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "Annotations").is_dir():
            return candidate
    raise FileNotFoundError(
        f"{root}: no VOC folder (Annotations/) here, nor in VOC{year}/ or VOCdevkit/VOC{year}/"
    )


def parse_annotation(path: Path) -> dict[str, Any]:
    """Size and objects of one VOC XML file; objects carry xyxy 0-based exclusive boxes."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise DatasetFormatError(f"{path}: cannot parse VOC XML ({exc})") from exc
    node = tree.getroot()
    try:
        size = node.find("size")
        w, h = int(size.findtext("width")), int(size.findtext("height"))
        objects = []
        for obj in node.iter("object"):
            bb = obj.find("bndbox")
            xmin, ymin = float(bb.findtext("xmin")), float(bb.findtext("ymin"))
            xmax, ymax = float(bb.findtext("xmax")), float(bb.findtext("ymax"))
            objects.append(
                {
                    "name": obj.findtext("name").strip(),
                    "difficult": obj.findtext("difficult", "0").strip() in ("1", "true"),
                    "box": [xmin - 1.0, ymin - 1.0, xmax, ymax],
                }
            )
    except (AttributeError, TypeError, ValueError) as exc:
        raise DatasetFormatError(
            f"{path}: missing or malformed size/object/bndbox ({exc})"
        ) from exc
    return {"filename": node.findtext("filename"), "width": w, "height": h, "objects": objects}


class VocDetection(Dataset):
    """Map-style dataset of :class:`Sample` from VOC XML annotations (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        *,
        limit: int | None = None,
        manifest: Manifest | None = None,
        year: str = "2007",
        difficult_objects: str = "torchray",
        skip_empty: bool = True,
        classes: list[str] | None = None,
    ):
        if difficult_objects not in DIFFICULT_OBJECT_POLICIES:
            raise ValueError(f"difficult_objects must be one of {DIFFICULT_OBJECT_POLICIES}")
        check_limit(limit)
        self.root = find_voc_root(Path(root).expanduser(), year)
        self.difficult_objects = difficult_objects
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file}: split list not found")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        manifest_classes = (manifest.raw.get("classes") if manifest is not None else None) or []
        self.records: list[tuple[str, dict]] = []
        self.skipped = {"no_targets": 0}
        self.dropped: list[DroppedImage] = []  # images left out, with the reason (a run records them)
        seen: set[str] = set()
        listed: set[str] = set()
        for image_id in ids:
            if image_id in listed:  # one image twice in the split list would be scored twice
                self.dropped.append(DroppedImage(image_id, f"duplicate image id: {split_file}: {image_id!r} is listed more than once; scored once"))
                continue
            listed.add(image_id)
            ann = parse_annotation(self.root / "Annotations" / f"{image_id}.xml")
            seen.update(o["name"] for o in ann["objects"])
            if classes is not None:
                ann["objects"] = [o for o in ann["objects"] if o["name"] in classes]
            if skip_empty and not self._grouped(ann["objects"]):
                self.skipped["no_targets"] += 1
                self.dropped.append(DroppedImage(image_id, "no targets in this image"))
                continue
            self.records.append((image_id, ann))
            if limit is not None and len(self.records) >= limit:
                break
        if manifest_classes:
            unknown = sorted(seen - set(manifest_classes))
            if unknown:
                raise DatasetFormatError(
                    f"{self.root}: object names {unknown} are not VOC classes "
                    f"(manifest {manifest.path})"
                )
        self.class_names = list(manifest_classes) or sorted(seen)
        self.manifest = manifest.to_dict() if manifest is not None else None

    def _grouped(self, objects: list[dict]) -> dict[str, list[dict]]:
        """Class -> objects that count, after the difficult-object policy."""
        per_class: dict[str, list[dict]] = {}
        for obj in objects:
            if self.difficult_objects == "exclude" and obj["difficult"]:
                continue
            per_class.setdefault(obj["name"], []).append(obj)
        if self.difficult_objects == "torchray":
            per_class = {k: v for k, v in per_class.items() if not all(o["difficult"] for o in v)}
        return per_class

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        image_id, ann = self.records[index]
        h, w = ann["height"], ann["width"]
        xml = self.root / "Annotations" / f"{image_id}.xml"
        path = self.root / "JPEGImages" / (ann["filename"] or f"{image_id}.jpg")
        if not path.is_file():
            path = self.root / "JPEGImages" / f"{image_id}.jpg"
        image = load_image(path)
        check_image_size(image, h, w, path, str(xml))
        return Sample(image=image, image_id=image_id, targets=self.targets(ann["objects"], h, w))

    def targets(self, objects: list[dict], h: int, w: int) -> list[Target]:
        grouped = self._grouped(objects)
        order = {name: i for i, name in enumerate(self.class_names)}
        out: list[Target] = []
        for name in sorted(grouped, key=lambda n: (order.get(n, len(order)), n)):
            objs = grouped[name]
            boxes = np.array([o["box"] for o in objs], dtype=np.float32).reshape(-1, 4)
            instances = np.stack([box_mask(b[None], h, w) for b in boxes])
            out.append(
                Target(
                    label=name,
                    mask=torch.from_numpy(instances.any(axis=0)),
                    instances=torch.from_numpy(instances),
                    boxes=torch.from_numpy(boxes),
                    difficult=all(o["difficult"] for o in objs),
                )
            )
        return out


@register_dataset("voc")
def voc(
    root: str | Path,
    split: str = "test",
    limit: int | None = None,
    manifest: str | None = "voc2007-test",
    *,
    year: str = "2007",
    difficult_objects: str = "torchray",
    skip_empty: bool = True,
    classes: list[str] | None = None,
) -> VocDetection:
    """PASCAL VOC detection from ``root`` (see the module docstring)."""
    return VocDetection(
        root, split, limit=limit, manifest=optional_manifest(manifest), year=year,
        difficult_objects=difficult_objects,
        skip_empty=skip_empty, classes=classes,
    )
