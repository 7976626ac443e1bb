"""Overlap and coverage metrics: every convention pinned by a hand-computed case."""

import math

import pytest
import torch

from bench.metrics import (
    METRICS,
    TruthBatch,
    best_iou,
    coverage,
    instance_recall,
    iou_curve,
    mass_accuracy,
    rank_accuracy,
    top_k_intersection,
)

NAN = math.nan


def _m(rows):
    return torch.tensor([rows], dtype=torch.float32)


def _g(rows):
    return torch.tensor([rows], dtype=torch.bool)


# map values 5 4 3 / 2 1 0, mask on the 5 and the 1
RANKED = _m([[5, 4, 3], [2, 1, 0]])
TWO = _g([[1, 0, 0], [0, 1, 0]])


def test_mass_accuracy_uses_the_positive_part():
    m = _m([[1, 2], [3, -4]])
    g = _g([[1, 0], [0, 1]])
    assert mass_accuracy(m, g).item() == pytest.approx(1 / 6)  # (1 + 0) / (1 + 2 + 3)
    # Quantus's raw sum would give (1 - 4) / (1 + 2 + 3 - 4) = -1.5, outside [0, 1]
    assert mass_accuracy(torch.full((1, 2, 2), 3.0), g).item() == pytest.approx(0.5)  # area
    assert math.isnan(mass_accuracy(torch.zeros(1, 2, 2), g).item())
    assert math.isnan(mass_accuracy(-torch.ones(1, 2, 2), g).item())
    assert math.isnan(mass_accuracy(m, torch.zeros_like(g)).item())


def test_rank_accuracy_by_hand_and_ties_shared():
    assert rank_accuracy(RANKED, TWO).item() == pytest.approx(0.5)  # top-2 = 5, 4: one inside
    # K = 1, three pixels tied at the top: the one slot is shared, 1/3 of it inside the mask
    tied = _m([[1, 1, 1], [0, 0, 0]])
    assert rank_accuracy(tied, _g([[1, 0, 0], [0, 0, 0]])).item() == pytest.approx(1 / 3)
    # pixel order does not matter under ties
    assert rank_accuracy(tied, _g([[0, 0, 1], [0, 0, 0]])).item() == pytest.approx(1 / 3)
    # a constant map scores the mask's area fraction
    assert rank_accuracy(torch.zeros(1, 2, 3), TWO).item() == pytest.approx(2 / 6)
    assert rank_accuracy(RANKED, torch.ones(1, 2, 3, dtype=torch.bool)).item() == 1.0


def test_rank_accuracy_ranks_signed_values_as_they_are():
    m = _m([[-1, -2, -3], [-4, -5, -6]])
    assert rank_accuracy(m, _g([[1, 1, 0], [0, 0, 0]])).item() == 1.0


def test_top_k_intersection_by_hand():
    assert top_k_intersection(RANKED, TWO, 2).item() == pytest.approx(1 / 2)  # 5, 4
    assert top_k_intersection(RANKED, TWO, 4).item() == pytest.approx(1 / 4)  # 5, 4, 3, 2
    assert top_k_intersection(RANKED, TWO, 5).item() == pytest.approx(2 / 5)
    # k = 2 with 5 tied zeros after the 5: one slot shared by five pixels, one of them inside
    m = _m([[5, 0, 0], [0, 0, 0]])
    assert top_k_intersection(m, TWO, 2).item() == pytest.approx((1 + 1 / 5) / 2)


@pytest.mark.parametrize("k", [0, 7, 2.5, -1, True])
def test_top_k_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match="k must be an integer"):
        top_k_intersection(RANKED, TWO, k)


def test_coverage_counts_only_highlighted_pixels():
    m = _m([[5, 0, 0], [0, 0, 0]])
    g = _g([[1, 1, 0], [0, 0, 0]])
    # K = 2; only one pixel is positive: it covers one of the two object pixels
    assert coverage(m, g).item() == pytest.approx(0.5)
    # rank accuracy also credits the zero-valued slot by chance: (1 + 1/5) / 2
    assert rank_accuracy(m, g).item() == pytest.approx(0.6)
    assert coverage(torch.zeros(1, 2, 3), g).item() == 0.0
    assert coverage(-torch.ones(1, 2, 3), g).item() == 0.0
    assert coverage(RANKED, TWO).item() == pytest.approx(rank_accuracy(RANKED, TWO).item())
    # ties among positive values share slots as in rank accuracy
    assert coverage(torch.ones(1, 2, 3), TWO).item() == pytest.approx(2 / 6)


