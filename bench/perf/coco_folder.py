"""A folder of COCO-sized JPEGs in the COCO layout: the perf pipeline's data on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def perf_classes(k: int = 10) -> list[str]:
    """``k`` ImageNet class names, so that the ``imagenet`` class map gives each one output (the
    pipeline then needs no extra forward pass to pick among several outputs)."""
    from bench.models.class_maps import imagenet_identity_map

    names = [n for n in imagenet_identity_map().outputs if not (n[:1] == "n" and n[1:].isdigit())]
    return names[:: max(1, len(names) // k)][:k]


def _polygon(rng: np.random.Generator, h: int, w: int) -> tuple[list[float], list[float]]:
    """A random star-shaped polygon (24 vertices) and its xywh box, inside the image."""
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    r = rng.uniform(0.08, 0.3) * min(h, w)
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    radii = r * rng.uniform(0.6, 1.0, size=24)
    xs = np.clip(cx + radii * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, h - 1)
    poly = np.stack([xs, ys], 1).reshape(-1).round(2).tolist()
    box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]
    return poly, box


def write_image_folder(root: Path, n: int, *, size: tuple[int, int] = (480, 640), seed: int = 0, split: str = "perf") -> Path:
    """Write ``n`` JPEGs (quality 90, ``size`` = (h, w)) with 1-3 polygon objects each, in the
    COCO layout the ``coco`` loader reads (``root/<split>/*.jpg``,
    ``root/annotations/instances_<split>.json``). Images are smooth gradients, shapes and noise:
    photo-like enough that JPEG decoding costs what it costs on photos. Reuses a folder that
    already holds the same ``n``, ``size`` and ``seed``."""
    from PIL import Image, ImageDraw

    root = Path(root)
    ann_file = root / "annotations" / f"instances_{split}.json"
    stamp = {"n": n, "size": list(size), "seed": seed}
    if ann_file.exists():
        try:
            if json.loads(ann_file.read_text()).get("info", {}).get("groundbench_perf") == stamp:
                return root
        except ValueError:
            pass
    (root / split).mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = perf_classes()
    h, w = size
    images, anns = [], []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx / w * rng.uniform(0.3, 1) + yy / h * rng.uniform(0.3, 1))[..., None] / 2
        pixels = c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, w, 3))
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            poly, box = _polygon(rng, h, w)
            cat = int(rng.integers(len(classes)))
            draw.polygon(poly, fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat + 1, "segmentation": [poly],
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        name = f"{i + 1:06d}.jpg"
        img.save(root / split / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    data = {"info": {"groundbench_perf": stamp}, "images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
    ann_file.write_text(json.dumps(data))
    return root


def targets_per_image(root: Path, first: int, last: int, split: str = "perf") -> float:
    """Mean number of targets (distinct classes) of images ``first`` .. ``last - 1`` of the
    folder: the engine attributes one (image, target) pair per target, so the model passes a
    pipeline image needs are this many times those of one input."""
    data = json.loads((Path(root) / "annotations" / f"instances_{split}.json").read_text())
    ids = [img["id"] for img in data["images"][first:last]]
    classes: dict[int, set[int]] = {i: set() for i in ids}
    for ann in data["annotations"]:
        if ann["image_id"] in classes:
            classes[ann["image_id"]].add(ann["category_id"])
    return sum(len(c) for c in classes.values()) / max(1, len(ids))
