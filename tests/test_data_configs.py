"""The shipped real-data configs validate, and their [dataset] tables build the datasets they
name from the shared samples (roots are relative to the repository root, where runs start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import load_config
from bench.data.registry import load_dataset

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["coco_sample.toml", "osie_sample.toml", "coco_panoptic_sample.toml", "mit1003_sample.toml", "salicon_sample.toml"]
GAZE_CONFIGS = ["osie_sample.toml", "mit1003_sample.toml", "salicon_sample.toml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_and_builds_its_dataset(name):
    cfg = load_config(REPO / "configs" / name)
    params = dict(cfg.dataset.params)
    root = (REPO / params.pop("root")).resolve()
    if not root.is_dir():
        pytest.skip(f"shared sample data not found at {root}")
    ds = load_dataset(cfg.dataset.name, root=str(root), limit=2, **params)
    assert len(ds) == 2
    sample = ds[0]
    assert sample.targets and sample.image.shape[0] == 3


def test_coco_config_has_the_required_rows_and_columns():
    cfg = load_config(REPO / "configs" / "coco_sample.toml")
    assert [m.name for m in cfg.models] == ["effnet-lite0"]
    assert {"gradcam", "center"} <= {m.name for m in cfg.methods}
    assert {"pointing_game", "mass_accuracy", "best_iou"} <= {m.name for m in cfg.metrics}


@pytest.mark.parametrize("name", GAZE_CONFIGS)
def test_gaze_configs_are_gaze_leaderboards_with_the_center_rows(name):
    cfg = load_config(REPO / "configs" / name)
    assert {"gradcam", "center", "center_product"} <= {m.name for m in cfg.methods}
    assert [m.name for m in cfg.metrics] == [
        "nss", "auc_judd", "shuffled_auc", "cc", "kl_div", "sim", "information_gain", "log_likelihood"
    ]
    assert cfg.human_ceiling
