"""One direction of data flow (docs/design.md, "Layers"): no module of ``bench`` imports from a
higher layer, function-level imports included, and none reaches into another module's private
names (``from bench.x import _y`` or ``x._y``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# Lowest first. A module may import its own layer and the ones below it.
LAYERS = (
    ("foundation", ("bench", "bench.registry", "bench.results", "bench.provenance", "bench.sharding", "bench.maps_io", "bench.host_allocator", "bench.map_files", "bench.density")),
    ("data", ("bench.data",)),
    ("models", ("bench.models",)),
    ("methods", ("bench.methods",)),
    ("interventions", ("bench.interventions",)),
    ("metrics", ("bench.metrics",)),
    ("sanity", ("bench.sanity",)),
    ("config", ("bench.config",)),
    ("engine", ("bench.batching", "bench.scoring", "bench.ceiling", "bench.engine", "bench.saved_maps", "bench.merge", "bench.sanity.scorer", "bench.reliance")),
    ("report", ("bench.report",)),
    ("perf", ("bench.perf",)),
    ("cli", ("bench.cli", "bench.__main__", "bench.api")),
)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = rank, len(p)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS (and to docs/design.md)")
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(BENCH.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every bench import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "bench":
            names = [a.name for a in node.names]
            if node.module == "bench":
                out += [(f"bench.{n}", [], node.lineno) for n in names if n != "__version__"]
                out.append(("bench", [n for n in names if n == "__version__"], node.lineno))
            else:
                out.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "bench"]
    return out


MODULES = sorted(BENCH.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_no_module_imports_from_a_higher_layer_or_a_private_name(path):
    me = module_name(path)
    mine = layer_of(me)
    for target, names, line in imports(path):
        if me == "bench" and target == "bench.api":
            continue  # the package's __getattr__ hands out the notebook API (docs/design.md, "Layers")
        assert layer_of(target) <= mine, (
            f"{me} (layer {LAYERS[mine][0]}) imports {target} (layer {LAYERS[layer_of(target)][0]}) "
            f"at line {line}: data flows one way"
        )
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private or target == me, f"{me} imports private {private} from {target} at line {line}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BENCH.parent)))
def test_no_module_reaches_into_another_modules_privates(path):
    """``engine._score_batch`` and the like: an attribute of an imported bench module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            aliases |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("bench")}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            raise AssertionError(f"{module_name(path)} line {node.lineno}: {node.value.id}.{node.attr} is another module's private name")


def test_every_layer_is_documented():
    design = (BENCH.parent / "docs" / "design.md").read_text(encoding="utf-8")
    for name, prefixes in LAYERS:
        for p in prefixes:
            if p != "bench":
                assert f"`{p.replace('bench.', '', 1)}" in design or f"`{p}" in design, f"docs/design.md does not place {p}"
