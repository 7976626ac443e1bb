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
- Broken records never stop a run and are never silently lost: an image record without a
  usable ``id``, ``file_name``, ``height`` or ``width``; an image id listed more than once (its
  annotations cannot be told apart); an annotation without a known ``category_id``, without a
  4-number finite ``bbox``, or that is not an object at all (its image is left out whole); an
  annotation of an image id the file does not list. Each such image, like each image left out
  for having no target, is in ``dataset.dropped`` (:class:`bench.data.sample.DroppedImage`,
  naming the file, the record and the reason), which a run records in ``skipped.jsonl``.
- ``image_id`` is the COCO image id as a string. Images are in the JSON's ``images`` order;
  ``limit`` keeps the first N samples.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from bench.data.annotations import (
    check_limit,
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
from bench.data.sample import DroppedImage, Sample, Target

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
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: a JSON {type(data).__name__}, not an object (not {what})")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{path}: no {key!r} list (not {what})")
    for position, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and hashable(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise DatasetFormatError(f"{path}: categories[{position}] needs an 'id' and a 'name', got {cat!r}")
    return data


def hashable(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _ann_name(ann: object, position: int) -> str:
    ann_id = ann.get("id") if isinstance(ann, dict) else None
    return str(ann_id) if hashable(ann_id) else f"#{position} (no id)"


def check_image_records(records: object, path: Path) -> list[tuple[object, dict | None, str | None]]:
    """Per image record, in file order: (its id, or ``#images[i]`` without a usable one; the
    record when usable, else None; the problem, else None). A record is usable when it is an
    object with an int or str ``id`` listed once, a string ``file_name`` and positive integer
    ``height`` and ``width``."""
    if not isinstance(records, list):
        raise DatasetFormatError(f"{path}: 'images' is not a list")
    ids = [r.get("id") if isinstance(r, dict) else None for r in records]
    counts: dict = {}
    for i in ids:
        if hashable(i):
            counts[i] = counts.get(i, 0) + 1
    out: list[tuple[object, dict | None, str | None]] = []
    for position, (rec, image_id) in enumerate(zip(records, ids)):
        if not isinstance(rec, dict):
            out.append((f"#images[{position}]", None, f"images[{position}] is a {type(rec).__name__}, not an object"))
        elif not hashable(image_id):
            out.append((f"#images[{position}]", None, f"images[{position}] has no usable 'id' (got {image_id!r})"))
        elif counts[image_id] > 1:
            out.append((image_id, None, (
                f"image id {image_id!r} is listed {counts[image_id]} times in 'images' (this is "
                f"images[{position}]); its annotations cannot be told apart, so no copy is scored"
            )))
        else:
            problem = _image_problem(rec)
            out.append((image_id, None if problem else rec, f"image {image_id!r} (images[{position}]): {problem}" if problem else None))
    return out


def _image_problem(rec: dict) -> str | None:
    name = rec.get("file_name")
    if not isinstance(name, str) or not name:
        return f"no usable 'file_name' (got {name!r})"
    for key in ("height", "width"):
        v = rec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"no usable {key!r} (a positive integer; got {v!r})"
    return None


def annotation_problem(ann: object, categories: dict) -> str | None:
    """Why an annotation record cannot be used, or None: it must be an object with a known
    ``category_id`` and a ``bbox`` of 4 finite numbers (segmentations are checked when decoded)."""
    if not isinstance(ann, dict):
        return f"is a {type(ann).__name__}, not an object"
    cat = ann.get("category_id")
    if "category_id" not in ann:
        return "no 'category_id'"
    if not hashable(cat) or cat not in categories:
        return f"unknown category_id {cat!r}"
    box = ann.get("bbox")
    ok = isinstance(box, list) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
    )
    if not ok:
        return f"'bbox' must be 4 finite numbers [x, y, w, h], got {box!r}"
    return None


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
        check_limit(limit)
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
        self.records: list[tuple[dict, list[dict]]] = []
        self.skipped = {"no_targets": 0}
        self.dropped: list[DroppedImage] = []
        image_records = check_image_records(data["images"], self.annotation_file)
        listed = {image_id for image_id, _, _ in image_records}
        by_image: dict = {}
        broken: dict = {}  # image id -> the first broken annotation's reason
        unlisted: dict = {}  # image id the file does not list -> its annotation ids
        for position, ann in enumerate(data["annotations"]):
            problem = annotation_problem(ann, self.category_names)
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if not hashable(image_id) or image_id not in listed:
                unlisted.setdefault(image_id if hashable(image_id) else repr(image_id), []).append(_ann_name(ann, position))
                continue
            if problem is not None:
                broken.setdefault(image_id, f"annotation {_ann_name(ann, position)}: {problem}")
                continue
            if crowd == "exclude" and ann.get("iscrowd", 0):
                continue
            if keep is not None and self.category_names.get(ann["category_id"]) not in keep:
                continue
            by_image.setdefault(image_id, []).append(ann)
        where = str(self.annotation_file)
        cut = False
        for image_id, info, problem in image_records:
            if limit is not None and len(self.records) >= limit:
                cut = True
                break
            if info is None:
                self.dropped.append(DroppedImage(str(image_id), f"malformed image record: {where}: {problem}"))
                continue
            if image_id in broken:
                self.dropped.append(DroppedImage(str(image_id), f"malformed annotation: {where}: image {image_id}: {broken[image_id]}"))
                continue
            anns = by_image.get(image_id, [])
            if skip_empty and not anns:
                self.skipped["no_targets"] += 1
                self.dropped.append(DroppedImage(str(image_id), "no targets in this image"))
                continue
            self.records.append((info, anns))
        if not cut:  # with `limit`, only the images up to the cut are this run's split
            for image_id, ann_ids in unlisted.items():
                shown = ", ".join(map(str, ann_ids[:5])) + (f" and {len(ann_ids) - 5} more" if len(ann_ids) > 5 else "")
                self.dropped.append(DroppedImage(
                    str(image_id),
                    f"annotation of an unlisted image: {where}: annotation(s) {shown} refer to image id "
                    f"{image_id!r}, which its 'images' list does not have",
                ))
        self.manifest = manifest.to_dict() if manifest is not None else None

    def image_id(self, index: int) -> str:
        """The id of sample ``index`` without loading it (names a sample that fails to load)."""
        return str(self.records[index][0]["id"])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        info, anns = self.records[index]
        h, w = int(info["height"]), int(info["width"])
        path = self.image_dir / info["file_name"]
        image = load_image(path)
        check_image_size(image, h, w, path, str(self.annotation_file))
        try:
            targets = self.targets(anns, h, w)
        except (KeyError, TypeError, IndexError) as exc:  # a record shaped in a way not foreseen
            raise DatasetFormatError(
                f"{self.annotation_file}: image {info['id']}: an annotation cannot be decoded "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return Sample(image=image, image_id=str(info["id"]), targets=targets)

    def targets(self, anns: list[dict], h: int, w: int) -> list[Target]:
        per_class: dict[int, list[dict]] = {}
        for ann in anns:
            per_class.setdefault(ann["category_id"], []).append(ann)
        return [
            class_target(self.category_names[cat_id], [(decode_segmentation(a, h, w), a) for a in per_class[cat_id]], h, w)
            for cat_id in sorted(per_class)
        ]


@register_dataset("coco", layout_keys=("annotations", "images"))
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
