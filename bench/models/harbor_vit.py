"""The harbor suite's two Vision Transformers, trained here on the CPU from the scene generator.

The transformer counterparts of :mod:`bench.models.harbor`'s CNNs, on the same scenes:
``harbor_vit:contextual`` is trained where objects nearly always sit in their home context
(rho = 0.95), ``harbor_vit:object_only`` with rho = 1/K. Same architecture, same seed, same
steps; only the training distribution differs. Their facts (clean accuracy on the own training
distribution and on the balanced test split, true reliance on context by the repaint
intervention) are measured exactly as for the CNNs, by the same functions.

The architecture is a ViT in miniature with timm's layout and names, so that every convention
groundbench keeps for timm ViTs holds here too: ``patch_embed`` (a strided convolution, with
``patch_size`` and ``grid_size``), a class token (``num_prefix_tokens = 1``), learned position
embeddings, ``blocks`` of pre-norm blocks (``norm1``, ``attn`` with ``qkv`` / ``attn_drop`` /
``proj``, ``norm2``, ``mlp``), a final ``norm`` and a linear ``head`` on the class token. As in
timm, attention is fused by default (``fused_attn``); with it switched off, the attention
probabilities pass through ``attn_drop`` (an identity), where the transformer methods observe
them. At 96 x 96 with 8 x 8 patches the token grid is 12 x 12, the resolution of the
CNNs' last feature map.

Training is deterministic given the seed and the torch version: fixed initialisation, fixed
order and augmentation draws, and one CPU thread (the summation order of torch's CPU kernels
depends on the number of threads, so training on all cores would give other weights on a
machine with another core count). Weights and facts are cached under
``$GROUNDBENCH_CACHE/harbor_vit``, keyed by everything that defines them, and loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from bench.data.synthetic import CLASSES, GENERATOR_VERSION, scene_batch
from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle
from bench.models.harbor import VARIANTS, accuracy, cache_root, context_reliance

# Version of the architecture and training code: part of the cache key.
ARCH_VERSION = 2  # 2: fused attention (timm's fused_attn switch) while training


class PatchEmbed(nn.Module):
    """``patch`` x ``patch`` patches -> tokens B x N x dim, row-major.

    ``stem="patch"``: one linear projection per patch (the original ViT). ``stem="conv"``: a
    small convolutional stem (two stride-2 3x3 convolutions, then a projection of 2x2 cells;
    Xiao et al. 2021, "Early convolutions help transformers see better"): each token then sees
    its patch and a few pixels around it, and a transformer trained from a few thousand scenes
    learns far faster."""

    def __init__(self, size: int, patch: int, dim: int, stem: str = "patch"):
        super().__init__()
        if size % patch:
            raise ValueError(f"scene size {size} is not a multiple of the patch size {patch}")
        self.patch_size = (patch, patch)
        self.grid_size = (size // patch, size // patch)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        if stem == "patch":
            self.stem = nn.Identity()
            self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        elif stem == "conv":
            if patch % 4:
                raise ValueError(f"the conv stem needs a patch size divisible by 4, got {patch}")
            w = max(8, dim // 4)

            def conv(cin: int, cout: int) -> list[nn.Module]:
                return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

            self.stem = nn.Sequential(*conv(3, w), *conv(w, 2 * w))
            self.proj = nn.Conv2d(2 * w, dim, patch // 4, stride=patch // 4)
        else:
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with timm's switch: ``fused_attn`` True computes it with
    ``F.scaled_dot_product_attention`` (on the CPU, less than half the time of the explicit
    product for the attention itself; the probabilities are never materialised), False computes them explicitly so that
    softmax(q k^T / sqrt(d)) (B x heads x T x T) is the output of ``attn_drop``. The attention
    methods switch it off for their own passes, exactly as on a timm model."""

    fused_attn = True

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of the number of heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            out = nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HarborViT(nn.Module):
    """Patch embedding, class token, ``depth`` blocks, final norm, linear head on the class
    token. ``num_prefix_tokens`` and ``patch_embed.grid_size`` tell the methods how the token
    sequence maps onto the image (as in timm)."""

    num_prefix_tokens = 1

    def __init__(self, n_classes: int = len(CLASSES), size: int = 96, patch: int = 8, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: int = 2, stem: str = "conv"):
        super().__init__()
        self.patch_embed = PatchEmbed(size, patch, dim, stem)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


