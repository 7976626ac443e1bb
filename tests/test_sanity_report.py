"""The sanity table, verdicts and cascading figure from sanity rows alone (rows built with
bench.sanity.rows, values chosen so every cell is known by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report.sanity import FAIL_ABOVE, cascade_figure, render_markdown, render_text, summarise, table_frame
from bench.sanity.rows import KEY, class_sensitivity_rows, random_target_rows, similarity_rows

LAYERS = ["fc", "block3", "block2", "block1"]


def _jobs(n: int, model: str = "m") -> list[dict]:
    return [{"model": model, "sample": i, "image_id": f"img{i}", "target": "boat", "output": 3} for i in range(n)]


def _rows() -> pd.DataFrame:
    jobs = _jobs(6)
    rows = []
    for step, layer in enumerate(LAYERS, 1):
        falling = [1.0 - 0.2 * step + 0.01 * i for i in range(6)]  # last step: 0.2 .. 0.25
        rows += similarity_rows(jobs, "gradient", "cascading", step, layer, {"spearman_abs": falling, "ssim_abs": falling})
        rows += similarity_rows(jobs, "center", "cascading", step, layer, {"spearman_abs": [1.0] * 6, "ssim_abs": [1.0] * 6})
        rows += similarity_rows(jobs, "uniform", "cascading", step, layer, {"spearman_abs": [math.nan] * 6, "ssim_abs": [1.0] * 6})
        rows += similarity_rows(jobs, "gradient", "independent", step, layer, {"spearman_abs": [0.5] * 6, "ssim_abs": [0.5] * 6})
    rows += random_target_rows(jobs, "gradient", [7] * 6, {"spearman_abs": [0.3] * 6}, {"pointing_game": [1.0] * 6}, {"pointing_game": [0.0, 1.0] * 3})
    pairs = ([0, 1], [1, 0])
    two = [dict(j, image_id="pair", target=t) for j, t in zip(_jobs(2), ("dog", "cat"))]
    rows += class_sensitivity_rows(two, "gradient", pairs, {"pointing_own": [1.0, 1.0], "pointing_other": [0.0, 1.0], "mass_own": [0.6, 0.5], "mass_other": [0.1, 0.3]})
    return pd.DataFrame(rows)


def test_rows_carry_their_key():
    df = _rows()
    assert set(KEY) <= set(df.columns)
    assert not df.duplicated(list(KEY)).any()
    cs = df[df.test == "class_sensitivity"]
    assert cs["other"].tolist() == ["cat", "dog"]
    rt = df[df.test == "random_target"]
    assert {"pointing_game", "random:pointing_game", "random_output"} <= set(rt.columns)
    with pytest.raises(ValueError, match="randomisation tests"):
        similarity_rows(_jobs(1), "x", "random_target", 1, "fc", {})


def test_verdicts_and_cells_by_hand():
    table = summarise(_rows(), n_resamples=500)
    verdict = {r.method: (r.similarity, r.fails) for r in table.verdicts.itertuples()}
    # Gradient's last cascading step: 0.2 + 0.01 * i, mean 0.225: passes.
    assert verdict["gradient"][0] == pytest.approx(0.225)
    assert verdict["gradient"][1] is False
    assert verdict["center"] == (1.0, True)  # unchanged maps: fails
    assert math.isnan(verdict["uniform"][0]) and verdict["uniform"][1] is None  # undefined
    cells = table.cells.set_index(["method", "quantity"])
    assert cells.loc[("gradient", "random_target:spearman_abs"), "estimate"] == pytest.approx(0.3)
    assert cells.loc[("gradient", "class:pointing_gap"), "estimate"] == pytest.approx(0.5)  # (1 - 0 + 1 - 1) / 2
    assert cells.loc[("gradient", "class:mass_gap"), "estimate"] == pytest.approx(0.35)  # (0.5 + 0.2) / 2
    low, high = cells.loc[("gradient", "randomised:spearman_abs"), ["low", "high"]]
    assert 0.2 <= low <= 0.225 <= high <= 0.25
    assert table.steps == {"m": LAYERS}
    curve = table.curves[(table.curves.method == "gradient") & (table.curves["mode"] == "cascading") & (table.curves.measure == "spearman_abs")]
    assert curve.sort_values("step")["estimate"].to_numpy() == pytest.approx([0.825, 0.625, 0.425, 0.225])


def test_rendering_and_figure():
    table = summarise(_rows(), n_resamples=200)
    frame = table_frame(table)
    checks = dict(zip(frame["method"], frame["randomisation check"]))
    assert checks == {"gradient": "pass", "center": "FAIL", "uniform": "n/a"}
    text = render_text(table)
    assert f"> {FAIL_ABOVE:g}" in text and "1 fc, 2 block3" in text
    assert render_markdown(table).count("\n") == 2 + 3
    fig = cascade_figure(table)
    assert fig is not None and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["trained", *LAYERS]
    lines = {line.get_label().strip(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert np.allclose(lines["gradient"].get_ydata(), [1.0, 0.825, 0.625, 0.425, 0.225])
    from bench.report.figures import png_bytes

    assert png_bytes(fig)[:4] == b"\x89PNG"
    assert cascade_figure(summarise(pd.DataFrame())) is None
