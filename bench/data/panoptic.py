"""COCO panoptic (official JSON + id PNGs) -> :class:`Sample`: things as targets, stuff as context.

Layout (official; every path can be overridden): ``<root>/annotations/panoptic_<split>.json``,
the id PNGs in ``<root>/annotations/panoptic_<split>/`` and images in ``<root>/<split>/``.

Conventions:

- A PNG pixel's segment id is ``R + 256 G + 256^2 B`` (panopticapi's ``rgb2id``); id 0 is void.
  Each segment's ``category_id`` comes from the annotation's ``segments_info``.
- Every *thing* class present is a :class:`Target`, built as in :mod:`bench.data.coco`: the mask
  is the union of its segments, ``instances`` and ``boxes`` come from its non-crowd segments
  (boxes from ``segments_info[*].bbox``), the same ``crowd`` policy.
- *Stuff* is never a target. It becomes context: for a target of class ``c`` the manifest's
  ``context_pairs[c]`` names regions (``boat -> water``), and ``context_regions`` says which
  categories make each region (``water = [sea, river, water-other]``); the region's mask is the
  union of those segments. Only regions present in the image are included. Panoptic segments do
  not overlap, so a context region never contains the object's own pixels. The pairs are data:
  without a manifest there is no context.
- Images are in the order of the file's ``annotations`` list. Every image of the split is
  scored or listed in ``dataset.dropped`` with its reason (a run records it in
  ``skipped.jsonl``): no thing segment (``no targets in this image``), an image without an
  annotation entry, an entry of an image the file does not list, a broken image record or
  entry (no ``file_name``, segments without an ``id`` or a known ``category_id``), an image id
  listed or annotated more than once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.data.annotations import (
    check_limit,
    DatasetFormatError,
    check_image_size,
    resolve,
)
from bench.data.coco import hashable, check_image_records, class_target, open_coco_root, read_coco_json
from bench.data.images import load_image
from bench.data.manifest import Manifest, optional_manifest
from bench.data.registry import register_dataset
from bench.data.sample import DroppedImage, Sample, Target


def _finite_box(box: object) -> bool:
    return isinstance(box, list) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
    )


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of an HxWx3 uint8 panoptic PNG."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def read_segment_ids(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                raise DatasetFormatError(
                    f"{path}: panoptic PNG must be RGB (segment ids in R + 256 G + 256^2 B), "
                    f"got mode {img.mode}"
                )
            return rgb_to_id(np.asarray(img))
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DatasetFormatError):
            raise
        raise DatasetFormatError(f"{path}: cannot read panoptic PNG ({exc})") from exc


class CocoPanoptic(Dataset):
    """Map-style dataset of :class:`Sample` from COCO panoptic annotations (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "val2017",
        *,
        limit: int | None = None,
        manifest: Manifest | None = None,
        annotations: str | Path | None = None,
        masks: str | Path | None = None,
        images: str | Path | None = None,
        crowd: str = "include",
        skip_empty: bool = True,
        classes: list[str] | None = None,
    ):
        check_limit(limit)
        self.root = open_coco_root(root, crowd, "COCO panoptic")
        self.crowd = crowd
        self.annotation_file = resolve(self.root, annotations, f"annotations/panoptic_{split}.json")
        self.mask_dir = resolve(self.root, masks, f"annotations/panoptic_{split}")
        self.image_dir = resolve(self.root, images, split)
        data = read_coco_json(self.annotation_file, "COCO panoptic")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        if any("isthing" not in c for c in cats):
            raise DatasetFormatError(f"{self.annotation_file}: categories lack 'isthing'")
        self.categories = {c["id"]: c for c in cats}
        self.class_names = [c["name"] for c in cats if c["isthing"]]
        if classes is not None:
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise ValueError(f"{self.annotation_file}: unknown thing classes {unknown}")
        self.keep = set(classes) if classes is not None else set(self.class_names)

        # Context: class -> region -> category ids, checked against this file's categories so
        # that a typo in the manifest is an error, not silently missing context.
        by_name = {c["name"]: c["id"] for c in cats}
        self.context: dict[str, dict[str, set[int]]] = {}
        if manifest is not None:
            for label in manifest.context_pairs:
                if label not in self.class_names:
                    continue
                regions = {}
                for region, names in manifest.regions_for(label).items():
                    missing = [n for n in names if n not in by_name]
                    if missing:
                        raise DatasetFormatError(
                            f"{manifest.path}: context region {region!r} of {label!r} names "
                            f"categories {missing} that {self.annotation_file} does not have"
                        )
                    regions[region] = {by_name[n] for n in names}
                self.context[label] = regions

        image_records = check_image_records(data["images"], self.annotation_file)
        infos = {i: info for i, info, _ in image_records if info is not None}
        bad_images = {i: problem for i, info, problem in image_records if info is None}
        entries: dict = {}
        for ann in data["annotations"]:
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if hashable(image_id):
                entries[image_id] = entries.get(image_id, 0) + 1
        where = str(self.annotation_file)
        self.records: list[tuple[dict, dict]] = []
        self.skipped = {"no_targets": 0}
        self.dropped: list[DroppedImage] = []
        reported: set = set()

        def drop(image_id, reason: str) -> None:
            if image_id not in reported:
                reported.add(image_id)
                self.dropped.append(DroppedImage(str(image_id), reason))

        cut = False
        for position, ann in enumerate(data["annotations"]):
            if limit is not None and len(self.records) >= limit:
                cut = True
                break
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if not hashable(image_id):
                drop(f"#annotations[{position}]", f"malformed annotation: {where}: annotations[{position}] has no usable 'image_id'")
            elif image_id in bad_images:
                drop(image_id, f"malformed image record: {where}: {bad_images[image_id]}")
            elif image_id not in infos:
                drop(image_id, f"annotation of an unlisted image: {where}: annotations[{position}] is for image id {image_id!r}, which its 'images' list does not have")
            elif entries[image_id] > 1:
                drop(image_id, f"malformed annotation: {where}: image {image_id!r} has {entries[image_id]} entries in 'annotations'; which one holds its segments is unknown")
            elif (problem := self._entry_problem(ann)) is not None:
                drop(image_id, f"malformed annotation: {where}: image {image_id!r} (annotations[{position}]): {problem}")
            elif skip_empty and not any(self._is_target(seg) for seg in ann["segments_info"]):
                self.skipped["no_targets"] += 1
                drop(image_id, "no targets in this image")
            else:
                reported.add(image_id)
                self.records.append((infos[image_id], ann))
        if not cut:  # with `limit`, only the images up to the cut are this run's split
            for image_id, info, problem in image_records:
                if image_id in reported:
                    continue
                if info is None:
                    drop(image_id, f"malformed image record: {where}: {problem}")
                else:
                    drop(image_id, f"no panoptic annotation: {where}: image {image_id!r} has no entry in 'annotations'")
        self.manifest = manifest.to_dict() if manifest is not None else None

    def image_id(self, index: int) -> str:
        """The id of sample ``index`` without loading it (names a sample that fails to load)."""
        return str(self.records[index][0]["id"])

    def _entry_problem(self, ann: dict) -> str | None:
        """Why an annotation entry cannot be used, or None."""
        if not isinstance(ann.get("file_name"), str) or not ann["file_name"]:
            return f"no usable 'file_name' (got {ann.get('file_name')!r})"
        segs = ann.get("segments_info")
        if not isinstance(segs, list):
            return f"'segments_info' is not a list (got {segs!r})"
        for k, seg in enumerate(segs):
            if not isinstance(seg, dict):
                return f"segments_info[{k}] is not an object"
            if not isinstance(seg.get("id"), int) or isinstance(seg.get("id"), bool):
                return f"segments_info[{k}] has no integer 'id'"
            cat = seg.get("category_id")
            if not hashable(cat) or cat not in self.categories:
                return f"segment {seg['id']} has unknown category_id {cat!r}"
            if self.categories[cat]["isthing"] and not seg.get("iscrowd", 0) and not _finite_box(seg.get("bbox")):
                return f"segment {seg['id']}: 'bbox' must be 4 finite numbers [x, y, w, h], got {seg.get('bbox')!r}"
        return None

    def _is_target(self, seg: dict) -> bool:
        cat = self.categories.get(seg["category_id"])
        if cat is None:
            raise DatasetFormatError(
                f"{self.annotation_file}: segment {seg.get('id')} has unknown category "
                f"{seg['category_id']}"
            )
        if not cat["isthing"] or cat["name"] not in self.keep:
            return False
        return not (self.crowd == "exclude" and seg.get("iscrowd", 0))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        info, ann = self.records[index]
        h, w = int(info["height"]), int(info["width"])
        path = self.image_dir / info["file_name"]
        image = load_image(path)
        check_image_size(image, h, w, path, str(self.annotation_file))
        png = self.mask_dir / ann["file_name"]
        ids = read_segment_ids(png)
        if ids.shape != (h, w):
            raise DatasetFormatError(f"{png}: size {ids.shape[::-1]} != image size {(w, h)}")
        try:
            targets = self.targets(ann, ids)
        except (KeyError, TypeError, IndexError) as exc:  # a record shaped in a way not foreseen
            raise DatasetFormatError(
                f"{self.annotation_file}: image {info['id']}: a segment cannot be decoded "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return Sample(image=image, image_id=str(info["id"]), targets=targets)

    def targets(self, ann: dict, ids: np.ndarray) -> list[Target]:
        h, w = ids.shape
        per_class: dict[int, list[dict]] = {}
        stuff: dict[int, list[int]] = {}
        for seg in ann["segments_info"]:
            if self._is_target(seg):
                per_class.setdefault(seg["category_id"], []).append(seg)
            elif not self.categories[seg["category_id"]]["isthing"]:
                stuff.setdefault(seg["category_id"], []).append(seg["id"])
        out: list[Target] = []
        for cat_id in sorted(per_class):
            label = self.categories[cat_id]["name"]
            context = {}
            for region, region_cats in self.context.get(label, {}).items():
                seg_ids = [sid for cid in region_cats for sid in stuff.get(cid, [])]
                if seg_ids:
                    region_mask = np.isin(ids, seg_ids)
                    if region_mask.any():
                        context[region] = torch.from_numpy(region_mask)
            parts = [(ids == seg["id"], seg) for seg in per_class[cat_id]]
            out.append(class_target(label, parts, h, w, context))
        return out


@register_dataset("coco_panoptic", layout_keys=("annotations", "masks", "images"))
def coco_panoptic(
    root: str | Path,
    split: str = "val2017",
    limit: int | None = None,
    manifest: str | None = "coco2017-val",
    *,
    annotations: str | Path | None = None,
    masks: str | Path | None = None,
    images: str | Path | None = None,
    crowd: str = "include",
    skip_empty: bool = True,
    classes: list[str] | None = None,
) -> CocoPanoptic:
    """COCO panoptic from ``root`` (see the module docstring); the manifest gives the context
    pairs (``manifest`` "" for none: no context)."""
    return CocoPanoptic(
        root, split, limit=limit, manifest=optional_manifest(manifest), annotations=annotations,
        masks=masks, images=images, crowd=crowd, skip_empty=skip_empty, classes=classes,
    )
