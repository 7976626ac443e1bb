"""Transformer family: maps from the attention probabilities of a ViT-style model.

Convention for finding the attention: every submodule whose qualified name matches the regular
expression ``attn_pattern`` (default ``attn_drop$``) must output that block's attention
probabilities, shape B x heads x T x T (rows sum to 1), once per forward, in block order. This is
timm's ``Attention`` layout (``attn = softmax(q k^T / sqrt(d)); attn = self.attn_drop(attn)``),
also used by DeiT, vit-explain and the harbor ViT; a model of another layout can name any module
that outputs the probabilities (e.g. an ``nn.Identity`` placed after the softmax).

Fused attention: timm computes attention with ``F.scaled_dot_product_attention`` by default,
which never materialises the probabilities, so ``attn_drop`` would not run. Every method here
switches it off for its own forward passes (each module's ``fused_attn`` flag, timm's per-module
switch, is set to False and restored afterwards), so rollout works on a timm model as created,
and nothing changes for the other methods of the run.

Tokens: the first ``prefix_tokens`` tokens are not patches (the class token, plus distillation
or register tokens); the class token is token 0. ``prefix_tokens`` defaults to the model's own
``num_prefix_tokens`` (timm, the harbor ViT), else 1. The remaining tokens form the patch grid in
row-major order: the model's ``patch_embed.grid_size`` where it has one, else the input's aspect
ratio (:mod:`bench.methods.tokens`). Maps are at the patch grid's resolution.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from bench.methods.base import (
    AttributionMethod,
    MethodConfigError,
    check_prefix_tokens,
    register_method,
    target_scores,
)
from bench.methods.tokens import find_token_grid, patch_row


def attention_modules(model: nn.Module, pattern: str) -> list[tuple[str, nn.Module]]:
    """The modules whose qualified name matches ``pattern``; none is a configuration error."""
    regex = re.compile(pattern)
    modules = [(n, m) for n, m in model.named_modules() if n and regex.search(n)]
    if not modules:
        raise MethodConfigError(
            f"no module name matches attn_pattern {pattern!r}; name the modules that output the "
            "attention probabilities (B x heads x T x T)"
        )
    return modules


@contextmanager
def unfused_attention(model: nn.Module) -> Iterator[int]:
    """Switch off fused attention (timm's per-module ``fused_attn`` flag) while the context is
    open, so the probabilities pass through ``attn_drop``; the flags are restored on exit.
    Yields how many modules were switched."""
    switched = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
    for m in switched:
        m.fused_attn = False
    try:
        yield len(switched)
    finally:
        for m in switched:
            m.fused_attn = True


@contextmanager
def capture_attention(model: nn.Module, pattern: str) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of the modules matching ``pattern`` during a forward pass, with
    fused attention switched off."""
    modules = attention_modules(model, pattern)
    seen: list[torch.Tensor] = []

    def hook(mod, _inp, out):
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[-1] != out.shape[-2]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"attention module output must be B x heads x T x T, got {shape}")
        seen.append(out)

    handles = [m.register_forward_hook(hook) for _, m in modules]
    try:
        with unfused_attention(model):
            yield seen
    finally:
        for h in handles:
            h.remove()


def class_token_map(model: nn.Module, rows: torch.Tensor, prefix_tokens: int | None, input_size) -> torch.Tensor:
    """The class token's row over all tokens (B x T) -> its values on the patch grid, B x h x w."""
    grid = find_token_grid(model, rows.shape[1], tuple(input_size), prefix_tokens)
    return patch_row(rows, grid)


def fuse_heads(attn: torch.Tensor, rule: str) -> torch.Tensor:
    """B x heads x T x T -> B x T x T by the mean, max or min over heads."""
    fused = getattr(attn.float(), rule)(dim=1)
    return fused[0] if isinstance(fused, tuple) else fused  # max/min return (values, indices)


class RolloutMethod(AttributionMethod):
    family = "transformer"
    defaults: dict[str, Any] = {"attn_pattern": r"attn_drop$", "prefix_tokens": None}

    def validate(self) -> None:
        check_prefix_tokens(self.name, self.params.get("prefix_tokens"))
        try:
            re.compile(self.params["attn_pattern"])
        except re.error as exc:
            raise MethodConfigError(f"method {self.name!r}: attn_pattern is not a regular expression: {exc}") from exc

    def check_model(self, model: nn.Module, input_shape) -> None:
        """A model without attention modules (a CNN) cannot run these methods at all: the run
        stops before any row, instead of skipping every row of a run that then looks fine."""
        super().check_model(model, input_shape)
        attention_modules(model, self.params["attn_pattern"])

    def _forward(self, model, inputs, grad: bool):
        with capture_attention(model, self.params["attn_pattern"]) as attns, torch.set_grad_enabled(grad):
            x = inputs.detach().requires_grad_(grad)
            logits = model(x)
        if not attns:
            raise RuntimeError(
                f"no module matching attn_pattern {self.params['attn_pattern']!r} ran in the forward "
                "pass: the model computes attention without them (a fused kernel other than timm's "
                "fused_attn switch?); name the modules that output the probabilities"
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
            fused = fuse_heads(attn, self.params["head_fusion"])
            b, t, _ = fused.shape
            k = int(t * t * ratio)
            if k > 0:
                thresh = fused.reshape(b, -1).kthvalue(k, dim=1).values.view(b, 1, 1)
                fused = torch.where(fused <= thresh, torch.zeros_like(fused), fused)
            eye = torch.eye(t, device=fused.device, dtype=fused.dtype)
            a = 0.5 * fused + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        return class_token_map(model, rollout[:, 0], self.params["prefix_tokens"], inputs.shape[-2:])


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
        return class_token_map(model, rel[:, 0], self.params["prefix_tokens"], inputs.shape[-2:])


@register_method
class RawAttention(RolloutMethod):
    """The attention itself: the class token's attention probabilities over the patch tokens in
    one block (``block``, default -1: the last block that ran; 0 is the first), heads fused by
    ``head_fusion`` (mean / max / min). No residual path, no product over blocks, no gradient:
    what the class token reads from each patch in that block. Class-agnostic: the target is
    ignored."""

    name = "raw_attention"
    defaults = {"head_fusion": "mean", "block": -1}
    choices = {"head_fusion": ("mean", "max", "min")}
    description = "raw attention: the class token's attention over the patches in one block (last by default); ViT-style models"

    @torch.no_grad()
    def attribute(self, model, inputs, targets, *, seeds=None):
        _, attns = self._forward(model, inputs, grad=False)
        block = int(self.params["block"])
        if not -len(attns) <= block < len(attns):
            raise MethodConfigError(f"raw_attention: block {block} does not exist; {len(attns)} attention blocks ran")
        fused = fuse_heads(attns[block], self.params["head_fusion"])
        return class_token_map(model, fused[:, 0], self.params["prefix_tokens"], inputs.shape[-2:])
