"""The human ceiling: how well people predict each other's fixations, the score a map could
hope for (the MIT saliency benchmark's inter-observer baseline).

For each image whose data records who made each fixation (OSIE's subjects, SALICON's workers),
and each observer k with a fixation in the image while another observer has one too:

- the map is every *other* observer's fixated pixels, blurred with the dataset's own blur, the
  one its density for CC, KL and SIM is made with (:mod:`bench.data.gaze`: OSIE a Gaussian of
  sigma 24 px, zero padding, window 7 sigma, as its ``computeFixationMaps.m``; SALICON sigma
  19 px, reflected borders, as salicon-api's ``buildFixMap``), then min-max normalised: the
  map the benchmark itself would draw from those observers, as the MIT benchmark's
  inter-observer baseline blurs the other observers' fixations into a fixation map;
- the truth is observer k alone: their fixated pixels (NSS, AUC-Judd, shuffled AUC with the
  image's usual other-image negatives, information gain, log-likelihood) and, for CC, KL and
  SIM, their fixated pixels blurred the same way;
- every metric column of the run scores the map against that truth, as the engine scores a
  method's maps (same registered functions, same float32 values);

and the image's ceiling is the mean over its observers of the defined values. Leave-one-out
needs two observers with a fixation in the image; an image with fewer has an undefined ceiling.

What it is comparable with: a method's score against all observers' pooled fixations is, for
the fixation-based metrics, close to the mean of its scores against each observer alone, so
the ceiling and the method rows measure one thing. For CC, KL and SIM the ceiling's target (one
observer's blurred fixations) is noisier than the all-observer density the rows are scored
against, so those three ceilings are lower bounds of what a map can reach there (the full
density itself would score CC 1, KL 0, SIM 1); leaderboards print them, but place methods
between the centre prior and the ceiling only on the fixation-based metrics.

Only metrics whose ground truth is the fixations, the fixated pixels or the density can be
scored this way; other columns are left undefined, and ``ceiling.json`` says so.

Where it is written (:mod:`bench.results`): ``ceiling.json`` (:data:`bench.results.CEILING`),
written with the run's header, says what was computed (the blur, the columns) or why nothing
was (the data does not say which observer made each fixation: MIT1003, CAT2000 fixation maps);
the rows go to the registered row stream ``ceiling`` (``ceiling.jsonl``), one row per image
(``model``, ``method`` "human ceiling", ``sample``, ``image_id``, ``observers``, one value per
metric column). The ceiling does not depend on the model, so the rows are computed once, with
the first model's batches, and carry that model's spec: committed with the batch, they are
resumed, sharded and merged like the score rows. A run without gaze metrics writes neither.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import torch

from bench.batching import fixation_map
from bench.metrics.base import TruthBatch

LABEL = "human ceiling"
# The ground truth a ceiling can give a metric: the left-out observer's fixated pixels (as
# ``masks`` and ``fixations``) and density, and the image's shuffled-AUC negatives.
TRUTH = frozenset({"masks", "fixations", "density", "other_fixations"})
GAZE = frozenset({"fixations", "density"})
OBSERVER_CHUNK = 16  # left-out maps scored at once: bounds memory at any image size


def asks_gaze(columns: Sequence[Any]) -> bool:
    """Whether any metric column is a gaze metric (its truth is fixations or a density)."""
    return any(set(c.info.requires) & GAZE for c in columns)


def unavailable_reason(dataset: Any, name: str = "dataset") -> str | None:
    """Why this gaze dataset gives no human ceiling, or None if it gives one."""
    if not callable(getattr(dataset, "observer_points", None)) or getattr(dataset, "blur", None) is None:
        return (
            f"the {name} data does not record which observer made each fixation "
            "(pooled fixation maps or density maps only), so no observer can be left out"
        )
    return None


def leave_one_out(observers: Sequence[np.ndarray], size: tuple[int, int], blur) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For K observers' points (each Nx2 x, y, inside the image): the K left-out maps (blur of
    the other observers' fixated pixels), the K fixated-pixel maps and the K per-observer
    densities (blur of their own fixated pixels): float32, bool, float32, each K x H x W."""
    from bench.data.gaze import fixated_pixels

    h, w = size
    fixated = np.stack([fixated_pixels(p, h, w) for p in observers])
    counts = fixated.sum(axis=0, dtype=np.int64)
    maps = np.stack([blur((counts - f) > 0) for f in fixated])
    densities = np.stack([blur(f) for f in fixated])
    return maps.astype(np.float32), fixated, densities.astype(np.float32)


