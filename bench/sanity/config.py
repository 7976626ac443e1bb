"""The ``[sanity]`` section of a run config: which sanity checks run, on which layers, with
which similarity measures.

::

    [sanity]
    tests = ["cascading", "independent", "random_target", "class_sensitivity"]   # the default: all
    measures = ["spearman_abs", "spearman", "ssim_abs", "ssim"]                 # the default: all
    max_steps = 10          # layer steps per model when they are found automatically
    images = 40             # only samples with dataset index < 40 (default: every sample)
    methods = ["gradcam", "gradient"]   # method labels to check (default: every method of the run)
    seed = 0                # re-initialisation and random-class seed (default: the run's seed)
    fail_above = 0.5        # a method fails when its mean spearman_abs after full randomisation is above

    [sanity.steps]          # optional: a model's steps by hand, top down (module names;
    "harbor:contextual" = ["fc", ["features.14", "features.15"]]   # a list = one step)

A run without the section runs no sanity check and writes exactly what it always wrote.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from bench.sanity.randomisation import MODES
from bench.sanity.similarity import MEASURES

TESTS = (*MODES, "random_target", "class_sensitivity")
_KEYS = ("tests", "measures", "max_steps", "images", "methods", "seed", "fail_above", "steps")


@dataclass
class SanityConfig:
    tests: tuple[str, ...] = TESTS
    measures: tuple[str, ...] = tuple(MEASURES)
    max_steps: int = 10
    images: int | None = None
    methods: tuple[str, ...] | None = None
    seed: int | None = None
    fail_above: float = 0.5
    steps: dict[str, list[str | list[str]]] = field(default_factory=dict)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(t for t in self.tests if t in MODES)

    def wants(self, test: str) -> bool:
        return test in self.tests

    def covers(self, sample_index: int) -> bool:
        """Whether the checks run on the sample with this dataset index."""
        return self.images is None or sample_index < self.images

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tests": list(self.tests),
            "measures": list(self.measures),
            "max_steps": self.max_steps,
            "fail_above": self.fail_above,
        }
        if self.images is not None:
            out["images"] = self.images
        if self.methods is not None:
            out["methods"] = list(self.methods)
        if self.seed is not None:
            out["seed"] = self.seed
        if self.steps:
            out["steps"] = {k: list(v) for k, v in self.steps.items()}
        return out


def _names(raw: Any, key: str, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"[sanity] {key} must be a non-empty list of names, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise ValueError(f"[sanity] {key} lists a name twice: {raw!r}")
    if allowed is not None:
        for name in raw:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"[sanity] {key}: unknown {name!r}{hint} (choose from {', '.join(allowed)})")
    return tuple(raw)


def _int(raw: Any, key: str, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        raise ValueError(f"[sanity] {key} must be an integer >= {low}, got {raw!r}")
    return raw


def parse_sanity(raw: Any) -> SanityConfig:
    """Validate the ``[sanity]`` table; a ValueError names the key and the problem."""
    if not isinstance(raw, dict):
        raise ValueError(f"[sanity] must be a table, got {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"[sanity] has no key {key!r}{hint} (keys: {', '.join(_KEYS)})")
    cfg = SanityConfig()
    if "tests" in raw:
        cfg.tests = _names(raw["tests"], "tests", TESTS)
    if "measures" in raw:
        cfg.measures = _names(raw["measures"], "measures", tuple(MEASURES))
    if "max_steps" in raw:
        cfg.max_steps = _int(raw["max_steps"], "max_steps", 1)
    if "images" in raw:
        cfg.images = _int(raw["images"], "images", 1)
    if "methods" in raw:
        cfg.methods = _names(raw["methods"], "methods", None)
    if "seed" in raw:
        cfg.seed = _int(raw["seed"], "seed", 0)
    if "fail_above" in raw:
        value = raw["fail_above"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1:
            raise ValueError(f"[sanity] fail_above must be a number in [-1, 1] (a Spearman correlation), got {value!r}")
        cfg.fail_above = float(value)
    if "steps" in raw:
        steps = raw["steps"]
        if not isinstance(steps, dict):
            raise ValueError("[sanity] steps must be a table: model spec = list of module names, top down")
        for model, entries in steps.items():
            ok = isinstance(entries, list) and entries and all(
                isinstance(e, str) or (isinstance(e, list) and e and all(isinstance(x, str) for x in e)) for e in entries
            )
            if not ok:
                raise ValueError(
                    f"[sanity.steps] {model!r} must be a non-empty list whose entries are module names "
                    f"or lists of module names, got {entries!r}"
                )
        cfg.steps = {k: list(v) for k, v in steps.items()}
    if "spearman_abs" not in cfg.measures and cfg.wants("cascading"):
        raise ValueError("[sanity] measures must include 'spearman_abs' when the cascading test runs: the verdict reads it")
    return cfg
