"""The crowd suite: harbor-style scenes whose objects are many or large, with exact per-instance
masks (the seed's second failure: a map that covers one part of a large object, or one of
several objects).

Scenes share the harbor generator's code (:mod:`bench.data.synthetic`: textures, the object
shapes and their painting, the per-scene random stream), so a crowd boat is drawn exactly as a
harbor boat is. Each scene is a textured sky above a horizon and one ground below, with objects
of *one* class in one of five *kinds*:

- ``single``: one object at the harbor size (width 24-44% of the image, the class's aspect);
- ``large``: one object whose box spans 55-98% of the image in each direction, independently
  (so its aspect is stretched); it covers up to about 60% of the image (a car) and at least
  about 6% (a thin bird);
- ``crowd2``, ``crowd3``, ``crowd4``: 2, 3 or 4 instances, each 18-32% of the image wide at
  the class's aspect, in boxes at least ``GAP`` pixels apart, so instances never touch.

Context is not part of this suite: objects sit anywhere in the image (a boat may float in the
sky), and the ground is drawn uniformly, so no model trained here can lean on it.

Truth, exact by construction: the target's ``instances`` hold one mask per object (disjoint,
each non-empty), ``mask`` is their union (every object pixel, nothing else) and ``boxes`` the
instances' tight boxes (xyxy, exclusive right/bottom), in drawing order.

The ``test`` split is balanced: every (class, kind) cell equally often, cycling in a fixed order.
``train`` and ``val`` draw class and kind uniformly. Everything is a pure function of (seed,
split, index), as for the harbor scenes, so shards and resumed runs see identical data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.registry import register_dataset
from bench.data.sample import Sample, Target
from bench.data.synthetic import ASPECT, CLASSES, GROUNDS, paint_background, paint_object, scene_rng

KINDS = ("single", "large", "crowd2", "crowd3", "crowd4")
# Version of the drawing code: part of every cache key built from these scenes.
CROWD_GENERATOR_VERSION = 1
GAP = 2  # pixels between two instances' boxes
_PLACEMENT_TRIES = 200


def instance_count(kind: str) -> int:
    return int(kind[len("crowd") :]) if kind.startswith("crowd") else 1


@dataclass
class CrowdSpec:
    label: str
    kind: str
    ground: str


@dataclass
class CrowdScene:
    image: np.ndarray  # H x W x 3 float32 in [0, 1]
    instances: np.ndarray  # bool K x H x W, disjoint, each non-empty
    boxes: np.ndarray  # int K x 4 xyxy, exclusive right/bottom
    spec: CrowdSpec

    @property
    def object_mask(self) -> np.ndarray:
        return self.instances.any(axis=0)


def draw_crowd_spec(rng: np.random.Generator, split: str, index: int, kinds: Sequence[str]) -> CrowdSpec:
    if split == "test":
        cells = [(c, k) for c in CLASSES for k in kinds]
        label, kind = cells[index % len(cells)]
    else:
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        kind = kinds[int(rng.integers(len(kinds)))]
    return CrowdSpec(label, kind, GROUNDS[int(rng.integers(len(GROUNDS)))])


def _boxes(spec: CrowdSpec, rng: np.random.Generator, size: int) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of each instance's box, inside the image with a 1 px margin."""
    h = w = size
    if spec.kind == "large":
        ow = int(rng.uniform(0.55, 0.98) * w)
        oh = int(rng.uniform(0.55, 0.98) * h)
        return [(int(rng.integers(1, h - oh)), int(rng.integers(1, w - ow)), oh, ow)]
    lo, hi = (0.24, 0.44) if spec.kind == "single" else (0.18, 0.32)
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(instance_count(spec.kind)):
        ow = int(rng.uniform(lo, hi) * w)
        oh = max(1, int(round(ow * ASPECT[spec.label])))
        for _try in range(_PLACEMENT_TRIES):
            top, left = int(rng.integers(1, h - oh)), int(rng.integers(1, w - ow))
            if all(
                top >= t + bh + GAP or t >= top + oh + GAP or left >= x + bw + GAP or x >= left + ow + GAP
                for t, x, bh, bw in placed
            ):
                placed.append((top, left, oh, ow))
                break
        else:
            # Four boxes of at most 31 x 30 px in a 96 px scene leave ample room; reaching this
            # means a size setting that cannot hold the crowd, not bad luck.
            raise ValueError(f"crowd scene of {spec.kind} {spec.label}s: no room for instance {len(placed) + 1} at size {size}")
    return placed


