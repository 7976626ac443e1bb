"""``groundbench methods`` and ``groundbench metrics``: what is registered, with metadata."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "methods",
        help="list attribution methods (family, parameters)",
        description=(
            "List the registered attribution methods with their family, needs and parameters.\n\n"
            "The list ends with the adapter families (captum:NAME, pytorch_grad_cam:NAME) and\n"
            "whether each one's package imports here."
        ),
        epilog=(
            "Examples:\n"
            "  groundbench methods\n"
            "  groundbench methods | grep cam"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=list_methods)
    p = sub.add_parser(
        "metrics",
        help="list metrics (direction, requirements, aggregation)",
        description=(
            "List the registered metrics with their direction, requirements, aggregation and parameters.\n\n"
            "A config's [[metrics]] entry (or score --metric) takes the name and these parameters."
        ),
        epilog=(
            "Examples:\n"
            "  groundbench metrics\n"
            "  groundbench metrics | grep gaze"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=list_metrics)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "-"


def list_methods(args: argparse.Namespace) -> int:
    from bench.methods import METHODS

    rows = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        flags = ",".join(f for f, on in (("grad", cls.needs_grad), ("stochastic", cls.stochastic)) if on) or "-"
        rows.append((name, cls.family, flags, _params(dict(cls.defaults)), getattr(cls, "description", "")))
    _print_table(("method", "family", "needs", "parameters (defaults)", "description"), rows)
    print()
    print("adapter families (PREFIX:NAME, any class of that library):")
    _print_table(("family", "package", "here", "description"), adapter_families())
    return 0


def adapter_families() -> list[tuple[str, str, str, str]]:
    """One row per adapter prefix: its package and whether that package imports here."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    from bench.methods import METHODS
    from bench.methods.adapters import ADAPTER_PACKAGES

    rows = []
    for prefix, description in METHODS.prefixes().items():
        module, dist, pip = ADAPTER_PACKAGES.get(prefix, (prefix, prefix, f"pip install {prefix}"))
        try:
            installed = f"{dist} {version(dist)}"
        except PackageNotFoundError:
            installed = f"{dist} (not installed)"
        try:
            importlib.import_module(module)
            here = "imports"
        # Not only ImportError: a package built for another torch fails with RuntimeError.
        except Exception as exc:  # noqa: BLE001
            first = str(exc).splitlines()[0] if str(exc) else ""
            here = f"does not import ({type(exc).__name__}: {first}); {pip}"
        rows.append((f"{prefix}:NAME", installed, here, description))
    return rows


def list_metrics(args: argparse.Namespace) -> int:
    from bench.metrics import METRICS

    rows = []
    for name in METRICS.names():
        info = METRICS.get(name)
        rows.append(
            (
                name,
                "higher" if info.higher_is_better else "lower",
                ",".join(info.requires),
                info.aggregate,
                _params(info.defaults),
                info.description,
            )
        )
    _print_table(("metric", "better", "requires", "aggregate", "parameters (defaults)", "description"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
