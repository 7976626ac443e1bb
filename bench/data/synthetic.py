"""The harbor suite: procedural scenes whose ground truth of *where the evidence is* is exact.

Each scene is a sky band above a horizon and one ground region below it (water, grass, road or
sand, each a texture, not a flat colour), with zero or one object (boat, car, bird, airplane) of
varied shape, size, colour and position. Every pixel belongs to exactly one of: the object, the
sky, the ground, so the object mask and the context masks are exact and partition the image.

Where an object sits is its *context*. Each class has a home context (boat -> water, car ->
road, bird and airplane -> sky; the pairs are data, in ``data_manifests/harbor.toml``). In a
split drawn with co-occurrence ``rho`` an object sits in its home context with probability
``rho`` and in each of the other K-1 options with probability (1 - rho) / (K - 1); ``rho=None``
means 1/K, no correlation. The ground under a flying object is drawn from the "free" grounds
(those that are nobody's home: grass, sand) with probability s = (rho - 1/K) / (1 - 1/K) and
uniformly otherwise, so that at rho = 1/K every ground is equally likely everywhere and at rho
near 1 water and road hardly appear without their boat or car.

The ``test`` split is balanced: every class in every context option equally often, plus empty
scenes of every ground type (water with no boat); this is where counterfactuals such as a boat
on grass come from.

Everything is a pure function of (seed, split, index): scene i does not depend on any other
scene, so shards and resumed runs see identical data.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.registry import manifest_dir, register_dataset
from bench.data.sample import Sample, Target

GROUNDS = ("water", "grass", "road", "sand")
CLASSES = ("boat", "car", "bird", "airplane")
FLYING = ("bird", "airplane")
# Version of the drawing code: part of every cache key built from these scenes.
GENERATOR_VERSION = 1


@lru_cache(maxsize=1)
def harbor_manifest() -> dict[str, Any]:
    """The suite's manifest (context pairs, classes) from ``data_manifests/harbor.toml``."""
    return tomllib.loads((manifest_dir() / "harbor.toml").read_text())


def home_context(label: str) -> str:
    pairs = harbor_manifest()["context_pairs"]
    return pairs[label][0]


def context_options(label: str) -> tuple[str, ...]:
    """Where an object of this class may sit: flying objects over any region, others on ground."""
    return ("sky",) + GROUNDS if label in FLYING else GROUNDS


