"""Plug-ins: an installed distribution adds a method through the entry-point group
``groundbench.methods`` with no change to groundbench, and it runs through the engine.

The distribution is tests/plugin_fixture (a real pyproject with the entry point). Instead of a
slow ``pip install`` the test lays out what installing it leaves on ``sys.path``, the package
and its ``*.dist-info`` (METADATA, entry_points.txt written from the pyproject's table), in a
temporary folder, which is exactly what ``importlib.metadata.entry_points`` reads.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from bench.methods import METHODS, create_method

FIXTURE = Path(__file__).resolve().parent / "plugin_fixture"


def _install(site: Path, dist: str, version: str, entry_points: dict[str, dict[str, str]], package: Path | None):
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if package is not None:
        shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as if no plug-in had been looked up yet; restored afterwards."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    yield METHODS
    for mod in [m for m in sys.modules if m.startswith(("groundbench_plugin_fixture", "broken_plugin"))]:
        del sys.modules[mod]


@pytest.fixture
def plugin_site(tmp_path, monkeypatch, fresh_registry):
    project = tomllib.loads((FIXTURE / "pyproject.toml").read_text())["project"]
    _install(tmp_path, project["name"], project["version"], project["entry-points"],
             FIXTURE / "groundbench_plugin_fixture")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_installed_plugin_is_found_through_the_entry_point(plugin_site):
    assert "edge_energy" in METHODS.names()
    cls = METHODS.get("edge_energy")
    assert cls.__module__ == "groundbench_plugin_fixture"
    assert cls.family == "baseline" and cls.defaults == {"power": 2.0}
    method = create_method("edge_energy", power=1.0)
    assert method.label == "edge_energy[power=1]"
    x = torch.zeros(2, 3, 6, 6)
    x[:, :, :, 3:] = 1.0  # a vertical edge between columns 2 and 3
    maps = method(None, x, torch.tensor([0, 1]))
    assert maps.shape == (2, 6, 6)
    assert torch.equal(maps[:, :, 2], torch.full((2, 6), 3.0)) and maps[:, :, 3:].sum() == 0


def test_plugin_that_is_not_a_method_is_refused_clearly(tmp_path, monkeypatch, fresh_registry):
    pkg = tmp_path / "pkgsrc" / "broken_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("def not_a_method():\n    return 1\n")
    _install(tmp_path, "broken-plugin", "0.1", {"groundbench.methods": {"broken": "broken_plugin:not_a_method"}}, pkg)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="not an AttributionMethod subclass"):
        METHODS.get("broken")


def test_plugin_method_runs_through_the_engine(plugin_site, tmp_path):
    from bench import results
    from bench.config import parse_config
    from bench.engine import run_config

    cfg = parse_config({
        "name": "plugin", "seed": 0, "device": "cpu", "batch_size": 4,
        "dataset": {"name": "harbor", "split": "test", "n": 6, "seed": 1},
        "models": [{"spec": "harbor:contextual"}],
        "methods": [{"name": "edge_energy"}, {"name": "edge_energy", "power": 1.0}, {"name": "center"}],
        "metrics": [{"name": "energy_pointing_game"}],
    }, source="plugin-test")
    out = tmp_path / "run"
    run_config(cfg, out_dir=out, progress=False)
    rows = results.read_rows(out / results.SCORES)
    assert {r["method"] for r in rows} == {"edge_energy", "edge_energy[power=1]", "center"}
    assert all(0.0 <= r["energy_pointing_game"] <= 1.0 for r in rows)
    models = json.loads((out / results.MODELS).read_text())
    described = models["harbor:contextual"]["methods"]
    assert described["edge_energy"]["params"] == {"power": 2.0}
    assert described["edge_energy[power=1]"]["params"] == {"power": 1.0}
