"""Rank statistics of maps: how many (masked) pixels lie at or above a value, for a whole batch
at once. Rank accuracy, top-k intersection, coverage, the IoU sweep and AUC all reduce to these
counts after one sort per map.

Ties: where a cut of "the n highest pixels" falls inside a group of equal values, the tied
pixels share the remaining slots in proportion (:meth:`RankedMaps.expected_top_n_hits`): the
exact expected count under uniformly random tie-breaking, independent of pixel order.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

# Pixels per chunk: a sort costs about 33 bytes per pixel (values, order, counts), so a chunk
# stays near 300 MB whatever the batch or image size.
CHUNK_PIXELS = 1 << 23


class RankedMaps:
    """Each row of ``values`` (B x N) sorted ascending, with ``suffix[b, j]`` the number of
    ``mask`` pixels among sorted positions j..N-1 (and ``suffix[b, N] = 0``)."""

    def __init__(self, values: torch.Tensor, mask: torch.Tensor):
        self.values, order = values.sort(dim=1)
        inside = mask.gather(1, order).to(torch.int64)
        csum = inside.cumsum(dim=1)
        total = csum[:, -1:]
        self.suffix = torch.cat([total, total - csum], dim=1)
        self.n = values.shape[1]

    def _pos(self, s: torch.Tensor, strict: bool) -> torch.Tensor:
        return torch.searchsorted(self.values, s.contiguous(), side="right" if strict else "left")

    def count_at_or_above(self, s: torch.Tensor) -> torch.Tensor:
        """B x T: pixels with value >= s[b, t]."""
        return self.n - self._pos(s, strict=False)

    def count_above(self, s: torch.Tensor) -> torch.Tensor:
        """B x T: pixels with value > s[b, t]."""
        return self.n - self._pos(s, strict=True)

    def mask_at_or_above(self, s: torch.Tensor) -> torch.Tensor:
        """B x T: mask pixels with value >= s[b, t]."""
        return self.suffix.gather(1, self._pos(s, strict=False))

    def mask_above(self, s: torch.Tensor) -> torch.Tensor:
        """B x T: mask pixels with value > s[b, t]."""
        return self.suffix.gather(1, self._pos(s, strict=True))

    def expected_top_n_hits(self, n: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """B x T: expected number of mask pixels among the n[b, t] highest-valued pixels, ties at
        the cut sharing its remaining slots in proportion; 0 where n == 0."""
        n = n.clamp(0, self.n)
        kth = self.values.gather(1, (self.n - n).clamp(max=self.n - 1))  # n-th largest value
        above = self.count_above(kth)
        tied = self.count_at_or_above(kth) - above
        hits_above = self.mask_above(kth)
        hits_tied = self.mask_at_or_above(kth) - hits_above
        share = (n - above).to(dtype) / tied.clamp(min=1).to(dtype)
        hits = hits_above.to(dtype) + hits_tied.to(dtype) * share
        return torch.where(n > 0, hits, torch.zeros_like(hits))


def by_chunks(
    fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], pixels_per_sample: int
) -> torch.Tensor:
    """Apply ``fn`` to slices of the batch so that a slice holds at most CHUNK_PIXELS pixels
    (at least one sample), and concatenate: memory stays bounded for large images and batches."""
    b = tensors[0].shape[0]
    step = max(1, CHUNK_PIXELS // max(pixels_per_sample, 1))
    if step >= b:
        return fn(*tensors)
    return torch.cat([fn(*(t[i : i + step] for t in tensors)) for i in range(0, b, step)], dim=0)
