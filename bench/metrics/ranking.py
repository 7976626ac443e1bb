"""Rank statistics of maps for a whole batch at once: the n-th largest value of each map, how
many (masked) pixels lie above it, and where values fall among a few sorted positives.

Rank accuracy, top-k intersection, coverage and the top-q IoU need only each map's n-th largest
value, found without sorting by a bisection over the values' bit patterns (32 counting passes
for float32 maps, each one O(pixels)); AUC needs only the fixated values sorted. Only
``best_iou`` sorts whole maps (:class:`SortedMaps`).

Ties: where a cut "the n highest pixels" falls inside a group of equal values, the tied pixels
share the remaining slots in proportion (:func:`expected_top_n_hits`): the exact expected
count under uniformly random tie-breaking, independent of pixel order. -0.0 equals +0.0.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

# Pixels per chunk of the batch: keeps the temporaries of one call near a few hundred MB
# whatever the batch or image size.
CHUNK_PIXELS = 1 << 23


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


def count_true(flags: torch.Tensor) -> torch.Tensor:
    """Row sums of a bool B x N tensor (int64 B). ``bool.sum`` widens every element to int64
    first; summing int8 blocks of 1024 into int16, then the blocks into int32, is about 3x
    faster on CPU and gives the same integers."""
    b, n = flags.shape
    m = n // 1024 * 1024
    out = flags[:, m:].sum(dim=1)
    if m:
        blocks = flags[:, :m].reshape(b, m // 1024, 1024).view(torch.int8)
        out = out + blocks.sum(dim=2, dtype=torch.int16).sum(dim=1, dtype=torch.int32)
    return out


def _sortable_int32(values: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered as the float32 values (IEEE bits, negatives' magnitude bits flipped);
    -0.0 is first turned into +0.0 so that the two stay equal."""
    bits = (values.float() + 0.0).view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def kth_largest(values: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The n[b]-th largest value of each row of ``values`` (B x N), n in [1, N], exact.

    float32 / float16 / bfloat16 rows: bisection on int32 keys, 32 passes of a comparison and a
    count, no sort. float64 rows: a sort (their keys would need 64-bit range arithmetic).
    """
    if values.dtype == torch.float64:
        desc = values.sort(dim=1, descending=True).values
        return desc.gather(1, (n - 1)[:, None])[:, 0]
    keys = _sortable_int32(values)
    lo = keys.amin(dim=1).to(torch.int64)
    hi = keys.amax(dim=1).to(torch.int64)
    # Invariant: the answer (the largest key T with #(keys >= T) >= n) lies in [lo, hi].
    for _ in range(32):
        mid = lo + (hi - lo + 1) // 2
        enough = count_true(keys >= mid[:, None].to(torch.int32)) >= n
        lo = torch.where(enough, mid, lo)
        hi = torch.where(enough, hi, mid - 1)
    key = lo.to(torch.int32)
    bits = torch.where(key < 0, key ^ 0x7FFFFFFF, key)
    return bits.view(torch.float32).to(values.dtype)


def expected_top_n_hits(values: torch.Tensor, mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """B: expected number of ``mask`` pixels among the n[b] highest-valued pixels of each row,
    ties at the cut sharing its remaining slots in proportion; 0 where n == 0. Float, in the
    dtype of ``values``."""
    size = values.shape[1]
    n = n.clamp(0, size)
    kth = kth_largest(values, n.clamp(min=1))[:, None]
    above = values > kth
    tied = values == kth
    n_above = count_true(above)
    n_tied = count_true(tied)
    hits_above = count_true(above & mask)
    hits_tied = count_true(tied & mask)
    dt = values.dtype
    share = (n - n_above).to(dt) / n_tied.clamp(min=1).to(dt)
    hits = hits_above.to(dt) + hits_tied.to(dt) * share
    return torch.where(n > 0, hits, torch.zeros_like(hits))


def positives_above_and_tied(values: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pixel of each row: how many positive pixels have a strictly greater value, and
    how many an equal one (B x N each, int64). Only the positives are sorted (they are few:
    fixations); every pixel is looked up among them by one binary search (``searchsorted``
    dominates the cost), and ties are read from the group of equal positives it lands on.
    Finding the number of positives reads one scalar back from the device."""
    b, size = values.shape
    n_pos = positives.sum(dim=1, keepdim=True)
    p_max = int(n_pos.max().item()) if b else 0
    if p_max == 0:
        zeros = torch.zeros((b, size), dtype=torch.int64, device=values.device)
        return zeros, zeros
    # The positives' values ascending, each row padded with +inf (never <= a finite value).
    padded = torch.where(positives, values, torch.full_like(values, torch.inf))
    sorted_pos = padded.topk(p_max, dim=1, largest=False, sorted=True).values
    # start[b, i]: the first sorted position holding the value sorted_pos[b, i]
    idx = torch.arange(p_max, device=values.device).expand(b, p_max)
    first = torch.ones_like(sorted_pos, dtype=torch.bool)
    first[:, 1:] = sorted_pos[:, 1:] != sorted_pos[:, :-1]
    start = torch.where(first, idx, torch.zeros_like(idx)).cummax(dim=1).values
    at_most = torch.minimum(torch.searchsorted(sorted_pos, values.contiguous(), side="right"), n_pos)
    last = (at_most - 1).clamp(min=0)
    equal = (at_most > 0) & (sorted_pos.gather(1, last) == values)
    below = torch.where(equal, start.gather(1, last), at_most)
    return n_pos - at_most, at_most - below


class SortedMaps:
    """Each row sorted ascending, with ``suffix[b, j]`` the number of ``mask`` pixels among
    sorted positions j..N-1 (``suffix[b, N] = 0``) and ``first[b, j]`` true where position j
    starts a group of equal values."""

    def __init__(self, values: torch.Tensor, mask: torch.Tensor):
        self.values, order = values.sort(dim=1)
        inside = mask.gather(1, order).to(torch.int64)
        csum = inside.cumsum(dim=1)
        total = csum[:, -1:]
        self.suffix = torch.cat([total, total - csum], dim=1)
        self.first = torch.ones_like(self.values, dtype=torch.bool)
        self.first[:, 1:] = self.values[:, 1:] != self.values[:, :-1]
