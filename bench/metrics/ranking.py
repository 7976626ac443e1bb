"""Rank statistics of maps for a whole batch at once: how many (masked) pixels lie above each
map's n-th largest value, the best IoU of a mask with any upper level set of the map, and where
values fall among a few sorted positives.

On the CPU, float32 maps go through :class:`RankedMaps`: one histogram of each map's values
(up to 4,096 bins of its IEEE bit patterns, with the mask's count per bin) answers most of a question
from counts alone, and only the pixels of the few bins where the answer lies are sorted. Rank
accuracy, top-k intersection, coverage, the top-q IoU and the best IoU all read it. Elsewhere
(float64 maps, accelerators) the n-th largest value is found by a bisection over the values' bit
patterns (32 counting passes for float32 maps, a sort for float64) and the best IoU sorts whole
maps (:class:`SortedMaps`, also the reference definition the fast path is tested against).
Both give the same numbers to the bit. AUC needs only the fixated values sorted.

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
    dtype of ``values``. Rows must hold no NaN (the metrics zero such rows first)."""
    size = values.shape[1]
    n = n.clamp(0, size)
    if use_histogram(values):
        hits = RankedMaps(values, mask).top_n(n.clamp(min=1)).expected_hits(n, values.dtype)
        return torch.where(n > 0, hits, torch.zeros_like(hits))
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


# -- the histogram path (CPU, float32) -------------------------------------------------------------

HISTOGRAM_BINS = 4096
MIN_HISTOGRAM_BINS = 64


def histogram_bins(pixels: int) -> int:
    """Bins for maps of ``pixels`` values: HISTOGRAM_BINS, fewer for small maps (a power of
    two between pixels / 8 and pixels / 4, at least MIN_HISTOGRAM_BINS), where the bins'
    prefix sums would otherwise outweigh the pixels."""
    return min(HISTOGRAM_BINS, max(MIN_HISTOGRAM_BINS, 1 << max(pixels.bit_length() - 3, 0)))


def use_histogram(values: torch.Tensor) -> bool:
    """Whether :class:`RankedMaps` serves these rows: float32 on the CPU, maps below 2**24
    pixels, fewer than 2**17 rows. Its data-dependent gathers would each be a host
    synchronisation on an accelerator, float64 keys do not fit its int32 arithmetic, its counts
    are exact floats below 2**24 and its bin ids int32; the others keep the bisection and the
    full sort."""
    b, n = values.shape
    return values.dtype == torch.float32 and values.device.type == "cpu" and n < (1 << 24) and b < (1 << 17)


def _cumulative(counts: torch.Tensor) -> torch.Tensor:
    return counts.cumsum(dim=1)


