"""``report.html``: one self-contained file comparing methods across one or more runs and models.

Everything is inline: the style sheet, the figures (base64 PNG ``data:`` URIs); there is no
script and no reference to anything outside the file, so it opens offline, in a mail client or
an archive, years later. Per run it shows the leaderboard tables (per subset, per class in
collapsible sections), the figures, the model facts and the provenance (package versions,
device, git commit, config and data hashes, the resolved config). With several runs a
comparison table and chart across runs come first.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from bench import __version__, results
from bench.report import render
from bench.report.figures import RenderedFigure, bar_chart, png_bytes
from bench.report.leaderboard import Leaderboard


@dataclass
class RunReport:
    path: Path
    name: str
    lb: Leaderboard
    by_class: pd.DataFrame | None
    figures: list[RenderedFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    models: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_parts(cls, path: Path, lb: Leaderboard, by_class, figures, notes) -> "RunReport":
        path = Path(path)
        prov_file = path / results.PROVENANCE
        config_file = path / results.CONFIG
        models_file = path / results.MODELS
        return cls(
            path=path,
            name=lb.title or path.name,
            lb=lb,
            by_class=by_class,
            figures=list(figures),
            notes=list(notes),
            provenance=json.loads(prov_file.read_text()) if prov_file.exists() else {},
            config_text=config_file.read_text() if config_file.exists() else "",
            models=json.loads(models_file.read_text()) if models_file.exists() else {},
        )

    @classmethod
    def load(cls, path: Path, *, confidence: float = 0.95, n_resamples: int = 2000, examples: int = 4, allow_code: bool = False) -> "RunReport":
        """Build everything from a results directory's files: leaderboard and breakdown from the
        rows (bootstrap seeded with the run's seed), figures rendered afresh. If the overlays
        cannot be drawn here (dataset or model absent) but the run saved ``figures/overlays.png``,
        that file is used."""
        from bench.report.breakdown import load_class_cells, run_seed
        from bench.report.figures import run_figures
        from bench.report.leaderboard import build

        path = Path(path)
        seed = run_seed(path)
        lb = build(path, confidence=confidence, n_resamples=n_resamples, seed=seed)
        by_class = load_class_cells(path, confidence=confidence, n_resamples=n_resamples, seed=seed)
        figs, notes = run_figures(lb, path, by_class, examples=examples, allow_code=allow_code)
        saved = sorted((path / "figures").glob("overlays*.png"), key=lambda p: (len(p.name), p.name))
        if examples > 0 and not any(f.name.startswith("overlays") for f in figs) and saved:
            figs[:0] = [
                RenderedFigure(p.stem, f"Overlays as the run drew them (figures/{p.name}); they could not be redrawn here.", p.read_bytes())
                for p in saved
            ]
            notes = [n for n in notes if not n.startswith("overlays:")]
        return cls.from_parts(path, lb, by_class, figs, notes)


# ---------------------------------------------------------------------------------------------


def _names(runs: Sequence[RunReport]) -> list[str]:
    """Run names, made unique with their parent folder where two runs share a name."""
    names = [r.name for r in runs]
    out = []
    for r in runs:
        name = r.name if names.count(r.name) == 1 else f"{r.path.parent.name}/{r.name}"
        while name in out:
            name += "'"
        out.append(name)
    return out


def _anchor(text: str) -> str:
    return "run-" + "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


def _img(fig: RenderedFigure, alt: str) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    # Overlay grids carry their panels' boxes, so that a browser can measure the panels' size.
    panels = f' class="overlay" data-panels="{html.escape(json.dumps(fig.panels))}"' if fig.panels else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{panels}>'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs if v not in (None, "", {})
    )
    return f'<table class="prov">{body}</table>'


def provenance_html(run: RunReport) -> str:
    prov = run.provenance
    ident = prov.get("identity", {})
    env = prov.get("environment", {})
    pairs: list[tuple[str, Any]] = [
        ("results directory", str(run.path)),
        ("started (UTC)", prov.get("started_utc")),
        ("groundbench", ident.get("packages", {}).get("groundbench")),
        ("git commit", ident.get("git_commit")),
        ("python", ident.get("python")),
        ("torch", ident.get("torch")),
        ("device", env.get("device")),
        ("device name", env.get("device_name")),
        ("CUDA", env.get("cuda")),
        ("cuDNN", env.get("cudnn")),
        ("torch threads", env.get("torch_threads")),
        ("deterministic algorithms", env.get("deterministic_algorithms")),
        ("platform", env.get("platform")),
        ("seed", ident.get("seed")),
        ("config sha256", ident.get("config_sha256")),
        ("data manifest sha256", ident.get("manifest_sha256")),
        ("shard", prov.get("shard")),
    ]
    known = {"device", "device_name", "cuda", "cudnn", "torch_threads", "deterministic_algorithms", "platform"}
    pairs += [(k, v) for k, v in env.items() if k not in known]
    packages = ident.get("packages", {})
    out = [_kv_table(pairs)]
    if packages:
        out.append("<p><strong>packages</strong>: " + html.escape(", ".join(f"{k} {v}" for k, v in sorted(packages.items()))) + "</p>")
    if not prov:
        out.append("<p>(no provenance.json in this results directory)</p>")
    if run.config_text:
        out.append(f"<details><summary>config.toml</summary><pre>{html.escape(run.config_text)}</pre></details>")
    if run.models:
        out.append(f"<details><summary>models.json (model facts, target layers, method parameters)</summary><pre>{html.escape(json.dumps(run.models, indent=2, sort_keys=True))}</pre></details>")
    return "\n".join(out)


def comparison_table(runs: Sequence[RunReport], names: list[str], subset: str = "all") -> tuple[render.Table, dict[str, dict[str, Any]]]:
    """All runs' cells of one subset in one table keyed by (run, model, method); marks are each
    run's own (ranks compare methods within a run and model)."""
    parts, metas = [], {}
    for run, name in zip(runs, names):
        if run.lb.cells.empty:
            continue
        cells = run.lb.cells[run.lb.cells.subset == subset]
        parts.append(render.mark(cells).assign(run=name))
        for k, v in run.lb.metrics.items():
            metas.setdefault(k, v)
    cells = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    table = render.make_table(cells, ["run", "model", "method"], list(metas), anchor=f"compare-{subset}", title=f"All runs ({subset})") if parts else render.Table(f"compare-{subset}", "All runs", ["run", "model", "method"], [], [])
    return table, metas


def comparison_chart(runs: Sequence[RunReport], names: list[str]) -> RenderedFigure | None:
    parts, metas = [], {}
    for run, name in zip(runs, names):
        if run.lb.cells.empty:
            continue
        cells = run.lb.cells[run.lb.cells.subset == "all"].copy()
        cells["model"] = [f"{name} · {m}" for m in cells["model"]]
        parts.append(cells)
        for k, v in run.lb.metrics.items():
            metas.setdefault(k, v)
    if not parts:
        return None
    lb = Leaderboard(pd.concat(parts, ignore_index=True), metas, confidence=runs[0].lb.confidence, title="all runs")
    fig = bar_chart(lb, "all")
    if fig is None:
        return None
    return RenderedFigure("compare_bars", "Every run side by side: estimate and bootstrap CI per metric; colour: run and model; star: rank 1 within its run and model.", png_bytes(fig))


def render_report(runs: Sequence[RunReport], title: str = "groundbench report") -> str:
    names = _names(runs)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append(
        f'<p class="legend">Generated by groundbench {html.escape(__version__)} at {html.escape(generated)} from '
        f"{len(runs)} results director{'y' if len(runs) == 1 else 'ies'}. Every number is recomputed from the runs' score rows.</p>"
    )
    nav = []
    if len(runs) > 1:
        nav.append('<li><a href="#comparison">Comparison across runs</a></li>')
    nav += [f'<li><a href="#{_anchor(n)}">{html.escape(n)}</a></li>' for n in names]
    body.append(f"<nav><ul>{''.join(nav)}</ul></nav>")
    if len(runs) > 1:
        table, metas = comparison_table(runs, names)
        body.append('<section id="comparison"><h2>Comparison across runs</h2>')
        body.append(f'<p class="legend">{html.escape(render.legend(runs[0].lb))} Ranks compare methods within one run and model.</p>')
        body.append(render.html_table(table, metas) if table.rows else "<p>(no rows)</p>")
        chart = comparison_chart(runs, names)
        if chart is not None:
            body.append(_img(chart, "comparison bar chart across runs"))
        body.append("</section>")
    for run, name in zip(runs, names):
        anchor = _anchor(name)
        body.append(f'<section id="{anchor}"><h2>Run: {html.escape(name)}</h2>')
        body.append("<h3>Leaderboard</h3>")
        body.append(render.html_tables(run.lb, run.by_class, level=4, anchor_prefix=f"{anchor}-"))
        body.append("<h3>Figures</h3>")
        for fig in run.figures:
            body.append(_img(fig, f"{name}: {fig.name}"))
        if not run.figures:
            body.append("<p>(no figures)</p>")
        if run.notes:
            body.append('<ul class="meta">' + "".join(f"<li>{html.escape(n)}</li>" for n in run.notes) + "</ul>")
        body.append("<h3>Provenance</h3>")
        body.append(provenance_html(run))
        body.append("</section>")
    return render.html_document(title, body)


def write_report(paths: Sequence[Path], out: Path, *, title: str | None = None, confidence: float = 0.95, examples: int = 4, allow_code: bool = False) -> Path:
    runs = [RunReport.load(Path(p), confidence=confidence, examples=examples, allow_code=allow_code) for p in paths]
    if title is None:
        title = "groundbench report: " + ", ".join(_names(runs))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(out, render_report(runs, title))
    return out
