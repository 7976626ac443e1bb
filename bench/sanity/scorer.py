"""The sanity checks inside a run: a feature of the scoring core that turns each batch's maps
into sanity rows (docs/design.md, "The scoring core" and "A row stream").

:func:`bench.scoring.score_batch` hands every batch's maps to :class:`SanityChecks`
(``ModelRun.features``); its rows go to the ``sanity`` row stream (``sanity.jsonl``,
:mod:`bench.sanity.rows`), written with the batch's score rows and marked done with them, so
they obey the same streaming, resume, shard and merge rules. Per method of ``[sanity] methods``
and per (image, target) of the samples ``[sanity] images`` covers:

- ``cascading`` / ``independent``: the method on the randomised copies of the model, each
  layer step, against its map on the trained model (:mod:`bench.sanity.randomisation`);
- ``random_target``: the method for a random other class (:mod:`bench.sanity.random_target`),
  compared with the target's map and scored by the run's metric columns against the target's
  ground truth (metrics that need the model's passes are left out there);
- ``class_sensitivity``: on images with two or more scored classes, the run's own maps of
  class A scored against class B's mask (:mod:`bench.sanity.class_sensitivity`), with the
  tolerance of the run's ``pointing_game`` column (15 px if it has none).

Maps come through :func:`bench.scoring.attribute` (a method that raises is retried image by
image; a row it fails on has NaN values and an ``error``), under the run's autocast, with the
seeds of the run's own maps, so a stochastic method draws the same noise on every model. The
batch's sanity values come to the host in one copy. This module sits in the engine layer
(it wraps the scoring core); the rest of :mod:`bench.sanity` sits below the config.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from bench import results
from bench.sanity.checks import randomisation_similarities, random_target_maps
from bench.sanity.class_sensitivity import COLUMNS as CLASS_COLUMNS
from bench.sanity.class_sensitivity import class_sensitivity, cross_class_pairs
from bench.sanity.config import SanityConfig
from bench.sanity.layer_steps import LayerStep, list_layer_steps, named_layer_steps
from bench.sanity.random_target import random_other_outputs, random_target_seed
from bench.sanity.randomisation import ModelRandomiser, weights_sha256
from bench.sanity.rows import class_sensitivity_rows, random_target_rows, similarity_rows
from bench.sanity.similarity import compare, to_size
from bench.scoring import (
    BatchMaps,
    ModelRun,
    attribute,
    autocast,
    device_index,
    item_seed,
    score_maps,
    truth_groups,
    upsample,
)
from bench.metrics.base import MODEL

SANITY_ROWS = results.SANITY_ROWS
DEFAULT_TOLERANCE = 15.0


class SanityError(ValueError):
    """The sanity checks cannot run on this model or method; the message says why."""


def example_input(preprocess: Any, side: int = 224) -> torch.Tensor:
    """One model input (1 x C x h x w) from a mid-grey image through the model's preprocessing:
    what the layer listing's forward pass runs on (its values do not matter, its size does)."""
    return preprocess(torch.full((3, side, side), 0.5))[None]


