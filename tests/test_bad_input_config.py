"""An invalid config stops before anything runs, with a message naming the file and the
problem (and a did-you-mean where a name is close); results already on disk are untouched.

Also: a config is TOML data, never evaluated.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from bench.cli import main as cli_main
from bench.config import ConfigError, load_config

VALID = """
name = "cfg"
seed = 0
device = "cpu"
batch_size = 8

[dataset]
name = "harbor"
split = "test"
n = 8
seed = 1
size = 96

[[models]]
spec = "harbor:contextual"

[[methods]]
name = "gradcam"

[[metrics]]
name = "pointing_game"
tolerance = 6.0
"""

# (what to change: (old, new) text replacements, regex the message must match)
CASES = {
    "unknown_method": (('name = "gradcam"', 'name = "gradcamm"'),
                       r"method 'gradcamm': unknown method 'gradcamm'; did you mean 'gradcam'"),
    "unknown_metric": (('name = "pointing_game"', 'name = "pointing_gme"'),
                       r"metric 'pointing_gme': unknown metric 'pointing_gme'; did you mean 'pointing_game'"),
    "unknown_top_level_key": (("batch_size = 8", "batchsize = 8"),
                              r"unknown key 'batchsize' in the top level; did you mean 'batch_size'\?"),
    "unknown_dataset": (('name = "harbor"', 'name = "harbour"'),
                        r"\[dataset\]: unknown dataset 'harbour'; did you mean 'harbor'\?"),
    "unknown_dataset_key": (('split = "test"', 'splt = "test"'),
                            r"unknown key 'splt' in \[dataset\] \(loader 'harbor'\); did you mean 'split'\?"),
    "unknown_model_adapter": (('spec = "harbor:contextual"', 'spec = "harbr:contextual"'),
                              r"models\[0\] spec 'harbr:contextual': unknown model adapter 'harbr'; did you mean 'harbor' or 'harbor_vit'\?"),
    "unknown_method_parameter": (('name = "gradcam"', 'name = "gradcam"\nlayr = "features"'),
                                 r"method 'gradcam' has no parameter 'layr'; did you mean 'layer'\?"),
    "unknown_metric_parameter": (("tolerance = 6.0", "tolerence = 6.0"),
                                 r"metric 'pointing_game'.*'tolerence'"),
    "wrong_type_scalar": (("batch_size = 8", 'batch_size = "8"'), r"'batch_size' must be int, got '8'"),
    "wrong_type_bool_for_int": (("seed = 0", "seed = true"), r"'seed' must be int, got True"),
    "wrong_type_method_parameter": (('name = "gradcam"', 'name = "gradcam"\nrelu = 1'),
                                    r"method 'gradcam' parameter 'relu' must be bool, got 1"),
    "wrong_type_table": (('[dataset]\nname = "harbor"\nsplit = "test"\nn = 8\nseed = 1\nsize = 96', 'dataset = "harbor"'),
                         r"\[dataset\] must be a table, got str"),
    "bad_batch_size": (("batch_size = 8", "batch_size = 0"), r"'batch_size' must be at least 1"),
    "bad_device": (('device = "cpu"', 'device = "cpuu"'), r"'device' must be auto, cpu, cuda, cuda:N or mps, got 'cpuu'"),
    "no_methods": (('[[methods]]\nname = "gradcam"\n', ""), r"need at least one entry in \[\[methods\]\]"),
    "duplicate_method": (('[[methods]]\nname = "gradcam"\n', '[[methods]]\nname = "gradcam"\n[[methods]]\nname = "gradcam"\n'),
                         r"method 'gradcam' appears twice; give one a 'label'"),
    "not_toml": (('seed = 0', 'seed = = 0'), r"not valid TOML"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished run of the valid config, and its folder."""
    base = tmp_path_factory.mktemp("config-run")
    cfg = base / "cfg.toml"
    cfg.write_text(VALID)
    assert cli_main(["run", str(cfg), "--out", str(base / "results"), "--no-progress"]) == 0
    return cfg, base / "results" / "cfg"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_config_is_refused_with_a_clear_message(case, finished, tmp_path, capsys):
    (old, new), pattern = CASES[case]
    assert old in VALID
    path = tmp_path / "cfg.toml"
    path.write_text(VALID.replace(old, new, 1))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))  # names the file

    # Through the command line, into the folder of an earlier run of the same name: exit 2,
    # the message on stderr, and the earlier results byte for byte as they were.
    _, run_dir = finished
    before = _files(run_dir)
    assert cli_main(["run", str(path), "--out", str(run_dir.parent), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err
    assert _files(run_dir) == before


def test_resume_with_a_different_config_is_refused_and_rows_kept(finished, tmp_path, capsys):
    cfg, run_dir = finished
    changed = tmp_path / "cfg.toml"
    changed.write_text(cfg.read_text().replace("tolerance = 6.0", "tolerance = 7.0"))
    before = _files(run_dir)
    assert cli_main(["run", str(changed), "--out", str(run_dir.parent), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "holds results of a different config" in err
    assert f"rows written so far are kept in {run_dir}" in err
    assert _files(run_dir) == before


def test_a_missing_dataset_root_says_so_and_that_nothing_was_written(tmp_path, capsys):
    cfg = tmp_path / "coco.toml"
    cfg.write_text(VALID.replace('name = "cfg"', 'name = "coco-missing"').replace(
        '[dataset]\nname = "harbor"\nsplit = "test"\nn = 8\nseed = 1\nsize = 96',
        f'[dataset]\nname = "coco"\nroot = "{tmp_path / "no-such-coco"}"\nmanifest = ""'))
    assert 'name = "coco"' in cfg.read_text()
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "results"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'no-such-coco'}: COCO root directory not found" in err
    assert "no score rows were written" in err and "kept" not in err


def test_config_values_are_data_never_code(tmp_path):
    marker = tmp_path / "PWNED"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = tmp_path / "cfg.toml"
    path.write_text(VALID.replace('name = "cfg"', f'name = """{payload}"""'))
    with pytest.raises(ConfigError, match="not one folder name"):
        load_config(path)  # data: refused as a run name, never run as code
    path.write_text(VALID.replace('name = "gradcam"', f'name = """{payload}"""'))
    with pytest.raises(ConfigError, match="unknown method"):
        load_config(path)
    path.write_text(VALID.replace('spec = "harbor:contextual"', 'spec = "os:system"'))
    with pytest.raises(ConfigError, match="unknown model adapter 'os'"):
        load_config(path)
    assert not marker.exists()
