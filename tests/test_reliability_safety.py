"""Nothing a benchmark reads runs code, except a plug-in the user names.

- Weights load with ``torch.load(..., weights_only=True)`` only; a weights file that carries
  code is refused before the code runs.
- No ``eval``/``exec``/pickle-style loader anywhere in the package; configs are TOML data.
- Code is imported only from fixed module names, the entry-point groups, or an explicit
  ``python:package.module:factory`` model spec; a name in a config is never imported.
- Archives extract through a filter that refuses links, absolute paths and ``..``.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bench"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Where dynamic imports may happen, and why.
DYNAMIC_IMPORTS = {
    "cli/__init__.py",  # the fixed list of subcommand modules
    "models/custom.py",  # python:package.module:factory, a spec the user writes
    "models/weights.py",  # import_optional: fixed module names of optional model packages
    "cli/listing.py",  # `groundbench methods`: whether the fixed adapter packages import here
    "provenance.py",  # versions only of the fixed package list's members that import here
}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    # A chain on a call or subscript (``model.to(...).eval()``) is a method, not a builtin.
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")
    return ".".join(reversed(parts))


def _trees():
    assert len(SOURCES) > 20
    for path in SOURCES:
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(path))


def test_every_torch_load_is_weights_only():
    found = 0
    for rel, tree in _trees():
        for call in _calls(tree):
            if _dotted(call.func) == "torch.load":
                found += 1
                kw = {k.arg: k.value for k in call.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                    f"bench/{rel}:{call.lineno}: torch.load without weights_only=True"
                )
    assert found >= 2  # the harbor cache and file:/hub weights


def test_no_code_evaluating_calls_in_the_package():
    banned = {
        "eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "marshal.loads",
        "dill.load", "cloudpickle.load", "yaml.load", "yaml.unsafe_load", "torch.jit.load",
        "shelve.open", "runpy.run_path", "runpy.run_module",
    }
    for rel, tree in _trees():
        for call in _calls(tree):
            name = _dotted(call.func)
            assert name not in banned, f"bench/{rel}:{call.lineno}: {name}()"
            if name in ("np.load", "numpy.load"):
                for k in call.keywords:
                    assert not (k.arg == "allow_pickle" and getattr(k.value, "value", False)), f"bench/{rel}:{call.lineno}"


def test_dynamic_imports_only_where_listed():
    users = set()
    for rel, tree in _trees():
        for call in _calls(tree):
            if _dotted(call.func) in ("importlib.import_module", "import_module", "importlib.__import__"):
                users.add(rel)
    assert users == DYNAMIC_IMPORTS


def test_config_loading_never_evaluates(tmp_path):
    text = (PACKAGE / "config.py").read_text()
    assert "tomllib.loads" in text
    for rel, tree in _trees():
        if rel == "config.py":
            names = {_dotted(c.func) for c in _calls(tree)}
            assert not names & {"eval", "exec", "literal_eval", "ast.literal_eval"}


@pytest.fixture
def trap_module(tmp_path, monkeypatch):
    """An importable module that leaves a marker file when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "gb_trap_module.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Thing: pass\ndef factory(**kw): return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("gb_trap_module", None)


def test_registry_names_are_never_imported(trap_module):
    from bench.data.registry import DATASETS
    from bench.methods import METHODS
    from bench.metrics import METRICS
    from bench.models.base import MODEL_ADAPTERS

    for registry in (METHODS, METRICS, DATASETS, MODEL_ADAPTERS):
        for name in ("gb_trap_module", "gb_trap_module:Thing", "gb_trap_module.Thing"):
            with pytest.raises(KeyError):
                registry.get(name)
    assert not trap_module.exists()


def test_an_explicit_python_spec_is_the_one_way_to_import_user_code(trap_module):
    from bench.models import load_model

    with pytest.raises((TypeError, ValueError)):  # imported on request, then rejected
        load_model("python:gb_trap_module:factory")
    assert trap_module.exists()


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_weights_file_carrying_code_is_refused_before_it_runs(tmp_path):
    from bench.models.weights import read_state_dict

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    import torch

    torch.save({"weight": _Payload(str(marker))}, path, pickle_protocol=2)
    with pytest.raises(ValueError, match=r"evil\.pt with torch\.load\(weights_only=True\)"):
        read_state_dict(path, what="test")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: _tar([_member("ok.txt"), _member("../escape.txt")], {"ok.txt": b"a", "../escape.txt": b"b"}), "path traversal"),
        (lambda: _tar([_member("ok.txt"), _member("/abs.txt")], {"ok.txt": b"a", "/abs.txt": b"b"}), "absolute path"),
        (lambda: _tar([_member("ok.txt"), _member("link", tarfile.SYMTYPE, "/etc/passwd")], {"ok.txt": b"a"}), "is a link"),
        (lambda: _tar([_member("ok.txt"), _member("hard", tarfile.LNKTYPE, "ok.txt")], {"ok.txt": b"a"}), "is a link"),
    ],
)
def test_unsafe_tar_is_refused_and_nothing_is_written(tmp_path, build, message):
    from bench.data.fetch import FetchError, safe_extract

    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(build())
    dest = tmp_path / "out" / "inner"
    with pytest.raises(FetchError, match=message):
        safe_extract(archive, dest)
    assert not (tmp_path / "out" / "escape.txt").exists()
    assert not list(dest.rglob("*"))


def test_unsafe_zip_is_refused(tmp_path):
    from bench.data.fetch import FetchError, safe_extract

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", b"a")
        zf.writestr("../../escape.txt", b"b")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    with pytest.raises(FetchError, match="path traversal"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.txt")) and not (tmp_path.parent / "escape.txt").exists()
