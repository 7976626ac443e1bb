"""COCO object instances (``instances_*.json``) -> :class:`Sample`, masks decoded by pycocotools.

Layout (the official one; every path can be overridden): ``<root>/annotations/instances_<split>
.json`` and images in ``<root>/<split>/``. Any directory in this format works, e.g. the 100-image
sample in ``shared/data/coco_tiny``.

Conventions, stated once here:

- One :class:`Target` per class present in an image (the classes in category-id order). Its
  ``mask`` is the union of the class's instance masks; ``instances`` has one mask per non-crowd
  instance (in annotation order); ``boxes`` their COCO boxes ``[x, y, w, h]`` as xyxy
  ``[x, y, x + w, y + h]`` in pixels (pixel (c, r) covers [c, c+1) x [r, r+1)).
- Segmentations: polygons, uncompressed RLE (crowd regions) and compressed RLE are all decoded
  with ``pycocotools.mask``. An annotation without a usable segmentation (an empty polygon list,
  or polygons of fewer than 3 points) falls back to its box, rasterised as the pixels the box
  covers.
- ``iscrowd`` policy (``crowd=``): ``"include"`` (default; as TorchRay's COCO pointing game, which
  unions ``annToMask`` over all of a class's annotations): a crowd region's pixels belong to its
  class's target mask, but it is not an instance and gives no box; a class present only as a
  crowd is still a target. ``"exclude"``: crowd annotations are ignored altogether.
- COCO has no difficulty annotation (``Target.difficult`` stays False); the pointing game's
  "difficult" subset is computed per row by the scoring core
  (:func:`bench.data.annotations.pointing_difficult`).
- Images with no target (no annotation, or only crowd ones under ``"exclude"``) are skipped
  when ``skip_empty`` (default) and counted in ``dataset.skipped``.
- ``image_id`` is the COCO image id as a string. Images are in the JSON's ``images`` order;
  ``limit`` keeps the first N samples.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from bench.data.annotations import (
    DatasetFormatError,
    box_mask,
    check_image_size,
    read_json,
    resolve,
    xywh_to_xyxy,
)
from bench.data.images import load_image
from bench.data.manifest import Manifest, optional_manifest
from bench.data.registry import register_dataset
from bench.data.sample import Sample, Target

CROWD_POLICIES = ("include", "exclude")


def _check_polygons(ann: dict, polys: list[list], h: int, w: int) -> None:
    """Refuse vertices far outside the image (or not finite): pycocotools rasterises a polygon
    by walking its edges pixel by pixel, so a vertex at 1e8 px exhausts memory or crashes the
    process instead of raising. Real annotations stray a few pixels at most; anything beyond one
    image size outside the frame is a broken file."""
    margin = max(h, w)
    for poly in polys:
        xy = np.asarray(poly, dtype=np.float64)
        xs, ys = xy[0::2], xy[1::2]
        ok = (
            np.isfinite(xy).all()
            and xs.min() >= -margin
            and xs.max() <= w + margin
            and ys.min() >= -margin
            and ys.max() <= h + margin
        )
        if not ok:
            raise DatasetFormatError(
                f"annotation {ann.get('id')}: polygon vertex outside the image frame "
                f"(x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}] for a "
                f"{w}x{h} image)"
            )


def decode_segmentation(ann: dict, h: int, w: int) -> np.ndarray:
    """bool HxW mask of one COCO annotation (polygons, uncompressed or compressed RLE), with the
    box fallback described in the module docstring."""
    seg = ann.get("segmentation")
    rle = None
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        _check_polygons(ann, polys, h, w)
        if polys:
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg, dict) and "counts" in seg:
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            counts = seg["counts"]
            counts = counts.encode() if isinstance(counts, str) else counts
            rle = {"size": seg["size"], "counts": counts}
        if tuple(rle["size"]) != (h, w):
            raise DatasetFormatError(
                f"annotation {ann.get('id')}: RLE size {rle['size']} != image size {[h, w]}"
            )
    if rle is None:
        return box_mask(np.array([xywh_to_xyxy(ann["bbox"])]), h, w)
    with warnings.catch_warnings():
        # pycocotools 2.0.x under numpy 2 warns about its own __array__ on every decode.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def open_coco_root(root: str | Path, crowd: str, what: str) -> Path:
    """The checked root directory of a COCO-style dataset; ``what`` names it in errors."""
    if crowd not in CROWD_POLICIES:
        raise ValueError(f"crowd must be one of {CROWD_POLICIES}, got {crowd!r}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} root directory not found")
    return path


def read_coco_json(path: Path, what: str) -> dict:
    """A COCO-format annotation file, checked to hold the three lists every COCO file has."""
    data = read_json(path)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetFormatError(f"{path}: no {key!r} list (not {what})")
    return data


def class_target(
    label: str,
    parts: list[tuple[np.ndarray, dict]],
    h: int,
    w: int,
    context: dict[str, torch.Tensor] | None = None,
) -> Target:
    """One class's target from its (mask, annotation) parts: the mask is the union of all
    parts, crowd regions included; instances and boxes come from the non-crowd parts only."""
    union = np.zeros((h, w), dtype=bool)
    instances, boxes = [], []
    for m, ann in parts:
        union |= m
        if not ann.get("iscrowd", 0):
            instances.append(m)
            boxes.append(xywh_to_xyxy(ann["bbox"]))
    return Target(
        label=label,
        mask=torch.from_numpy(union),
        instances=torch.from_numpy(np.stack(instances)) if instances else torch.zeros((0, h, w), dtype=torch.bool),
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        context=context or {},
    )


class CocoInstances(Dataset):
    """Map-style dataset of :class:`Sample` from a COCO instances JSON (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "val2017",
        *,
        limit: int | None = None,
        manifest: Manifest | None = None,
        annotations: str | Path | None = None,
        images: str | Path | None = None,
        crowd: str = "include",
        skip_empty: bool = True,
        classes: list[str] | None = None,
    ):
        self.root = open_coco_root(root, crowd, "COCO")
        self.split = split
        self.crowd = crowd
        self.annotation_file = resolve(
            self.root, annotations, f"annotations/instances_{split}.json"
        )
        self.image_dir = resolve(self.root, images, split)
        data = read_coco_json(self.annotation_file, "COCO instances")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_names = {c["id"]: c["name"] for c in cats}
        self.class_names = [c["name"] for c in cats]
        if classes is not None:
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise ValueError(f"{self.annotation_file}: unknown classes {unknown}")
        keep = set(classes) if classes is not None else None
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if crowd == "exclude" and ann.get("iscrowd", 0):
                continue
            if keep is not None and self.category_names.get(ann["category_id"]) not in keep:
                continue
            if ann["category_id"] not in self.category_names:
                raise DatasetFormatError(
                    f"{self.annotation_file}: annotation {ann.get('id')} has unknown category "
                    f"{ann['category_id']}"
                )
            by_image.setdefault(ann["image_id"], []).append(ann)
        self.records: list[tuple[dict, list[dict]]] = []
        self.skipped = {"no_targets": 0}
        for info in data["images"]:
            anns = by_image.get(info["id"], [])
            if skip_empty and not anns:
                self.skipped["no_targets"] += 1
                continue
            self.records.append((info, anns))
            if limit is not None and len(self.records) >= limit:
                break
        self.manifest = manifest.to_dict() if manifest is not None else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        info, anns = self.records[index]
        h, w = int(info["height"]), int(info["width"])
        path = self.image_dir / info["file_name"]
        image = load_image(path)
        check_image_size(image, h, w, path, str(self.annotation_file))
        return Sample(image=image, image_id=str(info["id"]), targets=self.targets(anns, h, w))

    def targets(self, anns: list[dict], h: int, w: int) -> list[Target]:
        per_class: dict[int, list[dict]] = {}
        for ann in anns:
            per_class.setdefault(ann["category_id"], []).append(ann)
        return [
            class_target(self.category_names[cat_id], [(decode_segmentation(a, h, w), a) for a in per_class[cat_id]], h, w)
            for cat_id in sorted(per_class)
        ]


@register_dataset("coco")
def coco(
    root: str | Path,
    split: str = "val2017",
    limit: int | None = None,
    manifest: str | None = "coco2017-val",
    *,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    crowd: str = "include",
    skip_empty: bool = True,
    classes: list[str] | None = None,
) -> CocoInstances:
    """COCO instances from ``root`` (see the module docstring); ``manifest`` "" for none."""
    return CocoInstances(
        root, split, limit=limit, manifest=optional_manifest(manifest), annotations=annotations,
        images=images, crowd=crowd, skip_empty=skip_empty, classes=classes,
    )
