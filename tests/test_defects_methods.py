"""Issue 16, item 8: method parameters are checked with the config (ranges) and against the
loaded model (layer names with a did-you-mean, sizes that depend on the input) before any row
is written; a method that fails on every row makes the run exit non-zero naming it and its
first failure, and the "not scored" footer shows the whole reason."""

from __future__ import annotations

import pytest

from bench import results
from bench.cli import main as cli_main
from bench.config import ConfigError, load_config
from bench.methods import METHODS, AttributionMethod
from bench.report.leaderboard import build
from defects_support import tiny_config


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("rise", "n_masks = -5", r"method 'rise' parameter 'n_masks' must be an integer >= 1, got -5"),
        ("smoothgrad", "n_samples = 0", r"'n_samples' must be an integer >= 1, got 0"),
        ("integrated_gradients", "steps = 0", r"'steps' must be an integer >= 1 \(method 'gausslegendre'\), got 0"),
        ("occlusion", "window = 0", r"'window' must be an integer >= 1, got 0"),
        ("rise", "p = 1.5", r"'p' must be in \(0, 1\], got 1.5"),
    ],
)
def test_out_of_range_parameters_fail_the_config_check(tmp_path, method, params, message):
    cfg = tiny_config(tmp_path, method=method, method_params=params)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("occlusion", "window = 500", r"'window' must be at most the model input's side \(96x96 px\), got 500"),
        ("gradcam", 'layer = "featurs"', r"model has no layer 'featurs'; did you mean 'features'"),
    ],
)
def test_parameters_the_model_cannot_take_fail_before_any_row(tmp_path, capsys, method, params, message):
    cfg = tiny_config(tmp_path, method=method, method_params=params)
    code = cli_main(["run", str(cfg), "--out", str(tmp_path / "results"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    import re

    assert re.search(message, err), err
    assert "harbor:contextual" in err
    run_dir = tmp_path / "results" / "tiny"
    assert not (run_dir / results.SCORES).exists()  # nothing scored, nothing to block a retry


class _AlwaysFails(AttributionMethod):
    name = "defects_always_fails"
    family = "baseline"
    description = "test method: raises on every image"

    def attribute(self, model, inputs, targets, *, seeds=None):
        raise RuntimeError("boom: no map for image batch of 4: see the cause")


@pytest.fixture
def always_fails():
    METHODS.add(_AlwaysFails.name, _AlwaysFails)
    try:
        yield _AlwaysFails.name
    finally:
        METHODS._items.pop(_AlwaysFails.name, None)


def test_a_method_failing_on_every_row_fails_the_run_naming_it(tmp_path, capsys, always_fails):
    cfg = tiny_config(tmp_path, method=always_fails)
    code = cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    full = "RuntimeError: boom: no map for image batch of 4: see the cause"
    assert f"method '{always_fails}' failed on every (image, target) of model 'harbor:contextual' (8 of them); the first failure: {full}" in captured.err
    footer = build(tmp_path / "tiny").skipped
    assert footer == {f"method '{always_fails}' failed: {full}": 8}  # the whole reason, not cut at ':'
    assert f"8 × method '{always_fails}' failed: {full}" in captured.out