# -- textures --------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random (cells+1)^2 grid, bilinearly upsampled to h x w."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    ys = np.linspace(0, cells, h, dtype=np.float32)
    xs = np.linspace(0, cells, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def texture(name: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An h x w x 3 float texture for a context region (or ``neutral`` for interventions)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fine = rng.random((h, w)).astype(np.float32) - 0.5
    if name == "sky":
        base = _jitter(rng, (0.55, 0.75, 0.95), 0.05)
        grad = (1 - yy / max(h, 1))[..., None] * np.array([-0.15, -0.1, 0.0], np.float32)
        clouds = np.clip(_smooth_noise(rng, h, w, 4) * 1.6 - 0.9, 0, 1)[..., None]
        img = (base + grad) * (1 - clouds) + clouds * 0.97 + 0.02 * fine[..., None]
    elif name == "water":
        base = _jitter(rng, (0.1, 0.3, 0.6), 0.06)
        freq = rng.uniform(0.5, 0.9)
        phase = rng.uniform(0, 2 * np.pi)
        wobble = 3 * _smooth_noise(rng, h, w, 3)
        waves = np.sin(yy * freq + phase + wobble + 0.15 * xx)[..., None]
        img = base + 0.07 * waves * np.array([1, 1, 1.2], np.float32) + 0.03 * fine[..., None]
    elif name == "grass":
        base = _jitter(rng, (0.2, 0.55, 0.15), 0.06)
        blades = rng.random((1, w)).astype(np.float32) - 0.5
        patch = _smooth_noise(rng, h, w, 5)[..., None] - 0.5
        img = base + 0.18 * fine[..., None] + 0.12 * blades[..., None] + 0.15 * patch
    elif name == "road":
        base = _jitter(rng, (0.3, 0.3, 0.32), 0.04)
        img = base + 0.08 * fine[..., None]
        if h > 6:
            lane = int(rng.integers(h // 3, max(h // 3 + 1, 2 * h // 3)))
            dash = ((xx[lane] // 6).astype(int) % 2 == 0)
            img[lane : lane + 2][:, dash] = _jitter(rng, (0.95, 0.9, 0.6), 0.05)
    elif name == "sand":
        base = _jitter(rng, (0.85, 0.75, 0.5), 0.05)
        ripples = np.sin(yy * 1.3 + 2 * _smooth_noise(rng, h, w, 3))[..., None]
        img = base + 0.04 * ripples + 0.1 * fine[..., None]
    elif name == "neutral":
        img = np.full((h, w, 3), 0.5, np.float32) + 0.1 * fine[..., None]
    else:
        raise ValueError(f"unknown texture {name!r}")
    return np.clip(img, 0, 1).astype(np.float32)


# -- objects ---------------------------------------------------------------------------------

PALETTE = (
    (0.85, 0.1, 0.1),
    (0.95, 0.85, 0.1),
    (0.95, 0.95, 0.95),
    (0.95, 0.5, 0.1),
    (0.5, 0.15, 0.6),
    (0.08, 0.08, 0.08),
    (0.45, 0.28, 0.12),
    (0.6, 0.6, 0.62),
)
ASPECT = {"boat": 0.85, "car": 0.55, "bird": 0.6, "airplane": 0.6}


def _poly(u: np.ndarray, v: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Inside a convex polygon (vertices in either winding) on the unit-box grid (u, v)."""
    pts_a = np.asarray(pts, np.float32)
    inside_pos = np.ones(u.shape, bool)
    inside_neg = np.ones(u.shape, bool)
    for (x0, y0), (x1, y1) in zip(pts_a, np.roll(pts_a, -1, axis=0)):
        cross = (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def _ellipse(u, v, cu, cv, ru, rv) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1


def object_layers(label: str, u: np.ndarray, v: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The parts of an object as (mask on the unit box, colour slot 0=main 1=second 2=dark)."""
    if label == "boat":
        return [
            (_poly(u, v, [(0.0, 0.62), (1.0, 0.62), (0.8, 1.0), (0.2, 1.0)]), 0),
            (_poly(u, v, [(0.47, 0.04), (0.53, 0.04), (0.53, 0.62), (0.47, 0.62)]), 2),
            (_poly(u, v, [(0.55, 0.06), (0.55, 0.58), (0.92, 0.58)]), 1),
            (_poly(u, v, [(0.45, 0.14), (0.45, 0.58), (0.14, 0.58)]), 1),
        ]
    if label == "car":
        return [
            (_poly(u, v, [(0.0, 0.38), (1.0, 0.38), (1.0, 0.78), (0.0, 0.78)]), 0),
            (_poly(u, v, [(0.18, 0.4), (0.3, 0.02), (0.7, 0.02), (0.84, 0.4)]), 0),
            (_poly(u, v, [(0.3, 0.36), (0.36, 0.1), (0.64, 0.1), (0.72, 0.36)]), 1),
            (_ellipse(u, v, 0.24, 0.8, 0.12, 0.2), 2),
            (_ellipse(u, v, 0.76, 0.8, 0.12, 0.2), 2),
        ]
    if label == "bird":
        return [
            (_poly(u, v, [(0.5, 0.62), (0.0, 0.0), (0.36, 0.66)]), 0),
            (_poly(u, v, [(0.5, 0.62), (1.0, 0.0), (0.64, 0.66)]), 0),
            (_ellipse(u, v, 0.5, 0.7, 0.2, 0.14), 0),
            (_ellipse(u, v, 0.72, 0.6, 0.09, 0.12), 2),
            (_poly(u, v, [(0.8, 0.56), (0.8, 0.66), (0.92, 0.61)]), 1),
        ]
    if label == "airplane":
        return [
            (_ellipse(u, v, 0.5, 0.5, 0.5, 0.11), 0),
            (_poly(u, v, [(0.38, 0.5), (0.58, 0.5), (0.46, 1.0), (0.32, 1.0)]), 1),
            (_poly(u, v, [(0.38, 0.5), (0.58, 0.5), (0.46, 0.0), (0.32, 0.0)]), 1),
            (_poly(u, v, [(0.0, 0.5), (0.12, 0.5), (0.07, 0.22), (0.0, 0.22)]), 1),
            (_ellipse(u, v, 0.86, 0.47, 0.07, 0.05), 2),
        ]
    raise ValueError(f"unknown harbor class {label!r}")


def _colours(rng: np.random.Generator) -> list[np.ndarray]:
    main, second = rng.choice(len(PALETTE), size=2, replace=False)
    return [
        _jitter(rng, PALETTE[main], 0.06),
        _jitter(rng, PALETTE[second], 0.06),
        _jitter(rng, (0.1, 0.1, 0.1), 0.05),
    ]


def paint_object(patch: np.ndarray, label: str, rng: np.random.Generator) -> np.ndarray:
    """Draw an object of class ``label`` filling the box ``patch`` (an oh x ow x 3 view into the
    image, painted in place), mirrored left-right with probability 1/2, in colours drawn from
    ``rng``. Returns the object's exact mask on the box (bool oh x ow). Shared by the harbor and
    crowd scenes; the draws from ``rng`` (mirror, then colours) are part of both generators'
    outputs, so their order must not change."""
    oh, ow = patch.shape[:2]
    v, u = np.mgrid[0:oh, 0:ow].astype(np.float32)
    u = (u + 0.5) / ow
    v = (v + 0.5) / oh
    if rng.random() < 0.5:
        u = 1 - u
    colours = _colours(rng)
    mask = np.zeros((oh, ow), bool)
    for part, slot in object_layers(label, u, v):
        patch[part] = colours[slot]
        mask |= part
    return mask


def paint_background(rng: np.random.Generator, ground: str, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A textured sky above a random horizon and ``ground`` below: (image H x W x 3, sky mask,
    horizon row). The draws from ``rng`` are part of the harbor scenes' outputs."""
    h = w = size
    horizon = int(rng.integers(int(0.36 * h), int(0.6 * h) + 1))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = texture("sky", rng, horizon, w)
    img[horizon:] = texture(ground, rng, h - horizon, w)
    sky = np.zeros((h, w), bool)
    sky[:horizon] = True
    return img, sky, horizon


# -- scenes ----------------------------------------------------------------------------------


@dataclass
class SceneSpec:
    """What one scene holds, drawn before any pixel is."""

    label: str | None  # None: an empty scene
    context: str  # where the object sits ("sky" or a ground); for an empty scene, the ground
    ground: str


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 float32 in [0, 1]
    object_mask: np.ndarray  # bool H x W (all-false for an empty scene)
    regions: dict[str, np.ndarray]  # "sky" and the ground's name -> bool H x W, object removed
    spec: SceneSpec


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, key, index]))


def draw_spec(rng: np.random.Generator, split: str, index: int, rho: float | None) -> SceneSpec:
    if split == "test":
        # Balanced: cycle through every (class, context option) cell and the empty scenes.
        cells = [(c, ctx) for c in CLASSES for ctx in context_options(c)]
        cells += [(None, g) for g in GROUNDS]
        label, ctx = cells[index % len(cells)]
        if label is None:
            return SceneSpec(None, ctx, ctx)
        ground = ctx if ctx in GROUNDS else GROUNDS[int(rng.integers(len(GROUNDS)))]
        return SceneSpec(label, ctx, ground)
    label = CLASSES[int(rng.integers(len(CLASSES)))]
    options = context_options(label)
    k = len(options)
    p_home = 1.0 / k if rho is None else float(rho)
    if not 1.0 / k - 1e-9 <= p_home <= 1.0:
        raise ValueError(f"rho must lie in [1/K, 1] = [{1 / k:.3f}, 1], got {rho}")
    home = home_context(label)
    probs = np.array([p_home if o == home else (1 - p_home) / (k - 1) for o in options])
    ctx = options[int(rng.choice(k, p=probs / probs.sum()))]
    if ctx in GROUNDS:
        return SceneSpec(label, ctx, ctx)
    strength = (p_home - 1.0 / k) / (1.0 - 1.0 / k)
    free = [g for g in GROUNDS if g not in {home_context(c) for c in CLASSES}]
    pool = free if rng.random() < strength else list(GROUNDS)
    return SceneSpec(label, ctx, pool[int(rng.integers(len(pool)))])


def render_scene(spec: SceneSpec, rng: np.random.Generator, size: int) -> Scene:
    h = w = size
    img, sky, horizon = paint_background(rng, spec.ground, size)
    obj = np.zeros((h, w), bool)
    if spec.label is not None:
        lo, hi = (0, horizon) if spec.context == "sky" else (horizon, h)
        room = hi - lo - 2
        ow = int(rng.uniform(0.24, 0.44) * w)
        oh = int(round(ow * ASPECT[spec.label]))
        if oh > room:  # keep the object inside its region
            ow, oh = int(room / ASPECT[spec.label]), room
        top = int(rng.integers(lo + 1, hi - oh)) if hi - oh > lo + 1 else lo + 1
        left = int(rng.integers(1, w - ow))
        obj[top : top + oh, left : left + ow] = paint_object(img[top : top + oh, left : left + ow], spec.label, rng)
    regions = {"sky": sky & ~obj, spec.ground: ~sky & ~obj}
    return Scene(img, obj, regions, spec)


def make_scene(seed: int, split: str, index: int, rho: float | None, size: int) -> Scene:
    rng = scene_rng(seed, split, index)
    return render_scene(draw_spec(rng, split, index, rho), rng, size)


def intervene(scene: Scene, region: str, texture_name: str, seed: int) -> np.ndarray:
    """The scene with ``region`` (object pixels excluded) repainted with another texture."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    h, w = scene.object_mask.shape
    out = scene.image.copy()
    mask = scene.regions[region]
    out[mask] = texture(texture_name, rng, h, w)[mask]
    return out


def scene_to_sample(scene: Scene, image_id: str) -> Sample:
    image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))
    targets = []
    label = scene.spec.label
    if label is not None:
        mask = torch.from_numpy(scene.object_mask)
        ys, xs = np.nonzero(scene.object_mask)
        box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
        context = {
            name: torch.from_numpy(scene.regions[name])
            for name in harbor_manifest()["context_pairs"][label]
            if name in scene.regions and scene.regions[name].any()
        }
        targets.append(Target(label, mask, mask[None].clone(), box, False, context))
    return Sample(image=image, image_id=image_id, targets=targets)


class HarborScenes(Dataset):
    """Map-style dataset of harbor :class:`Sample` s; item i is a pure function of its index."""

    def __init__(self, split: str = "test", n: int = 480, seed: int = 0, rho: float | None = None, size: int = 96):
        if split not in ("train", "val", "test"):
            raise ValueError(f"harbor split must be train, val or test, got {split!r}")
        if split == "test" and rho is not None:
            raise ValueError("the harbor test split is balanced by construction; rho does not apply")
        if not 48 <= size <= 256:
            raise ValueError(f"harbor scene size must be in [48, 256], got {size}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"harbor n (the number of scenes) must be an integer >= 1, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"harbor seed must be an integer >= 0, got {seed!r}")
        self.split, self.n, self.seed, self.rho, self.size = split, int(n), int(seed), rho, int(size)
        self.class_names = list(CLASSES)
        self.manifest = harbor_manifest()

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return make_scene(self.seed, self.split, index, self.rho, self.size)

    def __getitem__(self, index: int) -> Sample:
        return scene_to_sample(self.scene(index), f"harbor-{self.split}-s{self.seed}-{index:05d}")


@register_dataset("harbor")
def harbor_dataset(split: str = "test", n: int = 480, seed: int = 0, rho: float | None = None, size: int = 96) -> HarborScenes:
    return HarborScenes(split=split, n=n, seed=seed, rho=rho, size=size)


def scene_batch(seed: int, split: str, indices: range, rho: float | None, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images Bx3xHxW and class indices B (-1 for empty scenes), for training and evaluation."""
    images, labels = [], []
    for i in indices:
        s = make_scene(seed, split, i, rho, size)
        images.append(s.image.transpose(2, 0, 1))
        labels.append(CLASSES.index(s.spec.label) if s.spec.label else -1)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)
