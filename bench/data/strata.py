"""Per-target strata: object area and instance count, recorded in score rows so the leaderboard
can be broken down by them (the crowd suite's "which methods stop at one part, or one object").

A run whose config lists ``strata = ["object_area", "instance_count"]`` adds these fields to each
score row (computed on the host from the target's ground truth, once per target):

- ``object_area``: the fraction of the image's pixels in the target's mask, in [0, 1];
- ``instance_count``: the number of non-empty instance masks (a target without instance masks
  counts 1 when its mask is non-empty; a COCO class present only as a crowd region counts 0).

The breakdown (:mod:`bench.report.breakdown`) bins them with :func:`stratum_bins`: the area by
fixed fractions of the image (``AREA_EDGES``; fractions rather than COCO's absolute 32^2 / 96^2
pixel limits, so 96-pixel scenes and 640-pixel photos share bins), the count as 0, 1, 2, 3, 4
and 5 or more.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

STRATA = ("object_area", "instance_count")
AREA_EDGES = (0.03, 0.10, 0.30)
COUNT_TOP = 5  # counts of 5 and more share a bin
TITLES = {"object_area": "object area", "instance_count": "instance count"}


def check_strata(names: Sequence[str]) -> None:
    bad = [n for n in names if n not in STRATA]
    if bad:
        raise ValueError(f"unknown strata {bad}; choose from {list(STRATA)}")
    if len(set(names)) != len(names):
        raise ValueError(f"strata listed twice: {list(names)}")


def target_strata(target: Any, names: Sequence[str]) -> dict[str, Any]:
    """The row fields ``names`` of one target (see the module doc)."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "object_area":
            out[name] = float(target.mask.float().mean())
        elif name == "instance_count":
            inst = target.instances
            if inst is None:
                out[name] = int(bool(target.mask.any()))
            else:
                out[name] = int(inst.flatten(1).any(dim=1).sum()) if inst.shape[0] else 0
        else:
            raise ValueError(f"unknown stratum {name!r}; choose from {list(STRATA)}")
    return out


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def area_labels() -> list[str]:
    edges = AREA_EDGES
    labels = [f"area < {_pct(edges[0])}"]
    labels += [f"area {_pct(a)}-{_pct(b)}" for a, b in zip(edges[:-1], edges[1:])]
    return labels + [f"area >= {_pct(edges[-1])}"]


def count_labels() -> list[str]:
    return [f"{k} instance{'s' if k != 1 else ''}" for k in range(COUNT_TOP)] + [f"{COUNT_TOP}+ instances"]


def stratum_bins(name: str, values: pd.Series) -> tuple[pd.Series, list[str]]:
    """(the bin label of each value, every label in bin order). Bins are closed below: an area
    of exactly 0.10 is in "area 10-30%". Missing values get no bin (NaN)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if name == "object_area":
        labels = area_labels()
        idx = np.searchsorted(np.asarray(AREA_EDGES), v, side="right")
    elif name == "instance_count":
        labels = count_labels()
        idx = np.minimum(np.nan_to_num(v, nan=-1), COUNT_TOP).astype(int)
    else:
        raise ValueError(f"unknown stratum {name!r}; choose from {list(STRATA)}")
    out = pd.Series([labels[i] if np.isfinite(x) and 0 <= i < len(labels) else None for i, x in zip(idx, v)], index=values.index)
    return out, labels
