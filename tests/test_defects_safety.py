"""Issue 16, item 13: what a config can do. A ``python:`` model spec runs code, so it is refused
unless the command line says ``--allow-code`` (and so is a ``file:`` spec whose ``arch`` is
one); nothing runs before the refusal. ``--no-progress`` also silences the harbor nets'
training bars. (An archive member that would overwrite ``.downloads/fetched.json`` is in
tests/test_data_fetch.py.)"""

from __future__ import annotations

import json

import pytest

from bench.cli import main as cli_main
from bench.config import ConfigError, load_config
from defects_support import tiny_config

SPECS = {
    "os_system": 'spec = "python:os:system"\nkwargs = {{ command = "touch {marker}" }}',
    "getoutput": 'spec = "python:subprocess:getoutput"\nkwargs = {{ cmd = "touch {marker}" }}',
    "file_arch": 'spec = "file:{weights}"\narch = "python:os:system"\narch_params = {{ kwargs = {{ command = "touch {marker}" }} }}',
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_a_python_spec_is_refused_without_allow_code_and_runs_nothing(tmp_path, capsys, case):
    marker = tmp_path / "PWNED"
    (tmp_path / "w.pt").write_bytes(b"")
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('spec = "harbor:contextual"', SPECS[case].format(marker=marker, weights=tmp_path / "w.pt")))
    with pytest.raises(ConfigError, match=r"imports a Python module and calls a function of it, which can run any code.*--allow-code"):
        load_config(cfg)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "--allow-code" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "r").exists()


def test_allow_code_is_the_explicit_opt_in(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('spec = "harbor:contextual"', 'spec = "python:test_models_custom:build_tiny"'))
    assert load_config(cfg, allow_code=True).models[0].name == "python:test_models_custom:build_tiny"


def test_a_results_folder_never_rebuilds_a_code_model_for_a_report_unless_allowed(tmp_path):
    from bench.report.examples import _config

    cfg = load_config(tiny_config(tmp_path))
    data = cfg.to_dict()
    data["models"] = [{"spec": "python:os:system", "kwargs": {"command": f"touch {tmp_path / 'PWNED'}"}}]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="--allow-code"):
        _config(tmp_path)
    assert _config(tmp_path, allow_code=True).models[0].name == "python:os:system"
    assert not (tmp_path / "PWNED").exists()


def test_no_progress_silences_the_training_bars(tmp_path, monkeypatch):
    import bench.models.harbor as harbor

    seen = []
    real_build = harbor.build

    def build(cfg, progress=True):
        seen.append(progress)
        return real_build(cfg, progress=progress)

    monkeypatch.setattr(harbor, "build", build)
    cfg = tiny_config(tmp_path)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    assert seen and not any(seen)  # the run, and the overlays that rebuild the net
