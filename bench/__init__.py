"""groundbench: does a vision model look where it should?

The flow is one direction (docs/design.md, "The flow"): manifest -> loader -> Sample stream ->
model + method -> maps -> metrics -> score rows -> leaderboard. No module imports from a layer
above its own (docs/design.md, "Layers"; tests/test_layers.py checks it).
"""

__version__ = "0.1.0"

# The notebook API (bench.api), importable from the package without loading torch up front.
API = ("run", "leaderboard", "rows", "score_maps", "list_methods", "list_metrics")


def __getattr__(name: str):
    if name in API:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