@dataclass(frozen=True)
class ViTTrainConfig:
    variant: str
    rho: float | None
    seed: int = 0
    size: int = 96
    patch: int = 8
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 2
    stem: str = "conv"
    # 15 epochs of 3,000 scenes in batches of 64 at 2e-3 (703 steps) left both ViTs underfitted
    # (0.85 accuracy on their own training scenes, 0.82 / 0.81 held out): a transformer from
    # scratch needs more updates. Twice the distinct scenes and batches of 32 (lr halved with
    # the batch) give 4.3 times the steps for 2.1 times the compute.
    n_train: int = 6000
    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.1  # share of the steps the learning rate rises (one-cycle schedule)
    flip: bool = True  # horizontal flips: a scene's mirror image is a scene of the same class
    n_eval: int = 600

    def key(self) -> str:
        payload = json.dumps(
            {
                **asdict(self),
                "generator": GENERATOR_VERSION,
                "arch": ARCH_VERSION,
                "torch": torch.__version__.split("+")[0],
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def make_model(self) -> HarborViT:
        return HarborViT(size=self.size, patch=self.patch, dim=self.dim, depth=self.depth,
                         heads=self.heads, mlp_ratio=self.mlp_ratio, stem=self.stem)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's CPU kernels on one thread while the context is open (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(cfg: ViTTrainConfig, progress: bool = True) -> HarborViT:
    """Train from scratch, deterministically: AdamW with a one-cycle schedule, fixed order,
    flips drawn from a seeded generator, one CPU thread."""
    with one_thread():
        return _train(cfg, progress)


def _train(cfg: ViTTrainConfig, progress: bool) -> HarborViT:
    torch.manual_seed(cfg.seed)
    images, labels = scene_batch(cfg.seed, "train", range(cfg.n_train), cfg.rho, cfg.size)
    keep = labels >= 0
    images, labels = images[keep], labels[keep]
    n = labels.shape[0]
    model = cfg.make_model()
    # Weight decay on the transformer's weight matrices only: not on norms, biases, the class
    # token, the position embeddings or the patch embedding (the recipe this was tuned with).
    plain = [(name.startswith(("patch_embed.", "pos_embed", "cls_token")) or p.ndim < 2, p) for name, p in model.named_parameters()]
    decay = [p for skip, p in plain if not skip]
    rest = [p for skip, p in plain if skip]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps = cfg.epochs * (n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=cfg.warmup)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=f"training harbor_vit:{cfg.variant}", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        for start in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            x = images[idx]
            if cfg.flip:
                x = torch.where(flips[idx, None, None, None], x.flip(-1), x)
            loss = nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")  # last batch of the epoch: shows the plateau ending
    bar.close()
    return model.eval()


def weights_sha256(model: nn.Module) -> str:
    """One hash over every tensor of the state dict (names, shapes, dtypes and bytes), in order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def build(cfg: ViTTrainConfig, progress: bool = True) -> tuple[HarborViT, dict]:
    """Train (or load from the cache) and measure the model's facts."""
    path = cache_root() / "harbor_vit" / f"{cfg.variant}-{cfg.key()}"
    weights, facts_file = path.with_suffix(".pt"), path.with_suffix(".json")
    model = cfg.make_model()
    if weights.exists() and facts_file.exists():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(facts_file.read_text())
    model = train(cfg, progress=progress)
    eval_seed = cfg.seed + 1  # held-out scenes, never seen in training
    facts = {
        "variant": cfg.variant,
        "architecture": (
            f"ViT: {cfg.patch}x{cfg.patch} patches, width {cfg.dim}, {cfg.depth} blocks, "
            f"{cfg.heads} heads, class token"
        ),
        "train_rho": cfg.rho if cfg.rho is not None else "1/K",
        "train_config": asdict(cfg),
        "weights_sha256": weights_sha256(model),
        "accuracy_own_distribution": accuracy(model, "val", cfg.n_eval, cfg.rho, eval_seed, cfg.size),
        "accuracy_balanced_test": accuracy(model, "test", cfg.n_eval, None, eval_seed, cfg.size),
        **context_reliance(model, cfg.n_eval, eval_seed, cfg.size),
    }
    weights.parent.mkdir(parents=True, exist_ok=True)
    # Temporary names, then renames: an interrupted write never leaves an entry that looks whole.
    tmp_w, tmp_f = weights.with_suffix(".pt.tmp"), facts_file.with_suffix(".json.tmp")
    torch.save(model.state_dict(), tmp_w)
    tmp_f.write_text(json.dumps(facts, indent=2, sort_keys=True))
    os.replace(tmp_w, weights)
    os.replace(tmp_f, facts_file)
    return model, facts


def _preprocess(image: torch.Tensor) -> torch.Tensor:
    # Trained on scenes as drawn: [0, 1] RGB at the scene's own size.
    return image


# The last block's input (after its first norm): the deepest token layer whose patch tokens still
# reach the class token (through that block's attention). After the last block only the class
# token reaches the head, so a gradient there is zero on every patch.
def default_target_layer(model: HarborViT) -> str:
    return f"blocks.{len(model.blocks) - 1}.norm1"


@MODEL_ADAPTERS.register("harbor_vit")
def harbor_vit_adapter(variant: str, *, seed: int = 0, progress: bool = True, **params) -> ModelBundle:
    if variant not in VARIANTS:
        raise ValueError(f"unknown harbor_vit model {variant!r}; choose from {sorted(VARIANTS)}")
    unknown = set(params) - (set(ViTTrainConfig.__dataclass_fields__) - {"variant", "rho", "seed"})
    if unknown:
        raise ValueError(f"harbor_vit:{variant} has no parameter(s) {sorted(unknown)}")
    cfg = ViTTrainConfig(variant=variant, rho=VARIANTS[variant], seed=seed, **params)
    model, facts = build(cfg, progress=progress)
    return ModelBundle(
        spec=f"harbor_vit:{variant}",
        module=model,
        preprocess=_preprocess,
        target_layer=default_target_layer(model),
        class_map=ClassMap({name: [i] for i, name in enumerate(CLASSES)}),
        info=facts,
    )
