"""Token sequences on the patch grid (bench.methods.tokens): the reshape round-trips, the grid and
prefix come from the model where it says, and anything that does not add up is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.methods.tokens import TokenGrid, find_token_grid, grid_to_tokens, patch_row, tokens_to_grid


class _Embed(nn.Module):
    def __init__(self, grid, patch=None):
        super().__init__()
        self.grid_size = grid
        if patch is not None:
            self.patch_size = patch


class _ViTLike(nn.Module):
    """Only what the grid search reads: ``patch_embed.grid_size`` / ``patch_size`` and,
    optionally, ``num_prefix_tokens``."""

    def __init__(self, grid=(2, 3), patch=None, prefix=None):
        super().__init__()
        self.patch_embed = _Embed(grid, patch)
        if prefix is not None:
            self.num_prefix_tokens = prefix


def test_tokens_to_grid_is_row_major_and_round_trips():
    b, prefix, h, w, c = 2, 2, 3, 4, 5
    tokens = torch.randn(b, prefix + h * w, c, generator=torch.Generator().manual_seed(0))
    grid = TokenGrid(prefix, h, w, "test")
    feats = tokens_to_grid(tokens, grid)
    assert feats.shape == (b, c, h, w)
    # Patch token k sits at row k // w, column k % w; its channels are the feature's channels.
    for k in range(h * w):
        torch.testing.assert_close(feats[:, :, k // w, k % w], tokens[:, prefix + k, :], rtol=0, atol=0)
    # A map made on the grid and flattened back equals the tokens, prefix included.
    assert torch.equal(grid_to_tokens(feats, tokens[:, :prefix]), tokens)
    # And a map changed on the grid changes exactly its token.
    edited = feats.clone()
    edited[1, :, 2, 1] = 7.0
    back = grid_to_tokens(edited, tokens[:, :prefix])
    assert torch.equal(back[1, prefix + 2 * w + 1], torch.full((c,), 7.0))
    changed = (back != tokens).any(dim=2)
    assert changed.sum() == 1 and changed[1, prefix + 2 * w + 1]


def test_patch_row_takes_the_row_over_the_patches():
    rows = torch.arange(2 * 7, dtype=torch.float32).reshape(2, 7)
    out = patch_row(rows, TokenGrid(1, 2, 3, "test"))
    assert torch.equal(out, torch.tensor([[[1.0, 2, 3], [4, 5, 6]], [[8, 9, 10], [11, 12, 13]]]))
    with pytest.raises(ValueError, match="expected 8 tokens"):
        patch_row(rows, TokenGrid(2, 2, 3, "test"))


def test_grid_and_prefix_from_the_model():
    # timm-style: grid from patch_embed, prefix from num_prefix_tokens (a distilled DeiT has 2).
    g = find_token_grid(_ViTLike((2, 3), prefix=2), 8, (32, 48))
    assert (g.prefix, g.height, g.width) == (2, 2, 3) and "num_prefix_tokens" in g.source
    # No num_prefix_tokens: whatever is left over after the grid.
    g = find_token_grid(_ViTLike((2, 3)), 10, (32, 48))
    assert (g.prefix, g.height, g.width) == (4, 2, 3)
    # prefix_tokens given explicitly wins over the model's count, and must add up.
    assert find_token_grid(_ViTLike((2, 3), prefix=1), 7, (32, 48), prefix_tokens=1).prefix == 1
    with pytest.raises(ValueError, match="do not match the model's patch grid"):
        find_token_grid(_ViTLike((2, 3), prefix=2), 7, (32, 48))
    # A model run at another input size than it was built for: the grid follows patch_size.
    g = find_token_grid(_ViTLike((14, 14), patch=(16, 16), prefix=1), 1 + 7 * 10, (112, 160))
    assert (g.height, g.width) == (7, 10)


def test_fallback_on_the_input_aspect_ratio_and_its_refusals():
    plain = nn.Linear(2, 2)
    g = find_token_grid(plain, 1 + 4 * 8, (48, 96))
    assert (g.prefix, g.height, g.width) == (1, 4, 8)
    assert find_token_grid(plain, 2 + 16, (32, 32), prefix_tokens=2).height == 4
    with pytest.raises(ValueError, match="do not form a grid"):
        find_token_grid(plain, 1 + 15, (32, 32))
    with pytest.raises(ValueError, match='reshape = "tokens"'):
        find_token_grid(plain, 17, (32, 32), need_model=True)
    with pytest.raises(ValueError, match=">= 0|0 or more"):
        find_token_grid(plain, 17, (32, 32), prefix_tokens=-1)
