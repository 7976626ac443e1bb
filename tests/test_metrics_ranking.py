"""The rank machinery under the overlap and AUC metrics: exact n-th largest values without a
sort, fast row counts, the tie-sharing rule, and the positives lookup."""

import math

import pytest
import torch

from bench.metrics.ranking import (
    count_true,
    expected_top_n_hits,
    kth_largest,
    positives_above_and_tied,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_kth_largest_equals_the_sorted_value(dtype):
    torch.manual_seed(0)
    v = (torch.randn(6, 257) * 1e3).to(dtype)
    v[1] = v[1].round()  # many ties
    v[2, :10] = -0.0
    v[2, 10:20] = 0.0
    v[3] = -v[3].abs()  # all negative
    v[4, 0] = -math.inf
    v[4, 1] = math.inf
    v[5] = 7.0  # constant
    desc = v.float().sort(dim=1, descending=True).values
    for n in (1, 2, 50, 128, 256, 257):
        got = kth_largest(v, torch.full((6,), n))
        assert got.dtype == dtype
        assert torch.equal(got.float(), desc[:, n - 1]), n


def test_kth_largest_takes_one_n_per_row():
    v = torch.tensor([[3.0, 1.0, 2.0], [10.0, 30.0, 20.0]])
    assert kth_largest(v, torch.tensor([1, 3])).tolist() == [3.0, 10.0]


def test_negative_zero_equals_positive_zero():
    v = torch.tensor([[-0.0, 0.0, 0.0, -1.0]])
    # top-2 cut falls inside the group of three zeros (-0.0 among them): 2 slots for 3 pixels
    mask = torch.tensor([[True, False, False, False]])
    assert expected_top_n_hits(v, mask, torch.tensor([2])).item() == pytest.approx(2 / 3)


def test_count_true_matches_sum_for_every_remainder():
    torch.manual_seed(1)
    for n in (1, 1023, 1024, 1025, 5000):
        flags = torch.rand(3, n) > 0.3
        assert torch.equal(count_true(flags), flags.sum(dim=1)), n


def test_expected_top_n_hits_by_hand():
    v = torch.tensor([[5.0, 4.0, 4.0, 4.0, 1.0]])
    mask = torch.tensor([[False, True, False, False, True]])
    # n=2: the 5, then one slot shared by the three 4s, one of them in the mask: 1/3
    assert expected_top_n_hits(v, mask, torch.tensor([2])).item() == pytest.approx(1 / 3)
    assert expected_top_n_hits(v, mask, torch.tensor([4])).item() == pytest.approx(1.0)
    assert expected_top_n_hits(v, mask, torch.tensor([5])).item() == pytest.approx(2.0)
    assert expected_top_n_hits(v, mask, torch.tensor([0])).item() == 0.0


def test_positives_above_and_tied_by_hand():
    v = torch.tensor([[3.0, 1.0, 3.0, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    pos = torch.tensor([[True, False, True, True, False], [False, False, False, False, True]])
    above, tied = positives_above_and_tied(v, pos)
    # row 0 positives 3, 3, 2: a value 1 has 3 above; 2 has two above and itself tied; 3 has
    # none above and two tied; 0 has 3 above
    assert above[0].tolist() == [0, 3, 0, 2, 3]
    assert tied[0].tolist() == [2, 0, 2, 1, 0]
    # row 1 has one positive (5): padding of the shorter row never counts
    assert above[1].tolist() == [1, 1, 1, 1, 0]
    assert tied[1].tolist() == [0, 0, 0, 0, 1]
    none = positives_above_and_tied(v, torch.zeros_like(pos))
    assert not none[0].any() and not none[1].any()