class RankedMaps:
    """Exact rank statistics of NaN-free float32 rows (B x N) and one bool ``mask`` (B x N),
    from a histogram of each row's values and a sort of only the pixels a question needs.

    ``bins`` (default :func:`histogram_bins` of N) bins, numbered from the highest values down (``j = 0`` first), each a contiguous range of
    values, so that equal values share a bin:

    - ``q_pos`` fine bins of positive values, from the row's maximum down to ``2**-OCTAVES``
      of it, each ``2**s`` consecutive IEEE bit patterns (per row, the smallest s >= 0 that
      fits): with 4,096 bins, about 340 per octave of value;
    - one bin of the smaller positive values, one of the zeros (-0.0 = +0.0), one of the
      negative values closest to zero;
    - ``q_neg`` fine bins of negative values, down to the row's minimum (none when the batch
      has no negative value, and then ``q_pos`` takes all the bins).

    ``count[b, j]`` and ``inside[b, j]`` are the pixels and the mask pixels of bin j, and
    ``count_ge`` / ``inside_ge`` their sums over bins 0..j: how many pixels (mask pixels) have
    a value at least the smallest of bin j. A question that falls inside a bin (which value is
    the n-th largest, which cut inside a bin gives the best IoU) gathers that bin's pixels and
    sorts them (:class:`_Refined`); a bin known to hold a single value (the zeros, a constant
    row, a fine bin of one bit pattern) needs no sort.

    Cost on a 640x480 map: about ten elementwise passes (five more with negative values) and
    one ``bincount``, against a sort of 307,200 values (best IoU) or 32 counting passes (the
    n-th largest value).
    """

    OCTAVES = 12

    def __init__(self, values: torch.Tensor, mask: torch.Tensor, bins: int | None = None):
        if values.dtype != torch.float32 or values.ndim != 2 or mask.shape != values.shape:
            raise ValueError("RankedMaps takes float32 B x N values and a bool mask of the same shape")
        b, n = values.shape
        bins = histogram_bins(n) if bins is None else bins
        if bins < MIN_HISTOGRAM_BINS:
            raise ValueError(f"RankedMaps needs at least {MIN_HISTOGRAM_BINS} bins, got {bins}")
        self.values, self.mask, self.bins = values, mask, bins
        dev = values.device
        vmin, vmax = values.amin(dim=1), values.amax(dim=1)  # (aminmax over a dim is 3x slower on CPU)
        signed = bool((vmin < 0).any())
        q_neg = (bins - 3) // 2 if signed else 0
        q_pos = bins - 3 - q_neg
        self.q_pos = q_pos
        # Elementwise work in int32, in place where possible: a select (torch.where) costs as
        # much as five arithmetic passes on the CPU, so the zeros get their bin by arithmetic.
        # |v| as its bit pattern (ordered as |v|; -0.0 -> 0):
        magnitude = values.view(torch.int32).bitwise_and(0x7FFFFFFF)
        pos_floor, pos_shift = self._fine_range(vmax.clamp(min=0), q_pos)
        # t = the fine bin of a positive value, -1 below the fine range, -2 for a zero; bins are
        # then numbered j = q_pos - 1 - t. (magnitude - floor) >> s is <= -2 for a zero because
        # floor > 2**s, and max() with -1 (positive) or -2 (zero: -magnitude >> 31 is 0, not -1)
        # merges everything below the fine range into one bin without touching the zeros.
        t = torch.sub(magnitude, pos_floor.to(torch.int32)[:, None])
        t.bitwise_right_shift_(pos_shift.to(torch.int32)[:, None])
        low = torch.neg(magnitude).bitwise_right_shift_(31)
        t = torch.maximum(t, low.neg_().sub_(2), out=t)
        del low
        if signed:
            # Negative values: -3 - (their fine bin by magnitude), -3 below its range.
            neg_floor, neg_shift = self._fine_range((-vmin).clamp(min=0), q_neg)
            u = magnitude.sub_(neg_floor.to(torch.int32)[:, None])
            u.bitwise_right_shift_(neg_shift.to(torch.int32)[:, None]).clamp_(min=-1)
            t = torch.where(values < 0, u.neg_().sub_(4), t)
        del magnitude
        # code = 2 * (row * bins + j) + mask bit: the histogram index of each pixel.
        offset = (torch.arange(b, device=dev, dtype=torch.int64) * bins + (q_pos - 1)).to(torch.int32)
        code = torch.sub(offset[:, None], t, out=t)
        code.add_(code).add_(mask)
        self.code = code
        hist = _histogram(code.flatten(), 2 * b * bins).view(b, bins, 2)
        self.count = hist.sum(dim=2)
        self.inside = hist[:, :, 1]
        self.count_ge = _cumulative(self.count)
        self.inside_ge = _cumulative(self.inside)
        # Bins known to hold one value: the zeros; a constant row's only bin; fine bins one bit
        # pattern wide.
        j = torch.arange(bins, device=dev)[None, :]
        self.single = (j == q_pos + 1) | ((vmin == vmax)[:, None] & (self.count == n))
        self.single |= (j < q_pos) & (pos_shift == 0)[:, None]
        if signed:
            self.single |= (j >= q_pos + 3) & (neg_shift == 0)[:, None]
        # Bins 0..q_pos hold positive values only; the others non-positive ones.
        self.positive_end = torch.full((b,), q_pos + 1, device=dev, dtype=torch.int64)

    @classmethod
    def _fine_range(cls, peak: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row (the largest magnitude ``peak`` on one side of zero, >= 0): the smallest bit
        pattern of the fine bins and their shift s, the smallest with ``q`` bins of ``2**s``
        patterns reaching from it to ``peak``. The floor stays above 2**s, so that the bit
        pattern 0 (a zero) lies at least two bins below it."""
        top = (peak + 0.0).view(torch.int32).to(torch.int64)
        floor = (top - cls.OCTAVES * (1 << 23)).clamp(min=1)
        shifts = torch.arange(0, 32, device=peak.device, dtype=torch.int64)
        span = (top - floor).clamp(min=0)
        shift = ((span[:, None] >> shifts) >= q).sum(dim=1)
        return torch.maximum(floor, (1 << shift) + 1), shift

    @property
    def count_gt(self) -> torch.Tensor:
        return self.count_ge - self.count

    @property
    def inside_gt(self) -> torch.Tensor:
        return self.inside_ge - self.inside

    def positives(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive pixels, positive mask pixels) per row (int64 B)."""
        return self.count_ge[:, self.q_pos], self.inside_ge[:, self.q_pos]

    def _refine(self, flags: torch.Tensor, skip_single_valued: bool = False) -> "_Refined":
        """The pixels of the flagged bins (B x bins bool), sorted by bin (row, then value
        descending), then value descending. With ``skip_single_valued``, bins whose pixels all
        hold one value are left out (found from the gathered values, before the sort)."""
        sel = flags[:, :, None].expand(-1, -1, 2).flatten().index_select(0, self.code.flatten())
        idx = sel.nonzero()[:, 0]
        code = self.code.flatten().index_select(0, idx).to(torch.int64)
        key = _sortable_int32(self.values.flatten().index_select(0, idx))
        if skip_single_valued and len(code):
            # Step-like maps (occlusion, few distinct values) flag wide bins of one value each:
            # no cut lies inside such a bin, and a min/max per bin is far cheaper than sorting it.
            rb = code >> 1
            lo = torch.full((flags.numel(),), 2**31 - 1, dtype=torch.int32, device=key.device)
            hi = torch.full((flags.numel(),), -(2**31), dtype=torch.int32, device=key.device)
            lo.scatter_reduce_(0, rb, key, "amin")
            hi.scatter_reduce_(0, rb, key, "amax")
            keep = (lo != hi).index_select(0, rb)
            if not bool(keep.all()):
                code, key = code[keep], key[keep]
        rb, inside = code >> 1, code & 1
        # One sort of one int64 word per pixel: bin id, then key descending, then the mask bit
        # (bin ids stay below 2**29: B * bins, B < 2**17 rows by use_histogram).
        word = (rb << 33) | (((2**31 - 1) - key.to(torch.int64)) << 1) | inside
        return _Refined(self, word.sort().values)

    def _at(self, table: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return table.gather(1, j[:, None])[:, 0]

    def top_n(self, n: torch.Tensor) -> "TopN":
        """Counts around each row's n[b]-th largest value (1 <= n <= N): pixels strictly above
        it and equal to it, and the mask pixels among each."""
        n = n.to(torch.int64)
        j = (self.count_ge < n[:, None]).sum(dim=1)  # the bin holding the n-th largest
        c_gt, i_gt = self._at(self.count_gt, j), self._at(self.inside_gt, j)
        c_at, i_at = self._at(self.count, j), self._at(self.inside, j)
        single = self._at(self.single, j)
        if bool(single.all()):
            return TopN(c_gt, c_at, i_gt, i_at)
        flags = torch.zeros_like(self.single)
        flags.scatter_(1, j[:, None], ~single[:, None])
        ref = self._refine(flags)
        # The n-th largest is the (n - c_gt)-th pixel of its bin's run in the sorted gather.
        rowbin = torch.arange(len(n), device=n.device) * self.bins + j
        start = torch.searchsorted(ref.rowbin, rowbin)
        e = (start + (n - c_gt) - 1).clamp(0, max(len(ref.rowbin) - 1, 0))
        n_above, n_at_least, hits_above, hits_at_least = ref.around(e)
        return TopN(
            torch.where(single, c_gt, n_above),
            torch.where(single, c_at, n_at_least - n_above),
            torch.where(single, i_gt, hits_above),
            torch.where(single, i_at, hits_at_least - hits_above),
        )

    def best_cut(self, area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(intersection, union) of the mask (``area`` pixels) and the upper level set
        ``{value >= s}`` with the highest IoU over every s > 0 (int64 B each; union >= 1), by
        branch and bound over the bins. (0, 1) for a row without a positive value.

        Every non-empty positive bin j gives one exact candidate, the cut at its smallest value
        (the region is bins 0..j: ``inside_ge``, ``count_ge``). A cut inside bin j keeps bins
        0..j-1 and part of bin j, so its IoU is at most (inside_gt + inside) / (area + count_gt
        - inside_gt): all of the bin's mask pixels, none of its others. Only bins whose bound
        beats the best exact candidate are sorted, and each distinct value there is a
        candidate. Comparisons are exact: two IoUs with denominators below 2**25 differ by
        more than float64 rounds them, and equal fractions round equally.
        """
        b = len(area)
        a = area.to(torch.int64)[:, None]
        j = torch.arange(self.bins, device=a.device)[None, :]
        positive = j < self.positive_end[:, None]
        inter, union = self.inside_ge, (a + self.count_ge - self.inside_ge).clamp(min=1)
        exact = torch.where(positive & (self.count > 0), inter.double() / union.double(), -1.0)
        best, at = exact.max(dim=1)
        none = best < 0
        best_i = torch.where(none, 0, self._at(inter, at))
        best_u = torch.where(none, 1, self._at(union, at))
        best = best.clamp(min=0)
        i_gt, c_gt = self.inside_gt, self.count_gt
        bound = (i_gt + self.inside).double() / (a + c_gt - i_gt).clamp(min=1).double()
        flags = positive & (self.count > 1) & ~self.single & (bound > best[:, None])
        if not bool(flags.any()):
            return best_i, best_u
        ref = self._refine(flags, skip_single_valued=True)
        if len(ref.idx) == 0:
            return best_i, best_u
        # Candidates: the last pixel of each group of equal values (the cut at that value).
        inter_e, union_e = ref.cuts(area.to(torch.int64))
        val = torch.where(ref.is_last, inter_e.double() / union_e.double(), -1.0)
        top = torch.full((b,), -1.0, dtype=torch.float64, device=a.device).scatter_reduce(0, ref.row, val, "amax")
        idx = torch.arange(len(val), device=a.device)
        hit = ref.is_last & (val == top.index_select(0, ref.row))
        pick = torch.full((b,), -1, dtype=torch.int64, device=a.device).scatter_reduce(
            0, ref.row, torch.where(hit, idx, -1), "amax"
        ).clamp(min=0)
        better = top > best
        return (
            torch.where(better, inter_e.index_select(0, pick), best_i),
            torch.where(better, union_e.index_select(0, pick), best_u),
        )


class TopN:
    """Counts around the n-th largest value of each row (int64 B each)."""

    def __init__(self, n_above, n_tied, hits_above, hits_tied):
        self.n_above, self.n_tied, self.hits_above, self.hits_tied = n_above, n_tied, hits_above, hits_tied

    def expected_hits(self, n: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Mask pixels among the n highest, ties at the cut sharing its remaining slots in
        proportion (the arithmetic of :func:`expected_top_n_hits`, in ``dtype``)."""
        share = (n - self.n_above).to(dtype) / self.n_tied.clamp(min=1).to(dtype)
        return self.hits_above.to(dtype) + self.hits_tied.to(dtype) * share


class _Refined:
    """The gathered pixels of some bins, sorted by (row, bin, value descending): per pixel its
    bin, key and mask bit, where its run (its bin's pixels) starts, whether it ends a group of
    equal values, and running mask counts."""

    def __init__(self, ranked: RankedMaps, words: torch.Tensor):
        g = len(words)
        dev = words.device
        self.rowbin = words >> 33
        self.key = (2**31 - 1) - ((words >> 1) & 0xFFFFFFFF)
        inside = words & 1
        self.row = torch.div(self.rowbin, ranked.bins, rounding_mode="floor")
        self.idx = torch.arange(g, device=dev)
        new_run = torch.ones(g, dtype=torch.bool, device=dev)
        new_run[1:] = self.rowbin[1:] != self.rowbin[:-1]
        self.new_group = new_run.clone()
        self.new_group[1:] |= self.key[1:] != self.key[:-1]
        self.is_last = torch.ones(g, dtype=torch.bool, device=dev)
        self.is_last[:-1] = self.new_group[1:]
        self.run_start = torch.where(new_run, self.idx, 0).cummax(dim=0).values
        self.through = inside.cumsum(dim=0)  # mask pixels up to and including each position
        self.before = self.through - inside
        # Pixels (mask pixels) of the row above each pixel's bin.
        self.c_gt = ranked.count_gt.flatten().index_select(0, self.rowbin)
        self.i_gt = ranked.inside_gt.flatten().index_select(0, self.rowbin)

    def cuts(self, area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(intersection, union) of the mask and ``{value >= value at e}`` for every position e
        (meaningful where e ends its group of equal values)."""
        start_before = self.before.index_select(0, self.run_start)
        inter = self.i_gt + (self.through - start_before)
        count = self.c_gt + (self.idx - self.run_start + 1)
        return inter, (area.index_select(0, self.row) + count - inter).clamp(min=1)

    def around(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For positions e: pixels above e's value, pixels at least e's value, and the mask
        pixels among each."""
        g = len(self.idx)
        first = torch.where(self.new_group, self.idx, 0).cummax(dim=0).values.index_select(0, e)
        last = torch.where(self.is_last, self.idx, g).flip(0).cummin(dim=0).values.flip(0).index_select(0, e)
        start = self.run_start.index_select(0, e)
        base_c, base_i = self.c_gt.index_select(0, e), self.i_gt.index_select(0, e)
        start_before = self.before.index_select(0, start)
        return (
            base_c + (first - start),
            base_c + (last - start + 1),
            base_i + (self.before.index_select(0, first) - start_before),
            base_i + (self.through.index_select(0, last) - start_before),
        )


def _histogram(codes: torch.Tensor, size: int) -> torch.Tensor:
    """How many times each of 0..size-1 occurs in ``codes`` (int64)."""
    return torch.bincount(codes, minlength=size)