def render_crowd(spec: CrowdSpec, rng: np.random.Generator, size: int) -> CrowdScene:
    img, _sky, _horizon = paint_background(rng, spec.ground, size)
    boxes = _boxes(spec, rng, size)
    instances = np.zeros((len(boxes), size, size), bool)
    for k, (top, left, oh, ow) in enumerate(boxes):
        instances[k, top : top + oh, left : left + ow] = paint_object(img[top : top + oh, left : left + ow], spec.label, rng)
    xyxy = []
    for m in instances:
        ys, xs = np.nonzero(m)
        xyxy.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return CrowdScene(img, instances, np.asarray(xyxy, dtype=np.int64).reshape(-1, 4), spec)


def make_crowd_scene(seed: int, split: str, index: int, size: int, kinds: Sequence[str] = KINDS) -> CrowdScene:
    # A stream of its own ("crowd-" + split), so crowd scene i never repeats harbor scene i.
    rng = scene_rng(seed, f"crowd-{split}", index)
    return render_crowd(draw_crowd_spec(rng, split, index, kinds), rng, size)


def crowd_to_sample(scene: CrowdScene, image_id: str) -> Sample:
    image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))
    instances = torch.from_numpy(scene.instances)
    target = Target(
        scene.spec.label,
        mask=instances.any(dim=0),
        instances=instances,
        boxes=torch.from_numpy(scene.boxes).float(),
    )
    return Sample(image=image, image_id=image_id, targets=[target])


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"crowd kinds must be a non-empty list drawn from {list(KINDS)}, got {kinds!r}")
    bad = [k for k in kinds if k not in KINDS]
    if bad or len(set(kinds)) != len(kinds):
        raise ValueError(f"crowd kinds must be distinct names from {list(KINDS)}, got {list(kinds)}")
    return tuple(kinds)


class CrowdScenes(Dataset):
    """Map-style dataset of crowd :class:`Sample` s; item i is a pure function of its index."""

    def __init__(self, split: str = "test", n: int = 200, seed: int = 0, size: int = 96, kinds: Sequence[str] = KINDS):
        if split not in ("train", "val", "test"):
            raise ValueError(f"crowd split must be train, val or test, got {split!r}")
        if not 64 <= size <= 256:
            raise ValueError(f"crowd scene size must be in [64, 256], got {size}")
        self.split, self.n, self.seed, self.size = split, int(n), int(seed), int(size)
        self.kinds = _check_kinds(kinds)
        self.class_names = list(CLASSES)
        self.manifest = None

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> CrowdScene:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return make_crowd_scene(self.seed, self.split, index, self.size, self.kinds)

    def __getitem__(self, index: int) -> Sample:
        return crowd_to_sample(self.scene(index), f"crowd-{self.split}-s{self.seed}-{index:05d}")


@register_dataset("crowd")
def crowd_dataset(split: str = "test", n: int = 200, seed: int = 0, size: int = 96, kinds: list = list(KINDS)) -> CrowdScenes:
    return CrowdScenes(split=split, n=n, seed=seed, size=size, kinds=kinds)


def crowd_batch(seed: int, split: str, indices: range, size: int, kinds: Sequence[str] = KINDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Images Bx3xHxW and class indices B, for training and evaluation."""
    images, labels = [], []
    for i in indices:
        s = make_crowd_scene(seed, split, i, size, kinds)
        images.append(s.image.transpose(2, 0, 1))
        labels.append(CLASSES.index(s.spec.label))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def crowd_kinds(seed: int, split: str, indices: range, kinds: Sequence[str] = KINDS) -> list[str]:
    """The kind of each scene, drawn without rendering it."""
    return [draw_crowd_spec(scene_rng(seed, f"crowd-{split}", i), split, i, kinds).kind for i in indices]
