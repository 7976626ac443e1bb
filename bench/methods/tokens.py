"""Vision Transformer token sequences on their patch grid.

A ViT layer outputs B x T x C tokens: ``prefix`` tokens that are not patches (the class token,
then distillation or register tokens), followed by the h x w patch tokens in row-major order
(T = prefix + h * w). CAM methods need the layer as B x C x h x w, and attention methods need
the class token's row over the patches as B x h x w; both come from :func:`find_token_grid`.

Where the grid comes from, first match wins:

1. The model says: ``model.patch_embed.grid_size`` (timm's ``PatchEmbed``, the harbor ViT). A
   model run at another input size than the one it was built for (timm's
   ``dynamic_img_size``) has ``input // patch_embed.patch_size`` patches (rounded up when the
   input is padded). The prefix is ``prefix_tokens`` when given, else ``model.num_prefix_tokens``
   (timm), else whatever is left over: T - h * w.
2. The model says nothing (``reshape = "tokens"`` in a CAM method's config, and always for the
   attention methods): ``prefix_tokens`` (default 1, a class token) are dropped and the rest
   form the grid with the input's aspect ratio.

Anything that does not add up is an error naming the numbers, never a silent guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TokenGrid:
    """``prefix`` non-patch tokens, then ``height`` x ``width`` patches in row-major order."""

    prefix: int
    height: int
    width: int
    source: str  # how the grid was found, for messages and provenance

    @property
    def tokens(self) -> int:
        return self.prefix + self.height * self.width


def model_grid_candidates(model: nn.Module, input_size: tuple[int, int]) -> list[tuple[int, int]]:
    """The patch grids a model's ``patch_embed`` allows at this input size (empty: none known)."""
    embed = getattr(model, "patch_embed", None)
    grid = getattr(embed, "grid_size", None)
    if grid is None:
        return []
    candidates = [(int(grid[0]), int(grid[1]))]
    patch = getattr(embed, "patch_size", None)
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))
        h, w = int(input_size[0]), int(input_size[1])
        for g in ((h // ph, w // pw), (math.ceil(h / ph), math.ceil(w / pw))):
            if g not in candidates:
                candidates.append(g)
    return candidates


def find_token_grid(
    model: nn.Module,
    n_tokens: int,
    input_size: tuple[int, int],
    prefix_tokens: int | None = None,
    *,
    need_model: bool = False,
) -> TokenGrid:
    """The grid of a T-token sequence (see the module docstring). ``need_model``: refuse to
    fall back on the input's aspect ratio when the model does not give its grid."""
    if prefix_tokens is not None and prefix_tokens < 0:
        raise ValueError(f"prefix_tokens must be 0 or more, got {prefix_tokens}")
    candidates = model_grid_candidates(model, input_size)
    if candidates:
        declared = getattr(model, "num_prefix_tokens", None)
        for gh, gw in candidates:
            if prefix_tokens is not None:
                prefix, how = prefix_tokens, "prefix_tokens"
            elif declared is not None:
                prefix, how = int(declared), "model.num_prefix_tokens"
            else:
                prefix, how = n_tokens - gh * gw, "tokens left over"
            if prefix >= 0 and prefix + gh * gw == n_tokens:
                return TokenGrid(prefix, gh, gw, f"model.patch_embed ({gh}x{gw}), prefix from {how}")
        raise ValueError(
            f"{n_tokens} tokens do not match the model's patch grid (patch_embed: "
            f"{' or '.join(f'{a}x{b}' for a, b in candidates)}) with "
            f"{'prefix_tokens=' + str(prefix_tokens) if prefix_tokens is not None else 'its prefix tokens'}; "
            "check prefix_tokens and the layer"
        )
    if need_model:
        raise ValueError(
            f"the layer outputs a token sequence (T = {n_tokens}) but the model does not give its "
            "patch grid (no patch_embed.grid_size); set reshape = \"tokens\" to use the input's "
            "aspect ratio, and prefix_tokens to the number of tokens before the patches "
            "(1 for a class token)"
        )
    prefix = 1 if prefix_tokens is None else prefix_tokens
    n = n_tokens - prefix
    h, w = int(input_size[0]), int(input_size[1])
    gh = max(1, round(math.sqrt(max(n, 0) * h / w)))
    gw = n // gh if n > 0 else 0
    if n <= 0 or gh * gw != n:
        raise ValueError(
            f"{n} patch tokens (T={n_tokens}, prefix_tokens={prefix}) do not form a grid with the "
            f"input's aspect ratio {h}x{w}; check prefix_tokens"
        )
    return TokenGrid(prefix, gh, gw, f"input aspect ratio ({gh}x{gw}), prefix_tokens={prefix}")


def tokens_to_grid(tokens: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """B x T x C tokens -> B x C x h x w patch features (prefix tokens dropped)."""
    b, t, c = tokens.shape
    if t != grid.tokens:
        raise ValueError(f"expected {grid.tokens} tokens for grid {grid}, got {t}")
    return tokens[:, grid.prefix :].transpose(1, 2).reshape(b, c, grid.height, grid.width)


def grid_to_tokens(features: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_to_grid`: B x C x h x w features and the B x P x C prefix tokens
    -> B x (P + h*w) x C tokens."""
    b, c, h, w = features.shape
    if prefix.shape[0] != b or prefix.shape[2] != c:
        raise ValueError(f"prefix tokens {tuple(prefix.shape)} do not fit features {tuple(features.shape)}")
    return torch.cat([prefix, features.reshape(b, c, h * w).transpose(1, 2)], dim=1)


def patch_row(rows: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """One token's row over all tokens (B x T) -> its values on the patches, B x h x w."""
    if rows.shape[1] != grid.tokens:
        raise ValueError(f"expected {grid.tokens} tokens for grid {grid}, got {rows.shape[1]}")
    return rows[:, grid.prefix :].reshape(rows.shape[0], grid.height, grid.width)
