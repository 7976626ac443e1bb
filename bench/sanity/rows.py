"""Sanity rows: what ``sanity.jsonl`` holds, one JSON object per line.

Every row names its ``model``, ``method``, ``sample`` (dataset index), ``image_id``, ``target``
(dataset class), ``output`` (the model output explained) and ``test``, one of:

- ``"cascading"`` / ``"independent"``: ``step`` (1-based, 1 = the output layer), ``layer`` (the
  step's name) and one column per similarity measure (``spearman_abs``, ``spearman``,
  ``ssim_abs``, ``ssim``): the method's map on the randomised model against its map on the
  trained model, same image and target output;
- ``"random_target"``: ``random_output`` (the other class's output), the similarity columns
  (the random class's map against the target's), and the run's metric columns scored for the
  random class's map against the *target's* ground truth, each under ``random:<label>`` beside
  the target map's own value under ``<label>``;
- ``"class_sensitivity"``: ``other`` (class B), ``pointing_own``, ``pointing_other``,
  ``mass_own``, ``mass_other`` (:mod:`bench.sanity.class_sensitivity`).

Undefined values are NaN (written as null). A row whose map could not be made (the method
raised) has an ``error`` column. A row is identified by :data:`KEY` (``step`` is 0 and
``other`` null where they do not apply), the key of the ``sanity`` row stream
(:data:`bench.results.SANITY_ROWS`), so a merge finds a row that two shards wrote.
"""

from __future__ import annotations

from typing import Any, Sequence

from bench.results import SANITY_ROWS

TESTS = ("cascading", "independent", "random_target", "class_sensitivity")
KEY = SANITY_ROWS.key
BASE = ("model", "sample", "image_id", "target", "output")


def _base(job: dict[str, Any], method: str, test: str) -> dict[str, Any]:
    return {"model": job["model"], "method": method, **{k: job[k] for k in BASE[1:]}, "test": test}


def similarity_rows(
    jobs: Sequence[dict[str, Any]],
    method: str,
    test: str,
    step: int,
    layer: str,
    values: dict[str, Sequence[float]],
) -> list[dict[str, Any]]:
    """Rows of one randomisation step of one method: ``jobs[i]`` holds row i's :data:`BASE`
    fields, ``values[measure][i]`` its similarity."""
    if test not in ("cascading", "independent"):
        raise ValueError(f"similarity rows are for the randomisation tests, not {test!r}")
    return [
        {**_base(job, method, test), "step": int(step), "layer": layer, "other": None, **{m: float(v[i]) for m, v in values.items()}}
        for i, job in enumerate(jobs)
    ]


def random_target_rows(
    jobs: Sequence[dict[str, Any]],
    method: str,
    random_outputs: Sequence[int],
    similarity: dict[str, Sequence[float]],
    own_scores: dict[str, Sequence[float]],
    random_scores: dict[str, Sequence[float]],
) -> list[dict[str, Any]]:
    """Rows of the random-target test of one method (see the module doc for the columns)."""
    out = []
    for i, job in enumerate(jobs):
        row = {**_base(job, method, "random_target"), "step": 0, "other": None, "random_output": int(random_outputs[i])}
        row.update({m: float(v[i]) for m, v in similarity.items()})
        row.update({label: float(v[i]) for label, v in own_scores.items()})
        row.update({f"random:{label}": float(v[i]) for label, v in random_scores.items()})
        out.append(row)
    return out


def class_sensitivity_rows(
    jobs: Sequence[dict[str, Any]],
    method: str,
    pairs: tuple[Sequence[int], Sequence[int]],
    scores: dict[str, Sequence[float]],
) -> list[dict[str, Any]]:
    """Rows of the class-sensitivity test of one method: pair p is (``jobs[a]``'s map, ``jobs[b]``'s
    class)."""
    out = []
    for p, (a, b) in enumerate(zip(*pairs)):
        row = {**_base(jobs[a], method, "class_sensitivity"), "step": 0, "other": jobs[b]["target"]}
        row.update({k: float(v[p]) for k, v in scores.items()})
        out.append(row)
    return out
