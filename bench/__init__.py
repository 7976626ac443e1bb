"""groundbench: does a vision model look where it should?

The flow is one direction (docs/design.md, "The flow"): manifest -> loader -> Sample stream ->
model + method -> maps -> metrics -> score rows -> leaderboard. No module imports from a layer
above its own (docs/design.md, "Layers"; tests/test_layers.py checks it).
"""

__version__ = "0.1.0"