class SanityChecks:
    """The ``[sanity]`` checks of one model's part of a run (module doc). ``example``: one model
    input on the run's device, for listing the layer steps and counting the model's outputs."""

    def __init__(self, cfg: SanityConfig, run: ModelRun, example: torch.Tensor):
        if run.module is None:
            raise SanityError(f"{run.spec}: the sanity checks need the model")
        self.cfg = cfg
        self.seed = int(cfg.seed if cfg.seed is not None else run.seed)
        labels = [label for label, _ in run.methods]
        wanted = list(cfg.methods) if cfg.methods is not None else labels
        unknown = [w for w in wanted if w not in labels]
        if unknown:
            raise SanityError(f"[sanity] methods {unknown} are not methods of this run (its methods: {', '.join(labels)})")
        self.method_index = [labels.index(w) for w in wanted]
        example = example.to(run.device).contiguous(memory_format=torch.channels_last)
        self.steps: list[LayerStep] = []
        self.randomiser: ModelRandomiser | None = None
        if cfg.modes:
            given = cfg.steps.get(run.spec)
            self.steps = named_layer_steps(run.module, given) if given else list_layer_steps(run.module, example, cfg.max_steps)
            self.randomiser = ModelRandomiser(run.module, self.steps, seed=self.seed)
        with torch.no_grad():
            self.num_outputs = int(run.module(example).shape[1])
        self.original_sha256 = self.randomiser.original_sha256 if self.randomiser else weights_sha256(run.module)
        pointing = [c for c in run.columns if c.info.name == "pointing_game"]
        self.tolerance = float(pointing[0].params.get("tolerance", pointing[0].info.defaults.get("tolerance", DEFAULT_TOLERANCE))) if pointing else DEFAULT_TOLERANCE
        self.random_columns = [c for c in run.columns if MODEL not in c.info.requires]

    def describe(self) -> dict[str, Any]:
        """What a run records about the checks of this model (``models.json``)."""
        out: dict[str, Any] = {
            "tests": list(self.cfg.tests),
            "measures": list(self.cfg.measures),
            "seed": self.seed,
            "original_weights_sha256": self.original_sha256,
            "num_outputs": self.num_outputs,
            "class_sensitivity_tolerance": self.tolerance,
        }
        if self.randomiser is not None:
            prov = self.randomiser.provenance()
            out["init"] = prov["init"]
            out["steps"] = prov["steps"]
        return out

    def weights_unchanged(self, run: ModelRun) -> bool:
        """The trained model's weights hash as they did before the checks."""
        return weights_sha256(run.module) == self.original_sha256

    # -- one batch ---------------------------------------------------------------------------
    def rows(self, run: ModelRun, state: BatchMaps) -> dict[str, list[dict[str, Any]]]:
        batch, jobs = state.batch, state.jobs
        covered = [n for n, j in enumerate(jobs) if self.cfg.covers(batch[j.item].index)]
        if not covered:
            return {}
        every = len(covered) == len(jobs)
        index = None if every else device_index(covered, run.device)
        sub = [jobs[n] for n in covered]
        inputs = state.inputs.per_job if every else state.inputs.per_job[index]
        targets = state.targets if every else state.targets[index]
        size = tuple(inputs.shape[-2:])
        groups = state.groups if every else truth_groups(batch, sub, run.requires, run.device)
        info = [
            {"model": run.spec, "sample": batch[j.item].index, "image_id": batch[j.item].image_id, "target": j.target.label}
            for j in sub
        ]

        def call(method, model, x, t, seeds):
            with autocast(run.autocast, run.device):
                return attribute(method, model, x, t, list(seeds))

        methods = [run.methods[mi] for mi in self.method_index]
        seeds = {label: [item_seed(run.seed, d["image_id"], d["target"], label) for d in info] for label, _ in methods}
        originals = {label: state.maps[mi] if every else state.maps[mi][index] for mi, (label, _) in zip(self.method_index, methods)}

        # Everything that goes to the host, in one list: (kind, method label, extra, tensors,
        # errors); the first part is the jobs' model outputs.
        parts: list[tuple[str, str, Any, dict[str, torch.Tensor], dict[int, str]]] = [("outputs", "", None, {"output": targets.float()}, {})]
        if self.randomiser is not None:
            for s in randomisation_similarities(self.randomiser, self.cfg.modes, methods, inputs, targets, seeds, originals, self.cfg.measures, call):
                parts.append((s.mode, s.method, (s.index, s.layer), s.values, s.errors))
        if self.cfg.wants("random_target"):
            excluded = [run.candidates(j.target.label) for j in sub]
            draw_seeds = [random_target_seed(self.seed, d["image_id"], d["target"]) for d in info]
            others = random_other_outputs(targets, excluded, self.num_outputs, draw_seeds)
            for mi, (label, method) in zip(self.method_index, methods):
                maps, errors = random_target_maps(method, run.module, inputs, others, seeds[label], call)
                values = compare(to_size(originals[label], size), to_size(maps, size), self.cfg.measures)
                scored = score_maps(maps, batch, sub, self.random_columns, device=run.device, groups=groups)
                own = state.values[mi] if every else state.values[mi][index]
                columns = {**values, "random_output": others.float()}
                for ci, col in enumerate(self.random_columns):
                    columns[f"random:{col.label}"] = scored[:, ci + 1]
                    columns[f"own:{col.label}"] = own[:, run.columns.index(col) + 1]
                parts.append(("random_target", label, None, columns, errors))
        pairs = cross_class_pairs([j.item for j in sub], [j.target.label for j in sub]) if self.cfg.wants("class_sensitivity") else ([], [])
        if pairs[0]:
            for mi, (label, _) in zip(self.method_index, methods):
                scores = {c: torch.full((len(pairs[0]),), float("nan"), device=run.device) for c in CLASS_COLUMNS}
                for g in groups:
                    members = g.members  # positions among the covered jobs (groups are theirs)
                    if not any(a in members for a in pairs[0]):
                        continue
                    pos = {m: k for k, m in enumerate(members)}
                    which = [p for p, a in enumerate(pairs[0]) if a in pos]
                    up = upsample(originals[label][device_index(members, run.device)], g.size)
                    got = class_sensitivity(up, g.truth.masks, ([pos[pairs[0][p]] for p in which], [pos[pairs[1][p]] for p in which]), self.tolerance)
                    where = device_index(which, run.device)
                    for c in CLASS_COLUMNS:
                        scores[c][where] = got[c]
                parts.append(("class_sensitivity", label, pairs, scores, {}))

        host = _to_host(parts)
        for d, output in zip(info, host[0]["output"]):
            d["output"] = int(output)
        return {SANITY_ROWS.name: self._rows(info, methods, parts[1:], host[1:])}

    def _rows(self, info, methods, parts, host) -> list[dict[str, Any]]:
        """Rows in single-run order: method-major, then each (image, target) in batch order, its
        randomisation steps, random target and class pairs (what ``groundbench merge`` rebuilds)."""
        per_job: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for (kind, label, extra, _, errors), values in zip(parts, host):
            if kind in ("cascading", "independent"):
                step, layer = extra
                made = similarity_rows(info, label, kind, step, layer, values)
                owners = range(len(info))
            elif kind == "random_target":
                sims = {m: values[m] for m in self.cfg.measures}
                own = {k[4:]: v for k, v in values.items() if k.startswith("own:")}
                rnd = {k[7:]: v for k, v in values.items() if k.startswith("random:")}
                made = random_target_rows(info, label, [int(x) for x in values["random_output"]], sims, own, rnd)
                owners = range(len(info))
            else:
                made = class_sensitivity_rows(info, label, extra, values)
                owners = extra[0]
            for row, owner in zip(made, owners):
                if owner in errors:
                    row["error"] = errors[owner]
                per_job.setdefault((label, owner), []).append(row)
        out = []
        for label, _ in methods:
            for n in range(len(info)):
                out += per_job.get((label, n), [])
        return out


def _to_host(parts) -> list[dict[str, list[float]]]:
    """One device-to-host copy for every value of the batch's sanity checks."""
    flat, layout = [], []
    for _, _, _, columns, _ in parts:
        names = list(columns)
        layout.append([(name, columns[name].numel()) for name in names])
        flat += [columns[name].float().reshape(-1) for name in names]
    if not flat:
        return [{} for _ in parts]
    values = torch.cat(flat).cpu().tolist()
    out, pos = [], 0
    for entry in layout:
        got = {}
        for name, n in entry:
            got[name] = values[pos : pos + n]
            pos += n
        out.append(got)
    return out
