"""``crowd:cnn``: the crowd suite's classifier, trained here on the CPU from the crowd scene
generator (:mod:`bench.data.crowd`).

The architecture is the harbor suite's :class:`~bench.models.harbor.HarborNet` (global average
pool + linear head, so CAM applies; last conv block at 1/8 of the input), trained by the same
loop (:func:`bench.models.training.fit`) on crowd ``train`` scenes: every class in every kind
(one object, one large object, 2-4 instances) equally likely, no context correlation. The weights
and the facts measured about the model (top-1 accuracy on held-out scenes of its own
distribution and on the balanced test split, overall and per kind) are cached under
``$GROUNDBENCH_CACHE``, keyed by everything that defines them. Training is deterministic given
the seed and the torch version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench.data.crowd import CROWD_GENERATOR_VERSION, KINDS, crowd_batch, crowd_kinds
from bench.data.synthetic import CLASSES, GENERATOR_VERSION
from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle
from bench.models.harbor import HarborNet
from bench.models.training import cache_root, fit, load_cached, save_cached

VARIANTS = ("cnn",)


@dataclass(frozen=True)
class CrowdTrainConfig:
    variant: str = "cnn"
    seed: int = 0
    size: int = 96
    n_train: int = 3000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    width: int = 16
    n_eval: int = 600

    def key(self) -> str:
        payload = json.dumps(
            {
                **asdict(self),
                "generator": GENERATOR_VERSION,
                "crowd_generator": CROWD_GENERATOR_VERSION,
                "torch": torch.__version__.split("+")[0],
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train(cfg: CrowdTrainConfig, progress: bool = True) -> HarborNet:
    torch.manual_seed(cfg.seed)
    images, labels = crowd_batch(cfg.seed, "train", range(cfg.n_train), cfg.size)
    model = HarborNet(width=cfg.width).to(memory_format=torch.channels_last)
    return fit(
        model, images, labels, seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        desc=f"training crowd:{cfg.variant}", progress=progress,
    )


@torch.no_grad()
def accuracy_facts(model: nn.Module, cfg: CrowdTrainConfig, seed: int) -> dict[str, float]:
    """Top-1 accuracy on ``n_eval`` held-out ``val`` scenes (the training distribution) and on
    ``n_eval`` balanced ``test`` scenes, the latter also per kind."""
    out: dict[str, float] = {}
    for split, key in (("val", "accuracy_own_distribution"), ("test", "accuracy_balanced_test")):
        images, labels = crowd_batch(seed, split, range(cfg.n_eval), cfg.size)
        pred = model(images.contiguous(memory_format=torch.channels_last)).argmax(1)
        out[key] = float((pred == labels).float().mean())
        if split == "test":
            kinds = crowd_kinds(seed, split, range(cfg.n_eval))
            for kind in KINDS:
                sel = torch.tensor([k == kind for k in kinds])
                out[f"accuracy_test_{kind}"] = float((pred[sel] == labels[sel]).float().mean())
    return out


def build(cfg: CrowdTrainConfig, progress: bool = True) -> tuple[HarborNet, dict]:
    """Train (or load from the cache) and measure the model's facts."""
    path = cache_root() / "crowd" / f"{cfg.variant}-{cfg.key()}"
    model = HarborNet(width=cfg.width)
    facts = load_cached(path, model)
    if facts is not None:
        return model.to(memory_format=torch.channels_last).eval(), facts
    model = train(cfg, progress=progress)
    facts = {"variant": cfg.variant, "train_config": asdict(cfg), **accuracy_facts(model, cfg, cfg.seed + 1)}
    save_cached(path, model, facts)
    return model, facts


def _preprocess(image: torch.Tensor) -> torch.Tensor:
    # Trained on scenes as drawn: [0, 1] RGB at the scene's own size.
    return image


@MODEL_ADAPTERS.register("crowd")
def crowd_adapter(variant: str, *, seed: int = 0, progress: bool = True, **params) -> ModelBundle:
    if variant not in VARIANTS:
        raise ValueError(f"unknown crowd model {variant!r}; choose from {list(VARIANTS)}")
    unknown = set(params) - (set(CrowdTrainConfig.__dataclass_fields__) - {"variant", "seed"})
    if unknown:
        raise ValueError(f"crowd:{variant} has no parameter(s) {sorted(unknown)}")
    cfg = CrowdTrainConfig(variant=variant, seed=seed, **params)
    model, facts = build(cfg, progress=progress)
    return ModelBundle(
        spec=f"crowd:{variant}",
        module=model,
        preprocess=_preprocess,
        target_layer="features",
        class_map=ClassMap({name: [i] for i, name in enumerate(CLASSES)}),
        info=facts,
    )
