"""The public metric API of issue 4: names, signatures, registration and metadata."""

import inspect
import math

import pytest
import torch

import bench.metrics as metrics
from bench.metrics import METRICS, TruthBatch

# name -> positional parameters, exactly as the issue states them
SIGNATURES = {
    "pointing_game": ["maps", "masks", "tolerance"],
    "energy_pointing_game": ["maps", "masks"],
    "mass_accuracy": ["maps", "masks"],
    "rank_accuracy": ["maps", "masks"],
    "top_k_intersection": ["maps", "masks", "k"],
    "iou_curve": ["maps", "masks", "thresholds"],
    "best_iou": ["maps", "masks"],
    "coverage": ["maps", "masks"],
    "instance_recall": ["maps", "instance_masks"],
    "leakage": ["maps", "object_masks", "context_masks"],
    "context_pointing_rate": ["maps", "object_masks", "context_masks"],
    "density_ratio": ["maps", "object_masks", "context_masks"],
    "nss": ["maps", "fixation_maps"],
    "auc_judd": ["maps", "fixation_maps"],
    "shuffled_auc": ["maps", "fixation_maps", "other_fixation_maps"],
    "cc": ["maps", "densities"],
    "kl_div": ["maps", "densities"],
    "sim": ["maps", "densities"],
}

REGISTERED = {
    "pointing_game": (True, ("masks",), "class_mean"),
    "energy_pointing_game": (True, ("masks",), "mean"),
    "mass_accuracy": (True, ("masks",), "mean"),
    "rank_accuracy": (True, ("masks",), "mean"),
    "top_k_intersection": (True, ("masks",), "mean"),
    "iou": (True, ("masks",), "mean"),
    "best_iou": (True, ("masks",), "mean"),
    "coverage": (True, ("masks",), "mean"),
    "instance_recall": (True, ("instances",), "mean"),
    "leakage": (False, ("masks", "context"), "mean"),
    "context_pointing_rate": (False, ("masks", "context"), "mean"),
    "density_ratio": (False, ("masks", "context"), "mean"),
    "nss": (True, ("fixations",), "mean"),
    "auc_judd": (True, ("fixations",), "mean"),
    "shuffled_auc": (True, ("fixations", "other_fixations"), "mean"),
    "cc": (True, ("density",), "mean"),
    "kl_div": (False, ("density",), "mean"),
    "sim": (True, ("density",), "mean"),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_public_functions_have_the_issue_signatures_and_docstrings(name):
    fn = getattr(metrics, name)
    params = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert params == SIGNATURES[name]
    assert name in metrics.__all__
    assert fn.__doc__ and len(fn.__doc__) > 150  # conventions are written down


def test_pointing_default_tolerance_is_15():
    assert inspect.signature(metrics.pointing_game).parameters["tolerance"].default == 15


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_registered_metadata(name):
    info = METRICS.get(name)
    assert (info.higher_is_better, info.requires, info.aggregate) == REGISTERED[name]
    assert info.description
    assert info.describe()["name"] == name


def _full_truth(b=3, h=12, w=14):
    torch.manual_seed(0)
    masks = torch.zeros(b, h, w, dtype=torch.bool)
    masks[0, 2:6, 3:9] = True
    masks[1, 5:, :4] = True  # row 2: empty mask
    context = torch.zeros_like(masks)
    context[:, 8:, :] = True
    instances = torch.zeros(b, 2, h, w, dtype=torch.bool)
    instances[:2, 0] = masks[:2]
    fix = torch.rand(b, h, w) > 0.9
    return TruthBatch(
        masks=masks,
        labels=["a", "b", "c"],
        context=context,
        instances=instances,
        instance_counts=torch.tensor([1, 1, 0]),
        fixations=fix,
        density=torch.rand(b, h, w),
        other_fixations=torch.rand(b, h, w) > 0.8,
    )


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_registered_scores_are_float_per_sample_and_nan_where_the_mask_is_empty(name):
    truth = _full_truth()
    maps = torch.rand(3, 12, 14)
    info = METRICS.get(name)
    out = info.score(maps, truth, **info.defaults)
    assert out.shape == (3,) and out.is_floating_point() and out.device == maps.device
    if "masks" in info.requires or "instances" in info.requires:
        assert math.isnan(out[2].item())  # empty mask / no instance: excluded, never a hit


def test_unknown_metric_parameters_are_named():
    with pytest.raises(ValueError, match="did you mean 'tolerance'"):
        METRICS.get("pointing_game").validate_params({"tolerence": 3})