# map 4 2 1 / 0 -1 3, mask on the 4 and the 2
CURVE_MAP = _m([[4, 2, 1], [0, -1, 3]])
CURVE_GT = _g([[1, 1, 0], [0, 0, 0]])


def test_iou_curve_max_fraction_by_hand():
    curve = iou_curve(CURVE_MAP, CURVE_GT, [0.0, 0.5, 0.6, 1.0])
    # t=0: positives {4,2,1,3}: 2 / (2+4-2); t=.5: >= 2 (inclusive) {4,2,3}: 2/3;
    # t=.6: >= 2.4 {4,3}: 1/3; t=1: {4}: 1/2
    assert curve.shape == (1, 4)
    assert curve[0].tolist() == pytest.approx([0.5, 2 / 3, 1 / 3, 0.5])
    # no positive value: nothing kept, IoU 0
    assert iou_curve(-torch.ones(1, 2, 3), CURVE_GT, [0.0, 0.5]).tolist() == [[0.0, 0.0]]
    assert iou_curve(torch.zeros(1, 2, 3), CURVE_GT, [0.0]).tolist() == [[0.0]]


def test_iou_curve_top_fraction_by_hand():
    curve = iou_curve(CURVE_MAP, CURVE_GT, [1 / 3, 0.5, 1.0], mode="top_fraction")
    # 2 px {4,3}: 1/3; 3 px {4,3,2}: 2/3; all 6: 2/6
    assert curve[0].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 3])
    # constant map, 3 of 6 pixels: expected intersection 2 * 3/6 = 1, IoU 1 / (2 + 3 - 1)
    assert iou_curve(torch.ones(1, 2, 3), CURVE_GT, [0.5], mode="top_fraction").item() == pytest.approx(0.25)


def test_iou_curve_rejects_bad_thresholds_and_modes():
    with pytest.raises(ValueError, match="thresholds"):
        iou_curve(CURVE_MAP, CURVE_GT, [1.5])
    with pytest.raises(ValueError, match="thresholds"):
        iou_curve(CURVE_MAP, CURVE_GT, [])
    with pytest.raises(ValueError, match="mode"):
        iou_curve(CURVE_MAP, CURVE_GT, [0.5], mode="otsu")


def test_best_iou_is_the_best_cut_and_never_splits_ties():
    # cuts {4}: 1/2, {4,3}: 1/3, {4,3,2}: 2/3, {4,3,2,1}: 1/2
    assert best_iou(CURVE_MAP, CURVE_GT).item() == pytest.approx(2 / 3)
    # {2, 2} can't be split: the only cut holds both, IoU 1/2 although one pixel alone gives 1
    assert best_iou(_m([[2, 2, 0], [0, 0, 0]]), _g([[1, 0, 0], [0, 0, 0]])).item() == pytest.approx(0.5)
    assert best_iou(-torch.ones(1, 2, 3), CURVE_GT).item() == 0.0
    assert best_iou(torch.full((1, 2, 3), 2.0), CURVE_GT).item() == pytest.approx(2 / 6)


def test_best_iou_is_the_supremum_of_the_curve():
    torch.manual_seed(0)
    # dyadic values with peak 1, so that a threshold t = value is exact in floating point
    m = torch.randint(-300, 1024, (3, 16, 16)).float() / 1024
    m[:, 0, 0] = 1.0
    g = torch.rand(3, 16, 16) > 0.6
    fine = iou_curve(m, g, torch.linspace(0, 1, 2001)).amax(dim=1)
    exact = best_iou(m, g)
    assert torch.all(exact >= fine - 1e-12)
    # every cut is a threshold t = value / peak, so the curve at those t reaches the best
    for b in range(3):
        ts = m[b][m[b] > 0].double()
        assert iou_curve(m[b : b + 1], g[b : b + 1], ts).max().item() == pytest.approx(exact[b].item())


