"""Measured reliance inside a run: a feature of the scoring core that turns each batch into
reliance rows (docs/design.md, "The scoring core" and "A row stream").

A run with a ``[reliance]`` section (:class:`bench.interventions.RelianceConfig`) adds a
:class:`RelianceFeature` to each model's :class:`~bench.scoring.ModelRun`. For every job of a
batch (an (image, target) the run scores) it takes the target's object mask and context region
(the union of the target's context regions; all-false where the dataset pairs none with it) into
the model's input space by the model's own resize and crop
(:class:`bench.models.input_space.InputSpace`, coverage >= 0.5), then measures the drops of
:func:`bench.interventions.measure_reliance` on the batch's model inputs, for the target output
the maps explain, under the run's autocast. These are facts about the model, not about a
method: one row per (model, image, target, removal mode), whatever the methods.

Rows go to the ``reliance`` row stream (``reliance.jsonl``, :data:`bench.results.RELIANCE_ROWS`),
written with the batch's score rows and marked done with them, so they obey the same streaming,
resume, shard and merge rules. A row holds ``model``, ``sample``, ``image_id``, ``target``,
``output``, ``mode`` and the numbers of :data:`bench.interventions.FIELDS` (NaN, written as
null, where undefined: no context pixel left in input space, no room for a control). The
control regions are placed by :func:`bench.interventions.control_draw` from the run's seed,
image and target, so a row does not depend on batch, shard or resume. The batch's numbers come
to the host in one copy. ``1 + 4 * len(modes)`` forward passes per job.
"""

from __future__ import annotations

from typing import Any

import torch

from bench import results
from bench.interventions import FIELDS, RelianceConfig, control_draw, measure_reliance, pack
from bench.models.input_space import InputSpace
from bench.scoring import BatchMaps, ModelRun, autocast, truth_groups

RELIANCE_ROWS = results.RELIANCE_ROWS


class RelianceFeature:
    """The ``[reliance]`` measurements of one model's part of a run (module doc)."""

    def __init__(self, cfg: RelianceConfig, run: ModelRun):
        if run.module is None:
            raise ValueError(f"{run.spec}: measured reliance needs the model")
        if run.input_space is None:
            raise ValueError(f"{run.spec}: measured reliance needs the model's preprocessing (its input space)")
        self.cfg = cfg
        self.space: InputSpace = run.input_space

    def describe(self) -> dict[str, Any]:
        """Its ``models.json`` entry: the modes and the blur."""
        return {**self.cfg.to_dict(), "passes_per_target": 1 + 4 * len(self.cfg.modes)}

    def input_masks(self, run: ModelRun, state: BatchMaps) -> tuple[torch.Tensor, torch.Tensor]:
        """(objects, contexts): bool J x h x w on the device, every job's masks in the model's
        input space, in job order."""
        inputs = state.inputs.per_job
        j, h, w = inputs.shape[0], *inputs.shape[-2:]
        objects = torch.zeros((j, h, w), dtype=torch.bool, device=inputs.device)
        contexts = torch.zeros_like(objects)
        # The run's groups hold the context only when a metric asked for it.
        groups = state.groups if all(g.truth.context is not None for g in state.groups) else truth_groups(state.batch, state.jobs, {"masks", "context"}, run.device)
        for g in groups:
            both = self.space.masks(torch.stack([g.truth.masks, g.truth.context], dim=1))
            if tuple(both.shape[-2:]) != (h, w):
                raise ValueError(f"{run.spec}: masks reach {tuple(both.shape[-2:])} through its preprocessing, but its inputs are {(h, w)}")
            if g.index is None:
                objects[:], contexts[:] = both[:, 0], both[:, 1]
            else:
                objects[g.index], contexts[g.index] = both[:, 0], both[:, 1]
        return objects, contexts

    def rows(self, run: ModelRun, state: BatchMaps) -> dict[str, list[dict[str, Any]]]:
        """The batch's reliance rows: jobs in batch order, each job's modes in config order."""
        if not state.jobs:
            return {RELIANCE_ROWS.name: []}
        objects, contexts = self.input_masks(run, state)
        draws = torch.tensor(
            [control_draw(run.seed, state.batch[j.item].image_id, j.target.label) for j in state.jobs], dtype=torch.float64
        ).to(run.device, non_blocking=True)
        with run.clock.stage("reliance"), autocast(run.autocast, run.device):
            measured = measure_reliance(
                run.module, state.inputs.per_job, state.targets, objects, contexts, draws, self.cfg.modes,
                blur_sigma=self.cfg.blur_sigma, max_batch=run.chunk,
            )
        packed = torch.cat([pack(measured).flatten(), state.targets.to(torch.float32)])
        host = packed.cpu().numpy()  # the batch's one copy of its reliance numbers
        n_modes, n_jobs = len(self.cfg.modes), len(state.jobs)
        table = host[: n_modes * n_jobs * len(FIELDS)].reshape(n_modes, n_jobs, len(FIELDS)).tolist()
        outputs = [int(x) for x in host[n_modes * n_jobs * len(FIELDS) :]]
        out = []
        # Job-major (each job's modes together): rows come in sample order whatever the batching,
        # so a merge of shards, which orders rows by sample, gives the single run's file.
        for n, job in enumerate(state.jobs):
            p = state.batch[job.item]
            for mi, mode in enumerate(self.cfg.modes):
                out.append({
                    "model": run.spec, "sample": p.index, "image_id": p.image_id, "target": job.target.label,
                    "output": outputs[n], "mode": mode, **dict(zip(FIELDS, table[mi][n])),
                })
        return {RELIANCE_ROWS.name: out}
