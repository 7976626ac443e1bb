"""Figures: which ones apply, what they draw, and that the overlay maps are the engine's maps."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import examples, figures
from bench.report.leaderboard import Leaderboard, build, load_results

from report_support import tiny_run


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def _iou_metrics(thresholds=(0.1, 0.3, 0.5, 0.7)):
    out = {f"iou@{t}": {"name": "iou", "higher_is_better": True, "aggregate": "mean", "params": {"threshold": t, "mode": "max_fraction"}} for t in thresholds}
    out["pointing_game"] = {"name": "pointing_game", "higher_is_better": True, "aggregate": "class_mean", "params": {"tolerance": 15.0}}
    return out


def test_curve_families_find_one_numeric_sweep():
    fams = figures.curve_families(_iou_metrics((0.5, 0.1, 0.3)))
    assert fams == [figures.CurveFamily("iou", "threshold", ((0.1, "iou@0.1"), (0.3, "iou@0.3"), (0.5, "iou@0.5")))]
    # Two columns are not a curve; two parameters varying at once are not one curve.
    assert figures.curve_families(_iou_metrics((0.1, 0.3))) == []
    mixed = _iou_metrics((0.1, 0.3, 0.5))
    mixed["iou@0.5"]["params"]["mode"] = "top_fraction"
    assert figures.curve_families(mixed) == []
    flags = {f"x{i}": {"name": "x", "params": {"flag": i % 2 == 0}} for i in range(3)}
    assert figures.curve_families(flags) == []  # booleans are not a numeric axis


def _synthetic_lb(metrics, models=("m1", "m2"), methods=("gradcam", "center")) -> Leaderboard:
    rows = []
    for mi, model in enumerate(models):
        for k, method in enumerate(methods):
            for j, metric in enumerate(metrics):
                est = 0.2 + 0.1 * mi + 0.05 * k + 0.01 * j
                rows.append(dict(model=model, method=method, subset="all", metric=metric, estimate=est, low=est - 0.05, high=est + 0.05, n=20, n_undefined=0, rank=1 + k, text=""))
    return Leaderboard(pd.DataFrame(rows), metrics, title="synthetic")


def test_bar_chart_one_panel_per_metric():
    metrics = _iou_metrics()
    fig = figures.bar_chart(_synthetic_lb(metrics))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(metrics)
    assert [ax.get_title() for ax in visible][0] == "iou@0.1 ↑ (mean)"
    # two models x two methods = four bars per panel
    assert len(visible[0].patches) == 4
    w, h = _png_size(figures.png_bytes(fig, dpi=60))
    assert w > 300 and h > 200
    assert figures.bar_chart(_synthetic_lb(metrics), subset="difficult") is None


def test_curve_chart_plots_each_method_over_the_sweep():
    metrics = _iou_metrics()
    lb = _synthetic_lb(metrics)
    fam = figures.curve_families(metrics)[0]
    fig = figures.curve_chart(lb, fam)
    assert len(fig.axes) == 2  # one panel per model
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [0.1, 0.3, 0.5, 0.7])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.2, 0.21, 0.22, 0.23])


def test_leakage_vs_reliance_needs_model_reliance_and_a_context_metric():
    metrics = {"leakage": {"name": "leakage", "higher_is_better": False, "aggregate": "mean", "requires": ["masks", "context"], "params": {}}}
    lb = _synthetic_lb(metrics)
    assert figures.leakage_vs_reliance(lb) is None  # no facts
    lb.facts = {"m1": {"reliance": 0.5, "reliance_boat": 0.6}, "m2": {"reliance": 0.02, "reliance_boat": 0.01}}
    fig = figures.leakage_vs_reliance(lb)
    assert len(fig.axes) >= 1
    ax = fig.axes[0]
    xs = sorted(float(x) for line in ax.get_lines() for x in line.get_xdata())
    assert xs[0] == pytest.approx(0.02) and xs[-1] == pytest.approx(0.5)
    by_class = lb.cells.assign(**{"class": "boat"})
    fig2 = figures.leakage_vs_reliance(lb, by_class)
    titles = [a.get_title() for a in fig2.axes]
    assert "leakage: per (model, class)" in titles
    no_context = _synthetic_lb({"pointing_game": _iou_metrics()["pointing_game"]})
    no_context.facts = lb.facts
    assert figures.leakage_vs_reliance(no_context) is None


def test_choose_takes_classes_in_turn_and_prefers_defined_rows():
    rows = []
    spec = [(0, "boat", np.nan), (1, "boat", 0.5), (2, "car", 0.4), (3, "boat", 0.3), (4, "bird", 0.2), (5, "car", 0.1)]
    for sample, cls, leak in spec:
        for method in ("a", "b"):
            rows.append(dict(model="m", method=method, sample=sample, image_id=f"i{sample}", target=cls, leakage=leak))
    df = pd.DataFrame(rows)
    picks = examples.choose(df, ["leakage"], k=4)
    # boat (3 images) first, then car (2), then bird; sample 0 has an undefined leakage.
    assert picks == [(1, "i1", "boat"), (2, "i2", "car"), (4, "i4", "bird"), (3, "i3", "boat")]
    assert examples.choose(df, ["leakage"], k=4) == picks
    partial = df[~((df["sample"] == 1) & (df.method == "b"))]
    assert (1, "i1", "boat") not in examples.choose(partial, ["leakage"], k=4)  # every pair must have scored it


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.getbasetemp())


def test_a_run_writes_every_table_format_and_figure(run_dir):
    for name in ("leaderboard.txt", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "report.html"):
        assert (run_dir / name).stat().st_size > 500, name
    for name in ("overlays", "bars", "leakage_vs_reliance"):
        w, h = _png_size((run_dir / "figures" / f"{name}.png").read_bytes())
        assert w >= 500 and h >= 300
    assert not (run_dir / "figures" / "NOTES.txt").exists()
    md = (run_dir / "leaderboard.md").read_text()
    assert "| harbor:contextual | gradcam |" in md and "### Per class: harbor:object_only" in md


def test_overlays_use_saved_maps_and_recomputed_maps_equal_them(run_dir):
    df, columns = load_results(run_dir)
    chosen = examples.collect(run_dir, df, list(columns), k=3)
    assert len(chosen) == 3 and len({ex.target.label for ex in chosen}) == 3
    pairs = list(dict.fromkeys(zip(df["model"], df["method"])))
    for ex in chosen:
        assert set(ex.maps) == set(pairs) and set(ex.source.values()) == {"saved"}
        assert ex.maps[pairs[0]].shape == tuple(ex.image.shape[-2:])
        key = pairs[0]
        row = df[(df.model == key[0]) & (df.method == key[1]) & (df.image_id == ex.image_id) & (df.target == ex.target.label)].iloc[0]
        assert ex.scores[key]["pointing_game"] == row["pointing_game"]

    # Without saved maps the same samples are recomputed from the run's config: same maps.
    from bench.config import parse_config
    from bench.methods import create_method
    from bench.models import load_model
    import json
    import torch

    from bench.scoring import ModelRun, metric_columns

    cfg = parse_config(json.loads((run_dir / "config.json").read_text()))
    for model_cfg in cfg.models:
        bundle = load_model(model_cfg.name, seed=cfg.seed)
        for m in cfg.methods:
            method = create_method(m.name, **m.params)
            run = ModelRun.for_model(bundle, [(method.label, method)], metric_columns(cfg.metrics), torch.device("cpu"), seed=cfg.seed)
            outs = [int(df[(df.model == bundle.spec) & (df.image_id == ex.image_id) & (df.target == ex.target.label)]["output"].iloc[0]) for ex in chosen]
            again = examples.recompute_maps(run, bundle.preprocess, method.label, chosen, outs)
            for ex, m_again in zip(chosen, again):
                np.testing.assert_allclose(m_again, ex.maps[(bundle.spec, method.label)], rtol=1e-5, atol=1e-6)
            # The class map's max-logit rule picks the output the run recorded.
            picked = examples.recompute_maps(run, bundle.preprocess, method.label, chosen[:1], [None])
            np.testing.assert_allclose(picked[0], chosen[0].maps[(bundle.spec, method.label)], rtol=1e-5, atol=1e-6)


def test_overlay_grid_draws_one_panel_per_pair(run_dir):
    df, columns = load_results(run_dir)
    chosen = examples.collect(run_dir, df, list(columns), k=2)
    pairs = list(dict.fromkeys(zip(df["model"], df["method"])))
    chosen[0].maps[pairs[1]] = np.full_like(chosen[0].maps[pairs[1]], np.nan)
    made = figures.overlay_figures(chosen, pairs, {c: {} for c in columns})
    models = list(dict.fromkeys(m for m, _ in pairs))
    assert [(name, model) for name, model, _ in made] == [("overlays", models[0]), ("overlays_2", models[1])]
    fig = made[0][2]
    methods = [me for mo, me in pairs if mo == models[0]]
    # rows: the image with its ground truth, then one per method; columns: the scenes
    assert len(fig.axes) == 2 * (1 + len(methods))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "invalid map (NaN/Inf)" in texts
    grid = fig.axes[0].get_gridspec()
    assert (grid.nrows, grid.ncols) == (1 + len(methods), 2)
    assert fig.axes[0].get_title() == f"{chosen[0].image_id}\n{chosen[0].target.label}"
    assert [fig.axes[2 * r].get_ylabel() for r in range(1, 1 + len(methods))] == methods
    assert all(fig.axes[2 * r + 1].get_xlabel() for r in range(1, 1 + len(methods)))  # scores under each panel
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "object mask" and any("context" in t for t in legend)
    _png_size(figures.png_bytes(fig, dpi=50))


def _fake_examples(n_examples: int, pairs, size: int = 96) -> list:
    from bench.data.sample import Target
    import torch

    rng = np.random.default_rng(0)
    out = []
    for i in range(n_examples):
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[20:50, 30:60] = True
        ex = examples.Example(i, f"scene{i}", torch.rand(3, size, size, generator=torch.Generator().manual_seed(i)), Target(label="boat", mask=mask))
        for key in pairs:
            ex.maps[key] = rng.random((size, size)).astype(np.float32)
            ex.scores[key] = {"pointing_game": 1.0, "leakage": 0.25}
            ex.source[key] = "saved"
        out.append(ex)
    return out


PAGE_CONTENT_PX = 1280 - 2 * 16 - 2  # the report's body padding and the image border at 1280 px


def test_overlays_of_sixteen_methods_read_at_page_width():
    """The issue's case: 16 methods x 2 models x 4 scenes was one 33-panel strip. Now every
    panel of every figure, shown at the page width of a 1280-pixel window, is >= 150 px wide."""
    methods = [f"method{k}[param={k}]" for k in range(16)]
    pairs = [(model, me) for model in ("harbor:contextual", "harbor:object_only") for me in methods]
    made = figures.overlay_figures(_fake_examples(4, pairs), pairs, {"pointing_game": {}, "leakage": {}})
    assert len(made) == 2
    for _, _, fig in made:
        w, _ = _png_size(figures.png_bytes(fig, dpi=110))
        shown = min(w, PAGE_CONTENT_PX)
        boxes = figures.panel_boxes(fig)
        assert len(boxes) == 4 * 17
        assert min(b[2] for b in boxes) * shown >= 150
    # Many scenes: split into figures of at most OVERLAY_COLUMNS scenes, of even size.
    many = figures.overlay_figures(_fake_examples(7, pairs[:2]), pairs[:2], {"pointing_game": {}})
    assert [fig.axes[0].get_gridspec().ncols for _, _, fig in many] == [4, 3]


def test_leakage_vs_reliance_gives_every_method_its_own_colour_and_marker_and_a_legend_outside():
    metrics = {"leakage": {"name": "leakage", "higher_is_better": False, "aggregate": "mean", "requires": ["masks", "context"], "params": {}}}
    methods = tuple(f"method{k}" for k in range(16))
    lb = _synthetic_lb(metrics, methods=methods)
    lb.facts = {"m1": {"reliance": 0.5, "reliance_boat": 0.6}, "m2": {"reliance": 0.02, "reliance_boat": 0.01}}
    fig = figures.leakage_vs_reliance(lb, lb.cells.assign(**{"class": "boat"}))
    figures.png_bytes(fig, dpi=60)  # lays the figure out
    from matplotlib.colors import to_hex

    styles = [(to_hex(h.get_color()), h.get_marker()) for h in fig.legends[0].legend_handles]
    assert len(styles) == 16 and len(set(styles)) == 16
    assert len({c for c, _ in styles}) == 16  # distinct colours, not only distinct pairs
    renderer = fig.canvas.get_renderer()
    axes_boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible() and ax.lines]
    legends = [fig.legends[0]] + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(a) for a in axes_boxes), "a legend covers an axes"
    # Each method's points carry its own style in the per-model panel too.
    drawn = {(to_hex(line.get_color()), line.get_marker()) for line in fig.axes[0].lines if line.get_marker() not in (None, "None", "")}
    assert set(styles) <= drawn


def test_run_figures_reports_what_it_could_not_draw(run_dir, tmp_path):
    lb = build(run_dir, n_resamples=200)
    broken = tmp_path / "copy"
    broken.mkdir()
    for name in ("scores.jsonl", "columns.json", "models.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    figs, notes = figures.run_figures(lb, broken, examples=2)
    assert {f.name for f in figs} == {"bars", "leakage_vs_reliance"}
    assert len(notes) == 1 and notes[0].startswith("overlays: not drawn (FileNotFoundError") and "config.json" in notes[0]


def test_run_figures_draw_a_curve_instead_of_one_bar_panel_per_threshold(tmp_path):
    metrics = _iou_metrics()
    lb = _synthetic_lb(metrics)
    figs, notes = figures.run_figures(lb, tmp_path, examples=0)
    assert [f.name for f in figs] == ["bars", "curve_iou_threshold"] and notes == []
    bars = figures.bar_chart(lb, "all", [m for m in metrics if not m.startswith("iou@")])
    assert len([ax for ax in bars.axes if ax.get_visible()]) == 1


def test_a_run_with_no_rows_still_writes_its_tables(tmp_path):
    import json

    from bench.report.write import write_tables

    (tmp_path / "scores.jsonl").write_text("")
    (tmp_path / "columns.json").write_text(json.dumps([{"label": "pointing_game", "name": "pointing_game", "higher_is_better": True, "aggregate": "class_mean", "requires": ["masks"], "params": {}}]))
    written = write_tables(build(tmp_path), tmp_path)
    names = {p.name for p in written}
    assert {"leaderboard.txt", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "report.html"} <= names
    assert "no scored rows" in (tmp_path / "leaderboard.md").read_text()
    assert not any(p.suffix == ".png" for p in written)