def test_instance_recall_half_peak_is_inclusive():
    m = torch.zeros(1, 6, 6)
    m[0, 0, 0], m[0, 3, 3], m[0, 5, 5] = 10.0, 5.0, 4.9
    inst = torch.zeros(1, 4, 6, 6, dtype=torch.bool)
    inst[0, 0, 0:2, 0:2] = True  # peak 10
    inst[0, 1, 3:5, 3:5] = True  # peak 5 = half: found
    inst[0, 2, 5, 4:6] = True  # peak 4.9: missed
    # inst[0, 3] stays all-false: padding, ignored
    assert instance_recall(m, inst).item() == pytest.approx(2 / 3)
    assert instance_recall(torch.full((1, 6, 6), 3.0), inst).item() == 0.0  # constant
    assert instance_recall(-torch.ones(1, 6, 6), inst).item() == 0.0  # no positive value
    assert math.isnan(instance_recall(m, torch.zeros_like(inst)).item())  # no instance
    bad = m.clone()
    bad[0, 1, 1] = math.nan
    assert math.isnan(instance_recall(bad, inst).item())


@pytest.mark.parametrize(
    "fn",
    [mass_accuracy, rank_accuracy, coverage, best_iou, lambda m, g: top_k_intersection(m, g, 2),
     lambda m, g: iou_curve(m, g, [0.5])[:, 0]],
    ids=["mass", "rank", "coverage", "best_iou", "top_k", "iou"],
)
def test_empty_masks_and_nonfinite_maps_are_undefined(fn):
    m = torch.rand(3, 4, 5)
    m[1, 2, 2] = math.nan
    m[2, 0, 0] = math.inf
    g = torch.ones(3, 4, 5, dtype=torch.bool)
    out = fn(m, g)
    assert not math.isnan(out[0].item()) and math.isnan(out[1].item()) and math.isnan(out[2].item())
    assert math.isnan(fn(torch.rand(1, 4, 5), torch.zeros(1, 4, 5, dtype=torch.bool))[0].item())


def test_chunking_gives_the_same_numbers(monkeypatch):
    import bench.metrics.ranking as ranking

    torch.manual_seed(1)
    m = torch.rand(5, 20, 20)
    g = torch.rand(5, 20, 20) > 0.5
    whole = [f(m, g) for f in (rank_accuracy, coverage, best_iou)]
    monkeypatch.setattr(ranking, "CHUNK_PIXELS", 500)  # one sample per chunk
    for a, f in zip(whole, (rank_accuracy, coverage, best_iou)):
        assert torch.equal(a, f(m, g))


def test_registered_overlap_scores():
    m = torch.rand(2, 8, 8)
    g = torch.zeros(2, 8, 8, dtype=torch.bool)
    g[0, :4] = True
    truth = TruthBatch(masks=g)
    for name in ("mass_accuracy", "rank_accuracy", "top_k_intersection", "coverage", "iou", "best_iou"):
        info = METRICS.get(name)
        out = info.score(m, truth)
        assert out.shape == (2,) and out.is_floating_point(), name
        assert 0 <= out[0].item() <= 1 and math.isnan(out[1].item()), name
        assert info.higher_is_better and info.aggregate == "mean"
    # top-k clamps its default k=1000 to the 64 pixels of these maps: all pixels, area fraction
    assert METRICS.get("top_k_intersection").score(m, truth)[0].item() == pytest.approx(0.5)
    inst = torch.zeros(2, 2, 8, 8, dtype=torch.bool)
    inst[:, 0, :2, :2] = True
    with pytest.raises(ValueError, match="truth.instances"):
        METRICS.get("instance_recall").score(m, truth)
    out = METRICS.get("instance_recall").score(m, TruthBatch(masks=g, instances=inst))
    assert out.shape == (2,)