def score_image(
    observers: Sequence[np.ndarray],
    size: tuple[int, int],
    blur,
    columns: Sequence[Any],
    other_fixations: torch.Tensor | None = None,
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """The image's ceiling per metric column label (the module docstring's definition): the
    mean over left-out observers of the defined values, NaN where none is (fewer than two
    observers, or a column whose truth a ceiling cannot give)."""
    nan = {c.label: float("nan") for c in columns}
    observers = [p for p in observers if len(p)]
    if len(observers) < 2:
        return nan
    scored = [c for c in columns if set(c.info.requires) <= TRUTH]
    maps, fixated, densities = leave_one_out(observers, size, blur)
    other = fixation_map(other_fixations, size).to(device)
    values: dict[str, list[torch.Tensor]] = {c.label: [] for c in scored}
    for start in range(0, len(observers), OBSERVER_CHUNK):
        part = slice(start, start + OBSERVER_CHUNK)
        fix = torch.from_numpy(fixated[part]).to(device)
        truth = TruthBatch(
            masks=fix,
            labels=[LABEL] * fix.shape[0],
            fixations=fix,
            other_fixations=other.expand_as(fix),
            density=torch.from_numpy(densities[part]).to(device),
        )
        m = torch.from_numpy(maps[part]).to(device)
        for c in scored:
            # float32, as the engine's score rows hold them
            values[c.label].append(c.info.score(m, truth, **c.params).float())
    out = dict(nan)
    for label, parts in values.items():
        v = torch.cat(parts).double().cpu().numpy()
        v = v[np.isfinite(v)]
        if len(v):
            out[label] = float(v.mean())
    return out


def _image_id(dataset: Any, index: int) -> str:
    records = getattr(dataset, "records", None)
    return str(records[index].image_id) if records is not None else f"#{index}"


def info(dataset: Any, columns: Sequence[Any], name: str = "dataset") -> dict[str, Any] | None:
    """What ``ceiling.json`` says for this dataset and these columns: the ceiling's definition,
    or why the data gives none; None where no column is a gaze metric (nothing to write)."""
    if not asks_gaze(columns):
        return None
    reason = unavailable_reason(dataset, name)
    if reason is not None:
        return {"method": LABEL, "computed": False, "reason": reason}
    blur = getattr(dataset, "blur")
    return {
        "method": LABEL,
        "computed": True,
        "definition": "leave one observer out: the other observers' fixated pixels, blurred, "
        "scored against the left-out observer; mean over observers per image",
        "blur": {"kind": "gaussian", **asdict(blur)} if hasattr(blur, "__dataclass_fields__") else repr(blur),
        "columns": [c.label for c in columns if set(c.info.requires) <= TRUTH],
        "not_scored": {
            c.label: f"needs {sorted(set(c.info.requires) - TRUTH)}, which a left-out observer does not give"
            for c in columns
            if not set(c.info.requires) <= TRUTH
        },
        "comparable": [
            c.label for c in columns if set(c.info.requires) <= TRUTH and "density" not in c.info.requires
        ],
    }


def rows(dataset: Any, columns: Sequence[Any], batch: Sequence[Any], model: str, *, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """The ceiling rows of a batch's samples (:class:`~bench.batching.Prepared`, in batch
    order; a sample that did not load gets none, its skip record says why), for the row stream
    ``ceiling`` under ``model``'s name (module docstring)."""
    return [{"model": model, **_row(dataset, columns, p.index, device)} for p in batch if p.error is None]


def _row(dataset: Any, columns: Sequence[Any], index: int, device) -> dict[str, Any]:
    row: dict[str, Any] = {"method": LABEL, "sample": index, "image_id": _image_id(dataset, index)}
    try:
        found = dataset.observer_points(index)
        if found is None:
            row["observers"] = 0
            return {**row, **{c.label: float("nan") for c in columns}}
        observers, (h, w) = found
        other = dataset.other_fixations(index, h, w) if callable(getattr(dataset, "other_fixations", None)) else None
    except (OSError, ValueError) as exc:
        # Unreadable gaze data: the sample's skip record says why; the row stays undefined.
        return {**row, "observers": 0, "error": f"{type(exc).__name__}: {exc}", **{c.label: float("nan") for c in columns}}
    row["observers"] = sum(1 for p in observers if len(p))
    return {**row, **score_image(observers, (h, w), dataset.blur, columns, other, device=device)}
