"""A method that misbehaves on one sample costs that sample's row and nothing else.

Policy (README "Guarantees"):
- a map holding NaN or Inf is scored, flagged ``map_invalid``, and counts as a miss for the
  pointing game (never a hit); continuous scores on it are undefined (NaN);
- a method that raises on a sample: the batch is retried image by image, the failing
  (sample, target) is recorded in ``skipped.jsonl`` with the error, and every other row of the
  batch is scored as if nothing happened;
- a method that raises on every sample: all its rows are recorded as skipped and counted in
  the leaderboard footer; the other methods' rows are unaffected.

The methods here are throwaway ones registered for this test: a brightness map, and copies of
it that break on chosen images.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch

from bench import results
from bench.config import parse_config
from bench.data.synthetic import HarborScenes
from bench.engine import run_config
from bench.methods.base import AttributionMethod, register_method
from bench.report.leaderboard import build
from bench.report.render import render_text

N, BATCH = 16, 8
POISONED = (5, 11)  # one in each batch


class Brightness(AttributionMethod):
    """Mean over channels of the input: a map that depends on nothing but its own image."""

    name = "_test_brightness"
    family = "baseline"
    description = "test only: channel mean of the input"
    poison: ClassVar[list[torch.Tensor]] = []
    fault: ClassVar[str] = "none"

    def attribute(self, model, inputs, targets, *, seeds=None):
        maps = inputs.float().mean(dim=1).clone()
        for n in range(inputs.shape[0]):
            if self.fault == "raise_all" or any(torch.equal(inputs[n], p) for p in self.poison):
                if self.fault in ("raise", "raise_all"):
                    raise RuntimeError(f"{self.name} cannot handle this image")
                maps[n, 3, 4] = float("nan") if self.fault == "nan" else float("inf")
        return maps


def _variant(fault: str) -> type[AttributionMethod]:
    cls = type(f"Brightness_{fault}", (Brightness,), {"name": f"_test_brightness_{fault}", "fault": fault})
    return register_method(cls)


register_method(Brightness)
FAULTS = {f: _variant(f) for f in ("nan", "inf", "raise", "raise_all")}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = HarborScenes(split="test", n=N, seed=1, size=96)
    poison = [data[i].image for i in POISONED]
    assert all(data[i].targets for i in POISONED)
    for cls in FAULTS.values():
        cls.poison = poison
    cfg = parse_config({
        "name": "methods", "device": "cpu", "batch_size": BATCH,
        "dataset": {"name": "harbor", "split": "test", "n": N, "seed": 1, "size": 96},
        "models": [{"spec": "harbor:contextual"}],
        "methods": [{"name": "_test_brightness"}] + [{"name": cls.name} for cls in FAULTS.values()],
        "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "energy_pointing_game"}, {"name": "leakage"}],
    }, source="methods-test")
    out = tmp_path_factory.mktemp("methods")
    run_config(cfg, out_dir=out, progress=False)
    return out


def _rows(out, method):
    return {r["sample"]: r for r in results.read_rows(out / results.SCORES) if r["method"] == method}


def _same_row(a: dict, b: dict) -> bool:
    strip = lambda r: {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k != "method"}  # noqa: E731
    return strip(a) == strip(b)


def assert_other_rows_intact(out, method):
    clean, got = _rows(out, "_test_brightness"), _rows(out, method)
    others = [s for s in clean if s not in POISONED]
    assert len(others) >= 10
    for s in others:
        assert _same_row(got[s], clean[s]), s


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_nan_or_inf_map_is_flagged_and_scored_as_a_miss(run_dir, fault):
    method = FAULTS[fault].name
    got, clean = _rows(run_dir, method), _rows(run_dir, "_test_brightness")
    for s in POISONED:
        row = got[s]
        assert row["map_invalid"] is True
        assert row["pointing_game"] == 0.0  # a miss, never a hit
        assert math.isnan(row["energy_pointing_game"])  # undefined, excluded from the mean
        assert clean[s]["map_invalid"] is False
    assert not [r for r in results.read_rows(run_dir / results.SKIPPED) if r.get("method") == method]
    assert_other_rows_intact(run_dir, method)


def test_method_raising_on_one_sample_skips_only_that_sample(run_dir):
    method = FAULTS["raise"].name
    skips = [r for r in results.read_rows(run_dir / results.SKIPPED) if r.get("method") == method]
    assert sorted(r["sample"] for r in skips) == list(POISONED)
    for r in skips:
        assert r["reason"] == f"method '{method}' failed: RuntimeError: {method} cannot handle this image"
    assert not set(POISONED) & set(_rows(run_dir, method))
    assert_other_rows_intact(run_dir, method)


def test_method_raising_everywhere_is_recorded_and_counted_in_the_footer(run_dir):
    method = FAULTS["raise_all"].name
    assert not _rows(run_dir, method)
    skips = [r for r in results.read_rows(run_dir / results.SKIPPED) if r.get("method") == method]
    scored = _rows(run_dir, "_test_brightness")
    assert len(skips) == len(scored)
    footer = render_text(build(run_dir)).split("not scored:")[1]
    assert f"{len(scored)} × method '{method}' failed" in footer
    assert f"{len(POISONED)} × method '{FAULTS['raise'].name}' failed" in footer