def _map_zoo(b: int, h: int, w: int, seed: int) -> list[torch.Tensor]:
    """Maps that stress the histogram path: ties, plateaus, zeros of both signs, signed values,
    a constant map, values spanning many octaves, NaN and Inf rows, tiny and huge magnitudes."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(b, 1, 5, 5, generator=g).relu()
    cam = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    nonfinite = torch.rand(b, h, w, generator=g)
    nonfinite[0, 0, 0], nonfinite[1, 1, 1] = math.nan, math.inf
    zeros = torch.rand(b, h, w, generator=g)
    zeros[:, : h // 2] = -0.0
    zeros[:, h // 2, :3] = 0.0
    return [
        torch.rand(b, h, w, generator=g),
        torch.randn(b, h, w, generator=g),
        torch.randint(-3, 4, (b, h, w), generator=g).float(),  # seven values, large tie groups
        torch.randint(0, 3, (b, h, w), generator=g).float() * 0.25,
        cam.contiguous(),
        torch.full((b, h, w), 0.5),
        torch.zeros(b, h, w),
        -torch.rand(b, h, w, generator=g),
        nonfinite,
        zeros,
        torch.rand(b, h, w, generator=g) * 1e-38,  # subnormal and near it
        torch.randn(b, h, w, generator=g) * 1e30,
        torch.exp(torch.randn(b, h, w, generator=g) * 20),  # dozens of octaves
        torch.rand(b, h, w, generator=g).mul(8).floor().add(1),  # eight positive values
    ]


def _mask_zoo(b: int, h: int, w: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    scattered = torch.rand(b, h, w, generator=g) > 0.7
    scattered[0] = False  # empty mask
    scattered[1] = True  # the whole image
    box = torch.zeros(b, h, w, dtype=torch.bool)
    box[:, h // 4 : h // 2, w // 3 :] = True
    return [scattered, box]


@pytest.mark.parametrize("size", [(2, 3), (9, 8), (33, 31), (120, 160)])
def test_best_iou_equals_the_sort_based_definition(size, monkeypatch):
    """The CPU's branch and bound over a histogram (best_iou) against the definition, one full
    sort per map (best_iou_by_sort): the same float32 values, NaN where both are NaN. The
    small maps get 64 or 128 bins (many pixels per bin), 120x160 the full 4,096."""
    from bench.metrics.overlap import best_iou_by_sort
    from bench.metrics.ranking import RankedMaps, histogram_bins, use_histogram

    h, w = size
    assert (histogram_bins(h * w) == 4096) == (h * w > 10000)
    sorted_pixels = []
    refine = RankedMaps._refine

    def counting_refine(self, flags, **kwargs):
        out = refine(self, flags, **kwargs)
        sorted_pixels.append(len(out.idx))
        return out

    monkeypatch.setattr(RankedMaps, "_refine", counting_refine)
    for maps in _map_zoo(5, h, w, seed=h):
        assert use_histogram(maps.flatten(1))
        for masks in _mask_zoo(5, h, w, seed=h):
            fast, slow = best_iou(maps, masks), best_iou_by_sort(maps, masks)
            assert fast.dtype == slow.dtype == torch.float32
            assert torch.equal(fast.isnan(), slow.isnan())
            assert torch.equal(fast.nan_to_num(-1.0), slow.nan_to_num(-1.0)), (maps[0, 0, :4], fast, slow)
    # The bound left some bins to sort (the test reaches the refinement, not only the counts).
    assert max(sorted_pixels, default=0) > 1
    # float64 maps and other devices keep the sort (one path, so trivially equal)
    m64 = torch.rand(2, 9, 8, dtype=torch.float64)
    g = torch.rand(2, 9, 8) > 0.5
    assert torch.equal(best_iou(m64, g), best_iou_by_sort(m64, g))


def test_rank_metrics_equal_their_bisection_path(monkeypatch):
    """Rank accuracy, top-k intersection, coverage and the top-q IoU through the histogram
    against the same metrics with the histogram switched off (the 32-pass bisection)."""
    import bench.metrics.overlap as overlap
    import bench.metrics.ranking as ranking

    metrics = {
        "rank": rank_accuracy,
        "coverage": coverage,
        "top_k": lambda m, g: top_k_intersection(m, g, min(7, m[0].numel())),
        "top_q": lambda m, g: iou_curve(m, g, [0.0, 0.1, 0.5, 1.0], mode="top_fraction"),
    }
    # Each size's maps in one batch (rows are independent; a batch with a signed row splits its
    # bins between signs, which must not change any row's numbers either).
    cases = []
    for h, w in ((2, 3), (9, 8), (33, 31)):
        maps = torch.cat(_map_zoo(5, h, w, seed=w))
        cases += [(maps, masks.repeat(len(maps) // 5, 1, 1)) for masks in _mask_zoo(5, h, w, seed=w)]
    fast = {name: [fn(m, g) for m, g in cases] for name, fn in metrics.items()}
    monkeypatch.setattr(ranking, "use_histogram", lambda values: False)
    monkeypatch.setattr(overlap, "use_histogram", lambda values: False)
    for name, fn in metrics.items():
        for (m, g), got in zip(cases, fast[name]):
            want = fn(m, g)
            assert torch.equal(got.nan_to_num(-1.0), want.nan_to_num(-1.0)), (name, got, want)
