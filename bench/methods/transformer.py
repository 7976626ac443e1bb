"""Transformer family: maps from the attention probabilities of a ViT-style model.

Convention for finding the attention: every submodule whose qualified name matches the regular
expression ``attn_pattern`` (default ``attn_drop$``) must output that block's attention
probabilities, shape B x heads x T x T (rows sum to 1), once per forward, in block order. This is
timm's ``Attention`` layout (``attn = softmax(q k^T / sqrt(d)); attn = self.attn_drop(attn)``),
also used by DeiT and vit-explain; a model of another layout can name any module that outputs
the probabilities (e.g. an ``nn.Identity`` placed after the softmax). timm's fused attention
(``F.scaled_dot_product_attention``) never materialises the probabilities, so ``attn_drop`` does
not run: disable it first (``timm.layers.set_fused_attn(False)`` before creating the model, or
``TIMM_FUSED_ATTN=0``).

Tokens: the first ``prefix_tokens`` tokens are not patches (the class token, plus distillation
or register tokens); the class token is token 0. The remaining tokens form the patch grid in
row-major order, with the input's aspect ratio. Maps are at the patch grid's resolution.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from bench.methods.base import AttributionMethod, MethodConfigError, register_method, target_scores


@contextmanager
def capture_attention(model: nn.Module, pattern: str) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of the modules matching ``pattern`` during a forward pass."""
    regex = re.compile(pattern)
    modules = [(n, m) for n, m in model.named_modules() if n and regex.search(n)]
    if not modules:
        raise MethodConfigError(
            f"no module name matches attn_pattern {pattern!r}; name the modules that output the "
            "attention probabilities (B x heads x T x T)"
        )
    seen: list[torch.Tensor] = []

    def hook(mod, _inp, out):
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[-1] != out.shape[-2]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"attention module output must be B x heads x T x T, got {shape}")
        seen.append(out)

    handles = [m.register_forward_hook(hook) for _, m in modules]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _patch_maps(relevance: torch.Tensor, prefix: int, size: tuple[int, int]) -> torch.Tensor:
    """Row of the class token over the patch tokens (B x T) -> B x gh x gw."""
    b, t = relevance.shape
    n = t - prefix
    h, w = size
    gh = max(1, round(math.sqrt(n * h / w)))
    gw = n // gh
    if n <= 0 or gh * gw != n:
        raise ValueError(
            f"{n} patch tokens (T={t}, prefix_tokens={prefix}) do not form a grid with the "
            f"input's aspect ratio {h}x{w}; check prefix_tokens"
        )
    return relevance[:, prefix:].reshape(b, gh, gw)


class RolloutMethod(AttributionMethod):
    family = "transformer"
    defaults = {"attn_pattern": r"attn_drop$", "prefix_tokens": 1}

    def _forward(self, model, inputs, grad: bool):
        with capture_attention(model, self.params["attn_pattern"]) as attns, torch.set_grad_enabled(grad):
            x = inputs.detach().requires_grad_(grad)
            logits = model(x)
        if not attns:
            raise RuntimeError(
                f"no module matching attn_pattern {self.params['attn_pattern']!r} ran in the forward "
                "pass (timm: disable fused attention, see bench.methods.transformer)"
            )
        return logits, attns


@register_method
class AttentionRollout(RolloutMethod):
    """Abnar & Zuidema 2020: per block, fuse heads (``head_fusion`` mean / max / min), zero the
    ``discard_ratio`` smallest entries of the fused matrix (per image), add the residual path
    (0.5 A + 0.5 I) and renormalise rows; the product over blocks (first block applied first)
    gives each token's attention to the input tokens. map = class token's row over the patches.
    Class-agnostic: the target is ignored."""

    name = "attention_rollout"
    defaults = {"head_fusion": "mean", "discard_ratio": 0.0}
    choices = {"head_fusion": ("mean", "max", "min")}
    description = "attention rollout (Abnar & Zuidema, ACL 2020); class-agnostic; ViT-style models"

    def validate(self) -> None:
        self.require("discard_ratio", 0.0 <= self.params["discard_ratio"] < 1.0, "in [0, 1)")

    @torch.no_grad()
    def attribute(self, model, inputs, targets, *, seeds=None):
        _, attns = self._forward(model, inputs, grad=False)
        ratio = float(self.params["discard_ratio"])
        if not 0.0 <= ratio < 1.0:
            raise MethodConfigError("attention_rollout: discard_ratio must be in [0, 1)")
        rollout = None
        for attn in attns:
            fused = getattr(attn.float(), self.params["head_fusion"])(dim=1)
            if isinstance(fused, tuple):  # max/min return (values, indices)
                fused = fused[0]
            b, t, _ = fused.shape
            k = int(t * t * ratio)
            if k > 0:
                thresh = fused.reshape(b, -1).kthvalue(k, dim=1).values.view(b, 1, 1)
                fused = torch.where(fused <= thresh, torch.zeros_like(fused), fused)
            eye = torch.eye(t, device=fused.device, dtype=fused.dtype)
            a = 0.5 * fused + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        return _patch_maps(rollout[:, 0], int(self.params["prefix_tokens"]), inputs.shape[-2:])


@register_method
class GradientRollout(RolloutMethod):
    """Chefer et al. 2021 (generic attention explainability): per block,
    A_bar = mean over heads of ReLU(dA * A), with dA the gradient of the target logit with
    respect to the attention probabilities; R = I, then R <- R + A_bar R block by block.
    map = class token's row of R over the patches."""

    name = "grad_rollout"
    needs_grad = True
    description = "gradient-weighted attention rollout (Chefer et al., ICCV 2021); ViT-style models"

    def attribute(self, model, inputs, targets, *, seeds=None):
        logits, attns = self._forward(model, inputs, grad=True)
        with torch.enable_grad():
            grads = torch.autograd.grad(target_scores(logits, targets).sum(), attns, allow_unused=True)
        with torch.no_grad():
            b, _, t, _ = attns[0].shape
            rel = torch.eye(t, device=inputs.device, dtype=torch.float32).expand(b, t, t).clone()
            for attn, grad in zip(attns, grads):
                if grad is None:  # a block whose attention cannot reach the output adds nothing
                    continue
                a_bar = torch.relu(grad.float() * attn.float()).mean(dim=1)
                rel = rel + a_bar @ rel
        return _patch_maps(rel[:, 0], int(self.params["prefix_tokens"]), inputs.shape[-2:])
