"""Packaging: the LICENSE file matches the declared license, classifiers and project URLs are
there, and each optional-integration extra installs what its adapter imports.

The extras are checked against a real import of each adapter: a subprocess records every
top-level module the adapter pulls in, maps it to its distribution, and the distribution must
be in what installing the extra brings (the extra's requirements and theirs, from the installed
packages' metadata). An extra whose package is not installed here (timm, torchvision: their
wheels pin a torch build) is checked for its declared requirement only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_license_file_matches_the_declared_license():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == {"text": "Apache-2.0"}
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "License :: OSI Approved :: Apache Software License" in PROJECT["classifiers"]


def test_classifiers_agree_with_requires_python():
    classifiers = PROJECT["classifiers"]
    assert PROJECT["requires-python"] == ">=3.11"
    versions = [c.rsplit(" ", 1)[-1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions and all(tuple(map(int, v.split("."))) >= (3, 11) for v in versions)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions  # the one CI tests
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)


def test_project_urls():
    urls = PROJECT["urls"]
    assert {"Homepage", "Repository", "Issues", "Documentation"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


EXTRAS = {"captum": "captum", "gradcam": "grad-cam", "timm": "timm", "torchvision": "torchvision"}


def _names(reqs: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in reqs}


@pytest.mark.parametrize("extra,package", sorted(EXTRAS.items()))
def test_each_integration_has_an_extra_naming_its_package(extra, package):
    assert package in _names(PROJECT["optional-dependencies"][extra])


def test_timm_extra_brings_torchvision():
    # timm imports torchvision; its torch pin is the documented reason these extras need care.
    assert "torchvision" in _names(PROJECT["optional-dependencies"]["timm"])


def _closure(reqs: list[str]) -> set[str]:
    """Distributions installing ``reqs`` brings, following installed packages' metadata
    (requirements behind an extra marker are not followed)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in reqs]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in requires(name) or []]
        except PackageNotFoundError:
            pass
    return seen


# Runs in a subprocess: import the adapter, build one method class, print the third-party
# top-level modules that appeared. A third argument (a JSON list) hides those top-level packages,
# so that an optional import (captum's ``try: import IPython``) can be told from a required one. pytorch_grad_cam imports torchvision for helpers the CAM
# classes never call; where torchvision does not import, a stand-in module records it.
PROBE = r"""
import importlib, json, sys, types
before = set(sys.modules)
family, name = sys.argv[1], sys.argv[2]
blocked = set(json.loads(sys.argv[3])) if len(sys.argv) > 3 else set()


class Blocked:
    # Makes the listed top-level packages look uninstalled, as on a machine with only the extra.
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the probe)", name=fullname)
        return None


sys.meta_path.insert(0, Blocked())
stub = []
if family == "pytorch_grad_cam":
    try:
        import torchvision  # noqa: F401
    except Exception:
        stub.append("torchvision")
        for mod in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops"]:
            sys.modules[mod] = types.ModuleType(mod)
        for attr in ("Compose", "Normalize", "ToTensor"):
            setattr(sys.modules["torchvision.transforms"], attr, None)
        sys.modules["torchvision.transforms.functional"].resize = None
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
        sys.modules["torchvision.ops"].box_iou = None
import bench.methods.adapters as adapters
base = {m.split(".")[0] for m in set(sys.modules)}
make = {"captum": adapters.captum_method, "pytorch_grad_cam": adapters.pytorch_grad_cam_method}[family]
make(name)
new = {m.split(".")[0] for m in set(sys.modules) - before}
# Modules with no file are run-time objects (cython_runtime), not installed packages.
real = {m for m in new if getattr(sys.modules.get(m), "__file__", None) or m in stub}
third = sorted(m for m in real if m not in sys.stdlib_module_names and not m.startswith("_") and m != "bench")
print(json.dumps({"modules": third, "stubbed": stub}))
"""


def _probe(family: str, name: str, hidden: list[str] = ()) -> dict:
    argv = [sys.executable, "-c", PROBE, family, name] + ([json.dumps(list(hidden))] if hidden else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    what = f" with {list(hidden)} hidden" if hidden else ""
    assert proc.returncode == 0, f"{family}:{name} fails to build{what}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _outside(modules: list[str], brought: set[str]) -> dict[str, list[str]]:
    """Top-level modules whose distributions are not among ``brought``."""
    dists = packages_distributions()
    outside = {}
    for mod in modules:
        names = {canonicalize_name(d) for d in dists.get(mod, [])} or {canonicalize_name(mod)}
        if not names & brought:
            outside[mod] = sorted(names)
    return outside


@pytest.mark.parametrize("extra,family,name,module", [
    ("captum", "captum", "IntegratedGradients", "captum"),
    ("gradcam", "pytorch_grad_cam", "GradCAM", "pytorch_grad_cam"),
])
def test_extra_installs_what_the_adapter_imports(extra, family, name, module):
    pytest.importorskip(module if module != "pytorch_grad_cam" else "ttach", reason=f"{module} not installed")
    found = _probe(family, name)
    core = _closure(PROJECT["dependencies"])
    brought = _closure(PROJECT["optional-dependencies"][extra]) | core
    outside = _outside(found["modules"], brought)
    if outside:
        # Packages installed here but not brought by the extra (IPython on a system Python) may be
        # optional imports: the adapter must then work with them hidden, importing nothing else
        # from outside the extra.
        again = _probe(family, name, hidden=sorted(outside))
        still = _outside(again["modules"], brought)
        assert not still, f"extra [{extra}] does not bring {still} that {family}:{name} imports"
        found = again
    # The adapter's own package is among what it imports, and comes from the extra, not core.
    assert module in found["modules"]
    assert canonicalize_name(EXTRAS[extra]) in brought - core


def test_the_probe_fails_when_a_required_package_is_hidden():
    # The hiding that tells optional imports from required ones must be able to fail.
    pytest.importorskip("captum", reason="captum not installed")
    argv = [sys.executable, "-c", PROBE, "captum", "IntegratedGradients", json.dumps(["captum"])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "hidden by the probe" in proc.stderr
