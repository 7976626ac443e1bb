"""What a command prints besides its results (bench/cli/output.py, issue 17):

- warnings of other packages reach stderr once each however often they recur (a flood is made
  the way it happens in a run: a warning filter change per batch resets Python's memory of what
  it has shown), groundbench's own still show, a closing note counts the repeats; none of it
  survives the command;
- the bars pytorch-grad-cam draws inside ScoreCAM / AblationCAM follow ``library_progress``
  (the engine's ``progress``, the CLI's ``--no-progress`` / ``--quiet``), with the real package;
- ``--quiet`` for run, score and merge: a strict, short subset of the normal output, errors
  still shown.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

import bench
from bench.cli import main as cli
from bench.cli.output import command_output
from bench.methods import create_method
from bench.methods.adapters import library_bars_enabled, library_progress

from defects_support import tiny_config
from test_methods_reference import SmallCNN, _import_pgc

CAPTUM_FILE = "/opt/venv/lib/python3.11/site-packages/captum/_utils/gradient.py"
OWN_FILE = str(Path(bench.__file__).resolve().parent / "engine.py")
FLOOD = "Input Tensor 0 did not already require gradients, required_grads has been set automatically."


def _flood(n: int, text: str, filename: str, module: str, category=UserWarning) -> None:
    """``n`` warnings of one text from one line, raised by ``warnings.warn`` in code whose
    module is ``module`` (a frame with that ``__name__``: the package need not be installed) in
    ``filename``, with a warning filter change before each, as code that enters
    ``warnings.catch_warnings()`` per batch makes them: the change resets Python's memory of
    what it has shown (the module's ``__warningregistry__``), so each one is shown again."""
    code = compile(
        "for _ in range(n):\n"
        "    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('ignore', ResourceWarning)\n"
        "    warnings.warn(text, category)\n",
        filename, "exec",
    )
    exec(code, {"__name__": module, "warnings": warnings, "n": n, "text": text, "category": category})


def test_other_packages_warnings_show_once_each_and_groundbench_own_every_time(capsys):
    before_filters, before_show = list(warnings.filters), warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with command_output():
            _flood(5, FLOOD, CAPTUM_FILE, "captum._utils.gradient")
            _flood(3, "numpy copy keyword", "/opt/venv/lib/python3.11/site-packages/pycocotools/mask.py",
                   "pycocotools.mask", DeprecationWarning)
            # A library's warning with stacklevel=2 names groundbench's line; still the library's.
            _flood(3, "non-full backward hook", OWN_FILE, "torch.nn.modules.module")
            _flood(3, "harbor cache is stale", OWN_FILE, "bench.engine")
    err = capsys.readouterr().err
    assert err.count(FLOOD) == 1
    assert err.count("numpy copy keyword") == 1
    assert err.count("non-full backward hook") == 1
    assert err.count("harbor cache is stale") == 3  # groundbench's own: every time it is raised
    assert "note: 8 repeat(s) of 3 warning(s) from other packages were not shown again" in err
    assert warnings.filters == before_filters and warnings.showwarning is before_show


def test_without_the_command_block_the_same_warnings_flood(capsys):
    """The flood is real: the same warnings, outside command_output, reach stderr every time."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(warnings.formatwarning(m, c, f, n, line))
        _flood(5, FLOOD, CAPTUM_FILE, "captum._utils.gradient")
    assert capsys.readouterr().err.count(FLOOD) == 5


def test_quiet_hides_other_packages_warnings_but_not_groundbench_own(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with command_output(quiet=True):
            _flood(4, FLOOD, CAPTUM_FILE, "captum._utils.gradient")
            _flood(2, "harbor cache is stale", OWN_FILE, "bench.engine")
    err = capsys.readouterr().err
    assert FLOOD not in err and "note:" not in err
    assert err.count("harbor cache is stale") == 2


def test_a_real_captum_warning_in_a_loop_reaches_stderr_once(capsys):
    pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model, x = SmallCNN().eval(), torch.randn(2, 3, 16, 16)
    saliency = create_method("captum:Saliency")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with command_output():
            for _ in range(4):
                with warnings.catch_warnings():  # as the COCO loader does per decoded mask
                    warnings.simplefilter("ignore", DeprecationWarning)
                saliency(model, x, torch.tensor([1, 2]))
    err = capsys.readouterr().err
    assert err.count("did not already require gradients") == 1
    assert "note: 3 repeat(s) of 1 warning(s)" in err


def test_library_progress_is_scoped():
    assert library_bars_enabled()
    with library_progress(False):
        assert not library_bars_enabled()
        with command_output(progress=True):
            assert library_bars_enabled()
        with command_output(progress=True, quiet=True):
            assert not library_bars_enabled()
        assert not library_bars_enabled()
    assert library_bars_enabled()


# -- pytorch-grad-cam's own bars -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["ScoreCAM", "AblationCAM"])
def test_pytorch_grad_cam_bars_follow_library_progress(name, capfd):
    pgc = _import_pgc()
    import tqdm

    torch.manual_seed(0)
    model, x = SmallCNN().eval(), torch.randn(2, 3, 16, 16)
    method = create_method(f"pytorch_grad_cam:{name}", layer="features", batch_size=4)
    capfd.readouterr()
    with library_progress(True):
        shown = method(model, x, torch.tensor([1, 2]))
    on = capfd.readouterr().err
    assert "it/s]" in on or "s/it]" in on, f"the package drew no bar to silence: {on!r}"  # the test can fail
    with library_progress(False):
        silent = method(model, x, torch.tensor([1, 2]))
    off = capfd.readouterr()
    assert off.err == "" and off.out == ""
    torch.testing.assert_close(silent, shown)  # the same maps, only the bars are gone
    module = sys.modules[getattr(pgc, name).__module__]
    assert module.tqdm is tqdm  # the library's name is put back after the call


def test_no_progress_run_shows_no_pytorch_grad_cam_bar(tmp_path, capfd, monkeypatch):
    _import_pgc()
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path, n=4, method="pytorch_grad_cam:ScoreCAM", method_params="batch_size = 8")
    capfd.readouterr()
    assert cli(["run", str(config), "--out", "res", "--no-progress"]) == 0
    err = capfd.readouterr().err
    assert "it/s]" not in err and "s/it]" not in err and "%|" not in err, err


# -- --quiet ----------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_quiet_run_prints_only_where_the_results_are(tmp_path, capsys, monkeypatch):
    pytest.importorskip("captum.attr")  # captum:Saliency raises a warning on every batch
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path, n=8, method="captum:Saliency")
    assert cli(["run", str(config), "--out", "res", "--name", "loud"]) == 0
    loud = capsys.readouterr()
    assert cli(["run", str(config), "--out", "res", "--name", "quiet", "--quiet"]) == 0
    quiet = capsys.readouterr()

    assert loud.err.count("did not already require gradients") == 1  # run and overlays: once
    assert "harbor:contextual" in loud.err and "img" in loud.err  # the engine's progress bar
    assert _lines(quiet.out) == [next(line for line in _lines(quiet.out) if line.startswith("results: res/quiet"))]
    assert quiet.err == ""
    loud_lines = [line.replace("res/loud", "res/quiet").split("  (")[0] for line in _lines(loud.out)]
    assert all(line.split("  (")[0] in loud_lines for line in _lines(quiet.out))  # a strict subset
    assert len(_lines(quiet.out)) < len(_lines(loud.out))


def test_quiet_run_still_shows_errors(tmp_path, capsys):
    assert cli(["run", str(tmp_path / "missing.toml"), "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "error:" in out.err and "missing.toml" in out.err


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny run with --save-maps, and the same config run as two shards (engine only)."""
    from bench.config import load_config
    from bench.engine import run_config

    root = tmp_path_factory.mktemp("quiet")
    config = tiny_config(root, n=8, method="center")
    cfg = load_config(config, {"save_maps": True})
    run_config(cfg, out_dir=root / "saved", progress=False)
    for k in range(2):
        run_config(cfg, out_dir=root / "sharded" / f"shard-{k}-of-2", shard=(k, 2), progress=False)
    return root


def test_quiet_score_prints_only_where_the_results_are(saved_run, tmp_path, capsys):
    args = ["score", str(saved_run / "saved"), "--out", str(tmp_path)]
    assert cli([*args, "--name", "loud"]) == 0
    loud = capsys.readouterr()
    assert cli([*args, "--name", "quiet", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert "using " in loud.err and quiet.err == ""
    assert len(_lines(quiet.out)) == 1 and _lines(quiet.out)[0].startswith(f"results: {tmp_path / 'quiet'}")
    assert len(_lines(loud.out)) > 3


def test_quiet_score_still_shows_errors(saved_run, tmp_path, capsys):
    assert cli(["score", str(saved_run / "saved"), "--out", str(tmp_path), "--metric", "no_such_metric", "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "error:" in out.err and "no_such_metric" in out.err


def test_quiet_merge_prints_only_where_the_results_are(saved_run, tmp_path, capsys):
    shards = str(saved_run / "sharded")
    assert cli(["merge", shards, "-o", str(tmp_path / "loud")]) == 0
    loud = capsys.readouterr()
    assert cli(["merge", shards, "-o", str(tmp_path / "quiet"), "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert _lines(quiet.out) == [f"merged 2 shards into {tmp_path / 'quiet'}  (8 rows)"]
    assert quiet.err == ""
    assert _lines(loud.out)[-1] == f"merged 2 shards into {tmp_path / 'loud'}  (8 rows)"
    assert len(_lines(loud.out)) > 3
    assert cli(["merge", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "x"), "--quiet"]) == 1
    failed = capsys.readouterr()
    assert failed.out == "" and "error:" in failed.err
