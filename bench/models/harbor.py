"""The harbor suite's two classifiers, trained here on the CPU from the scene generator.

``harbor:contextual`` is trained where objects nearly always sit in their home context
(rho = 0.95: boats on water, cars on road, birds and airplanes in the sky); ``harbor:object_only``
with rho = 1/K, so context carries no information about the class. Same architecture, same
seed, same number of steps: the only difference is the training distribution.

Training is deterministic given the seed and the torch version. The weights and the facts
measured about each model (clean accuracy on its own distribution and on the balanced test
split, and its true reliance on context measured by intervention) are cached under
``$GROUNDBENCH_CACHE`` (default ``~/.cache/groundbench``), keyed by everything that defines them,
and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from bench.data.synthetic import (
    CLASSES,
    GENERATOR_VERSION,
    intervene,
    home_context,
    make_scene,
    scene_batch,
)
from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle
from bench.models.training import cache_root, fit, load_cached, save_cached

NEUTRAL_TEXTURES = ("grass", "sand")
VARIANTS = {"contextual": 0.95, "object_only": None}


class HarborNet(nn.Module):
    """A small CNN with a global-average-pool + linear head (so CAM applies); the last conv
    block's output (``features``) is at 1/8 of the input resolution (12x12 for 96x96 scenes)."""

    def __init__(self, n_classes: int = len(CLASSES), width: int = 16):
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        w = width
        self.features = nn.Sequential(
            *block(3, w // 2, 2),
            *block(w // 2, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 3 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@dataclass(frozen=True)
class TrainConfig:
    variant: str
    rho: float | None
    seed: int = 0
    size: int = 96
    n_train: int = 3000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    # 16 channels in the first block: 4x fewer multiply-adds than 32 for the perturbation
    # methods' thousands of forwards, at a clean accuracy still above 0.9 for both variants.
    width: int = 16
    n_eval: int = 600

    def key(self) -> str:
        payload = json.dumps(
            {**asdict(self), "generator": GENERATOR_VERSION, "torch": torch.__version__.split("+")[0]},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train(cfg: TrainConfig, progress: bool = True) -> HarborNet:
    """Train from scratch, deterministically (fixed seed, single-process data, fixed order)."""
    torch.manual_seed(cfg.seed)
    images, labels = scene_batch(cfg.seed, "train", range(cfg.n_train), cfg.rho, cfg.size)
    model = HarborNet(width=cfg.width).to(memory_format=torch.channels_last)
    return fit(
        model, images, labels, seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        desc=f"training harbor:{cfg.variant}", progress=progress,
    )


@torch.no_grad()
def accuracy(model: nn.Module, split: str, n: int, rho: float | None, seed: int, size: int) -> float:
    """Top-1 accuracy on the scenes that hold an object."""
    images, labels = scene_batch(seed, split, range(n), rho, size)
    keep = labels >= 0
    pred = model(images[keep].contiguous(memory_format=torch.channels_last)).argmax(1)
    return float((pred == labels[keep]).float().mean())


@torch.no_grad()
def context_reliance(model: nn.Module, n: int, seed: int, size: int) -> dict[str, float]:
    """True reliance on context, by intervention: on balanced test scenes whose object sits in
    its home context, repaint that context (object excluded) with a neutral texture and record
    the drop in the target class's softmax probability. Returns the mean drop overall and per
    class, and how many scenes were used.

    "Neutral" means the textures that are no class's home (grass and sand; the drop is averaged
    over both): they are in every model's training distribution, so the drop measures the
    evidence the context carried, not the shock of an unseen texture (a flat grey patch moved
    even the object-only model by 0.35 in a first version)."""
    originals, labels = [], []
    edited: dict[str, list[np.ndarray]] = {t: [] for t in NEUTRAL_TEXTURES}
    for i in range(n):
        scene = make_scene(seed, "test", i, None, size)
        label = scene.spec.label
        if label is None or scene.spec.context != home_context(label):
            continue
        originals.append(scene.image.transpose(2, 0, 1))
        for tex in NEUTRAL_TEXTURES:
            edited[tex].append(intervene(scene, home_context(label), tex, seed * 100003 + i).transpose(2, 0, 1))
        labels.append(CLASSES.index(label))
    y = torch.tensor(labels)

    def prob(batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).contiguous(memory_format=torch.channels_last)
        return model(x).softmax(1).gather(1, y[:, None]).squeeze(1)

    base = prob(originals)
    drop = torch.stack([base - prob(edited[t]) for t in NEUTRAL_TEXTURES]).mean(0)
    out = {"reliance": float(drop.mean()), "reliance_n": int(len(labels))}
    for k, name in enumerate(CLASSES):
        sel = y == k
        if sel.any():
            out[f"reliance_{name}"] = float(drop[sel].mean())
    return out


def build(cfg: TrainConfig, progress: bool = True) -> tuple[HarborNet, dict]:
    """Train (or load from the cache) and measure the model's facts."""
    path = cache_root() / "harbor" / f"{cfg.variant}-{cfg.key()}"
    model = HarborNet(width=cfg.width)
    facts = load_cached(path, model)
    if facts is not None:
        return model.to(memory_format=torch.channels_last).eval(), facts
    model = train(cfg, progress=progress)
    eval_seed = cfg.seed + 1  # held-out scenes, never seen in training
    facts = {
        "variant": cfg.variant,
        "train_rho": cfg.rho if cfg.rho is not None else "1/K",
        "train_config": asdict(cfg),
        "accuracy_own_distribution": accuracy(model, "val", cfg.n_eval, cfg.rho, eval_seed, cfg.size),
        "accuracy_balanced_test": accuracy(model, "test", cfg.n_eval, None, eval_seed, cfg.size),
        **context_reliance(model, cfg.n_eval, eval_seed, cfg.size),
    }
    save_cached(path, model, facts)
    return model, facts


def _preprocess(image: torch.Tensor) -> torch.Tensor:
    # The nets are trained on scenes as drawn: [0, 1] RGB at the scene's own size.
    return image


@MODEL_ADAPTERS.register("harbor")
def harbor_adapter(variant: str, *, seed: int = 0, progress: bool = True, **params) -> ModelBundle:
    if variant not in VARIANTS:
        raise ValueError(f"unknown harbor model {variant!r}; choose from {sorted(VARIANTS)}")
    unknown = set(params) - (set(TrainConfig.__dataclass_fields__) - {"variant", "rho", "seed"})
    if unknown:
        raise ValueError(f"harbor:{variant} has no parameter(s) {sorted(unknown)}")
    cfg = TrainConfig(variant=variant, rho=VARIANTS[variant], seed=seed, **params)
    model, facts = build(cfg, progress=progress)
    class_map = ClassMap({name: [i] for i, name in enumerate(CLASSES)})
    return ModelBundle(
        spec=f"harbor:{variant}",
        module=model,
        preprocess=_preprocess,
        target_layer="features",
        class_map=class_map,
        info=facts,
    )
