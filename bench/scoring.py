"""The scoring core: one pipeline from a batch of samples and their maps to score rows
(docs/design.md, "The scoring core").

The run (:mod:`bench.engine`), ``groundbench score`` (:mod:`bench.saved_maps`), the report's
overlays (:mod:`bench.report.examples`) and ``groundbench perf`` (:mod:`bench.perf`) all call
it, so a map scores to the same row, to the bit, whichever of them scored it. For one batch of
:class:`~bench.batching.Prepared` samples and a :class:`ModelRun` (everything about one model's
part of a run that does not change from batch to batch), :func:`score_batch`:

1. :func:`expand_jobs`: one :class:`~bench.batching.Job` per (sample, target) that can be
   scored; a sample that did not load, an image without targets, a class the model has no
   output for and a target without ground truth become skip records instead;
2. :func:`resolve_targets`: the model output each job attributes: the class's one output, or,
   where several outputs (or the top prediction) stand for it, the one with the highest logit
   on that image (:func:`bench.models.class_maps.max_logit`, computed on the device);
3. per method, :func:`attribute`: the maps of every job in one call (retried image by image if
   the method raises, so one bad sample costs only its own rows), seeded per
   (image, target, method) by :func:`item_seed`;
4. :func:`score_maps`, the public call for maps held in memory: maps resized bilinearly to
   their images' original size, every metric column on the device through the metric contract
   (:mod:`bench.metrics.base`), with the truth stacked once per image size
   (:func:`truth_groups`) and the per-map intermediates shared (:class:`MapStats`);
5. the batch's one device-to-host copy, then :func:`score_rows`: one row per (method, job) in
   :func:`bench.results.score_row`'s layout, and one skip record per failed (method, job).

Nothing before the host copy waits for the device: inputs arrive stacked and pinned, index
lists go up with non-blocking copies, target resolution stays on the device, and map validity
is read from the maps themselves. ``run.clock`` (any object whose ``stage(name)`` gives a
context manager, e.g. :class:`bench.perf.StageTimer`) sees the stages ``prepare``, ``resolve``,
``attribute``, ``upsample``, ``metrics``, ``to_host`` and ``rows``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench import results
from bench.batching import Job, Prepared, target_problem, truth_for, unscored_metrics
from bench.config import Component
from bench.data.annotations import pointing_difficult
from bench.data.sample import TOP1
from bench.maps_io import map_path
from bench.metrics import METRICS, MetricInfo
from bench.metrics.base import MODEL, MapStats, ModelAccess, TruthBatch
from bench.models.class_maps import max_logit
from bench.models.input_space import InputSpace
from bench.registry import UnknownNameError
from bench.data.strata import target_strata


class StageClock(Protocol):
    """What the core needs of a timer: ``stage(name)`` gives a context manager."""

    def stage(self, name: str) -> ContextManager[Any]: ...


class _NoClock:
    def stage(self, name: str) -> ContextManager[Any]:
        return contextlib.nullcontext()


NO_CLOCK: StageClock = _NoClock()


class ScoringError(ValueError):
    """The metrics or maps asked for cannot be scored; the message says which and why."""


# -- metric columns --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricColumn:
    """One column of the score rows: a registered metric with the config's parameters, under
    the config's label (default: the metric's name)."""

    label: str
    info: MetricInfo
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """Its ``columns.json`` entry."""
        return {**self.info.describe(), "label": self.label, "params": {**self.info.defaults, **self.params}}

    def score(self, maps: torch.Tensor, truth: TruthBatch, *, stats: MapStats | None = None, model: ModelAccess | None = None) -> torch.Tensor:
        return self.info.score(maps, truth, stats=stats, model=model, **self.params)


def metric_columns(metrics: Sequence[Component]) -> list[MetricColumn]:
    """The columns of a config's ``[[metrics]]``, validated: a known metric, its own parameters,
    one column per label."""
    cols, labels = [], set()
    for m in metrics:
        try:
            info = METRICS.get(m.name)
            info.validate_params(m.params)
        except (UnknownNameError, ValueError) as exc:
            raise ScoringError(f"metric {m.name!r}: {exc}") from exc
        label = m.label or m.name
        if label in labels:
            raise ScoringError(f"metric column {label!r} appears twice; give one a label")
        labels.add(label)
        cols.append(MetricColumn(label, info, dict(m.params)))
    if not cols:
        raise ScoringError("no metrics to score")
    return cols


def requirements(columns: Sequence[MetricColumn]) -> frozenset[str]:
    """Everything the columns' metrics require (truth fields, ``"model"``)."""
    return frozenset(r for c in columns for r in c.info.requires)


# -- one model's part of a run ---------------------------------------------------------------------


def item_seed(run_seed: int, image_id: str, target: str, method: str) -> int:
    """A per-(image, target, method) seed: independent of batch composition, shard and resume."""
    digest = hashlib.sha256(f"{run_seed}|{image_id}|{target}|{method}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def autocast(name: str, device: torch.device) -> ContextManager[Any]:
    """The config's mixed precision for the model passes (``"bf16"``), else none."""
    dtype = {"bf16": torch.bfloat16}.get(name)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class ModelRun:
    """One model's part of a run: what :func:`score_batch` needs that does not change from batch
    to batch (the one context object of the run loop, ``groundbench perf`` and the report).

    ``spec``: the rows' ``model``. ``module``: on ``device``, eval mode (None: no model, as for
    saved maps). ``class_map``: dataset class -> model outputs (None: no model). ``methods``:
    (label, method bound to the model's defaults), in config order. ``columns``: the metric
    columns. ``seed``: the run's seed (per-item seeds derive from it). ``autocast``: ``"none"`` or
    ``"bf16"``. ``clock``: stage timer. ``maps_dir``: where to save every scored map (None:
    nowhere). ``chunk``: the largest batch of extra forward passes a metric that requires the
    model runs at once. ``input_space``: the model's :class:`~bench.models.input_space.InputSpace`
    (maps and masks taken into its input; None: no model). ``features``: objects whose ``rows(run, state)`` add rows of other
    streams from a batch's maps (:class:`BatchFeature`; the sanity checks); none by default. ``strata``: per-target fields each row also records
    (:mod:`bench.data.strata`, e.g. ``object_area``)."""

    spec: str
    module: torch.nn.Module | None
    class_map: Any
    methods: list[tuple[str, Any]]
    columns: list[MetricColumn]
    device: torch.device
    seed: int = 0
    autocast: str = "none"
    clock: StageClock = NO_CLOCK
    maps_dir: Path | None = None
    chunk: int = 64
    input_space: InputSpace | None = None
    strata: tuple[str, ...] = ()
    features: list["BatchFeature"] = field(default_factory=list)
    requires: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.requires = requirements(self.columns)
        if MODEL in self.requires and self.module is None:
            needs = [c.label for c in self.columns if MODEL in c.info.requires]
            raise ScoringError(f"metric column(s) {', '.join(needs)} need the model, and {self.spec} has none here")

    @classmethod
    def for_model(cls, bundle: Any, methods: Sequence[tuple[str, Any]], columns: Sequence[MetricColumn], device: torch.device, **options: Any) -> "ModelRun":
        """The run of a loaded :class:`~bench.models.ModelBundle`: its module moved to ``device``
        (channels_last on CPU and CUDA), each method bound to the model's default target layer."""
        module = bundle.module.to(device)
        if device.type in ("cpu", "cuda"):
            module = module.to(memory_format=torch.channels_last)
        bound = [(label, m.with_model_defaults(bundle.target_layer)) for label, m in methods]
        options.setdefault("input_space", InputSpace(bundle.preprocess, bundle.spec))
        return cls(bundle.spec, module, bundle.class_map, bound, list(columns), device, **options)

    def candidates(self, label: str) -> list[int] | None:
        """The model outputs that stand for dataset class ``label`` (None: every output, the
        model's top prediction; empty: none). No model: no outputs are needed."""
        if self.class_map is None:
            return []
        if label == TOP1:
            return None
        return self.class_map.indices(label)


@dataclass
class BatchResult:
    """What one batch gives: ``rows`` per row stream (``"scores"``, ``"skipped"``, and any other
    stream a method or metric feature adds)."""

    rows: dict[str, list[dict[str, Any]]]

    @property
    def scores(self) -> list[dict[str, Any]]:
        return self.rows.get(results.SCORE_ROWS.name, [])

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return self.rows.get(results.SKIP_ROWS.name, [])


@dataclass
class BatchMaps:
    """What :func:`score_batch` computed for one batch, handed to the run's features: the batch,
    its ``jobs``, their model ``inputs`` and ``targets`` (long J, on the device), the truth
    ``groups``, each method's ``maps`` (J x h x w at the method's resolution, in
    ``run.methods`` order), the score table ``values`` (methods x jobs x (1 + C), on the device)
    and the failed (method, job) pairs."""

    batch: Sequence[Prepared]
    jobs: list[Job]
    inputs: "ModelInputs"
    targets: torch.Tensor
    groups: list["TruthGroup"]
    maps: list[torch.Tensor]
    values: torch.Tensor
    failures: dict[tuple[int, int], str]


class BatchFeature(Protocol):
    """Rows of other streams from a batch's maps (``stream name -> rows``; each row with
    ``model`` and ``sample``), committed with the batch's score rows."""

    def rows(self, run: "ModelRun", state: BatchMaps) -> dict[str, list[dict[str, Any]]]: ...


# -- the steps -------------------------------------------------------------------------------------


def expand_jobs(run: ModelRun, batch: Sequence[Prepared]) -> tuple[list[Job], list[dict[str, Any]]]:
    """One job per (sample, target) the run can score; skip records for the rest, in batch and
    target order: a sample not loaded, an image without targets, a class the model has no output
    for, a target without ground truth (:func:`bench.batching.target_problem`); and, beside a
    job, why some columns cannot score it (:func:`bench.batching.unscored_metrics`)."""
    jobs: list[Job] = []
    skips: list[dict[str, Any]] = []
    for pos, p in enumerate(batch):
        if p.error is not None:
            skips.append(results.skip_record(run.spec, p.index, p.image_id, None, f"sample not loaded: {p.error}"))
            continue
        if not p.targets:
            skips.append(results.skip_record(run.spec, p.index, p.image_id, None, "no targets in this image"))
            continue
        for t in p.targets:
            cands = run.candidates(t.label)
            if cands is not None and not cands and run.class_map is not None:
                skips.append(results.skip_record(run.spec, p.index, p.image_id, t.label, f"class {t.label!r} has no output in {run.spec}'s class map"))
                continue
            problem = target_problem(t, p)
            if problem is not None:
                skips.append(results.skip_record(run.spec, p.index, p.image_id, t.label, problem))
                continue
            jobs.append(Job(pos, t, candidates=cands))
            note = unscored_metrics(p, run.columns)
            if note is not None:
                skips.append(results.skip_record(run.spec, p.index, p.image_id, t.label, note))
    return jobs, skips


def device_index(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A host list as a long tensor on ``device``. The copy is non-blocking, so the host does not
    wait for the device's queue to drain (a blocking copy would: a hidden synchronisation)."""
    return torch.tensor(list(values), dtype=torch.long).to(device, non_blocking=True)


@dataclass
class ModelInputs:
    """The model inputs of a batch's jobs on the device, channels_last: ``images`` (one per
    batch position the jobs use), ``per_job`` (one per job) and ``slots`` (each job's row of
    ``images`` on the device; None where the two are the same)."""

    images: torch.Tensor
    per_job: torch.Tensor
    slots: torch.Tensor | None


def model_inputs(batch: Sequence[Prepared], jobs: Sequence[Job], device: torch.device) -> ModelInputs:
    """The jobs' model inputs (:class:`ModelInputs`). A batch from
    :func:`bench.batching.collate_prepared` brings them stacked (pinned, when the DataLoader
    pins memory), so the upload is one asynchronous copy; with one job per image (the common
    case) the jobs' inputs are the batch's, no gather."""
    used = sorted({j.item for j in jobs})
    stacked = getattr(batch, "inputs", None)
    if stacked is not None:
        rows = [batch.input_rows[i] for i in used]
        host = stacked if rows == list(range(stacked.shape[0])) else stacked[rows]
    else:
        host = torch.stack([batch[i].input for i in used])
    inputs = host.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    slot = {item: k for k, item in enumerate(used)}
    job_slots = [slot[j.item] for j in jobs]
    if job_slots == list(range(len(used))):
        return ModelInputs(inputs, inputs, None)
    slots = device_index(job_slots, device)
    return ModelInputs(inputs, inputs[slots], slots)


def resolve_targets(run: ModelRun, jobs: Sequence[Job], inputs: ModelInputs, *, given: Sequence[int | None] | None = None) -> torch.Tensor:
    """Long J on the device: the model output each job attributes. ``given[n]`` (an output a run
    recorded) wins where not None. Where a class has several outputs, or stands for the top
    prediction, one forward pass over the batch's images picks, per job, the candidate with the
    highest logit on its image (:func:`bench.models.class_maps.max_logit`)."""
    given = list(given) if given is not None else [None] * len(jobs)
    candidates = [[g] if g is not None else j.candidates for j, g in zip(jobs, given)]
    if all(c is not None and len(c) == 1 for c in candidates):
        return device_index([c[0] for c in candidates], inputs.per_job.device)
    with run.clock.stage("resolve"), torch.no_grad(), autocast(run.autocast, inputs.images.device):
        logits = run.module(inputs.images)
    per_job = logits if inputs.slots is None else logits[inputs.slots]
    return max_logit(per_job, candidates)


def attribute(method: Any, model: torch.nn.Module | None, inputs: torch.Tensor, targets: torch.Tensor, seeds: Sequence[int]) -> tuple[torch.Tensor, dict[int, str]]:
    """Attribute the whole batch; if the method raises, retry image by image so that one bad
    sample costs only its own rows (the errors, per job, go to the skip records).

    Any ``Exception`` counts: methods are plug-in code (Captum, for one, signals bad input with
    ``assert``), and one failing sample must not cost a long run. ``KeyboardInterrupt`` and
    ``SystemExit`` still stop the run."""
    try:
        maps = method(model, inputs, targets, seeds=seeds)
        _check_maps(maps, inputs)
        return maps, {}
    except Exception:  # noqa: BLE001 - retried image by image below, errors recorded
        pass
    parts: dict[int, torch.Tensor] = {}
    errors: dict[int, str] = {}
    for n in range(inputs.shape[0]):
        try:
            one = method(model, inputs[n : n + 1], targets[n : n + 1], seeds=seeds[n : n + 1])
            _check_maps(one, inputs[n : n + 1])
            parts[n] = one[0]
        except Exception as exc:  # noqa: BLE001 - recorded in skipped.jsonl
            errors[n] = f"{type(exc).__name__}: {exc}"
    shape = next(iter(parts.values())).shape if parts else inputs.shape[2:]
    maps = torch.full((inputs.shape[0], *shape), float("nan"), device=inputs.device)
    for n, one in parts.items():
        maps[n] = one
    return maps, errors


def _check_maps(maps: torch.Tensor, inputs: torch.Tensor) -> None:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != inputs.shape[0]:
        raise ValueError(f"method returned {getattr(maps, 'shape', type(maps))}, expected Bxhxw with B={inputs.shape[0]}")


def method_maps(run: ModelRun, label: str, method: Any, batch: Sequence[Prepared], jobs: Sequence[Job], job_inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
    """The maps of one method for every job (J x h x w at the method's resolution) and its
    per-job failures, seeded per (image, target, method), under the run's autocast."""
    seeds = [item_seed(run.seed, batch[j.item].image_id, j.target.label, label) for j in jobs]
    with run.clock.stage("attribute"), autocast(run.autocast, run.device):
        return attribute(method, run.module, job_inputs, targets, seeds)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps N x h x w to N x H x W (float32, bilinear, corners not aligned): how every map is
    brought to its image's original resolution before it is scored."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


@dataclass
class TruthGroup:
    """The jobs of a batch whose images share one original size, and their stacked truth.
    ``index``: their positions among the batch's jobs on the device (None: all of them)."""

    size: tuple[int, int]
    members: list[int]
    index: torch.Tensor | None
    truth: TruthBatch


def truth_groups(batch: Sequence[Prepared], jobs: Sequence[Job], requires: frozenset[str] | set[str], device: torch.device) -> list[TruthGroup]:
    """The jobs grouped by original image size (so their maps and masks stack), each group's
    truth stacked once for every method (:func:`bench.batching.truth_for`)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n, j in enumerate(jobs):
        groups[batch[j.item].size].append(n)
    out = []
    for size, members in groups.items():
        truth = truth_for([jobs[n] for n in members], list(batch), set(requires), device)
        index = None if len(members) == len(jobs) else device_index(members, device)
        out.append(TruthGroup(size, members, index, truth))
    return out


def score_maps(
    maps: torch.Tensor | Sequence[torch.Tensor],
    batch: Sequence[Prepared],
    jobs: Sequence[Job],
    columns: Sequence[MetricColumn],
    *,
    device: torch.device | None = None,
    groups: Sequence[TruthGroup] | None = None,
    model: ModelAccess | None = None,
    clock: StageClock = NO_CLOCK,
    out: torch.Tensor | None = None,
    on_group: Callable[[TruthGroup, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Score maps held in memory: ``maps[n]`` is job ``n``'s map, one J x h x w tensor (a
    method's output, any resolution) or one h x w tensor per job (e.g. read from files). Each
    map is resized bilinearly to its image's original size (:func:`upsample`; a per-job map
    already at that size is used as it is) and scored by every column.

    Returns float32 J x (1 + C) on ``device`` (default: the maps'): column 0 is 1.0 where the
    map holds a NaN or Inf (``map_invalid``, read before resizing), column 1 + c is metric
    column c, NaN where undefined. ``groups``: the batch's :func:`truth_groups` (built here when
    not given; pass them to score several methods against one truth). ``model``: the access
    metrics that require the model get (rows in job order). ``out``: write into this tensor.
    ``on_group(group, resized maps)``: called per group after scoring (saving maps)."""
    as_tensor = isinstance(maps, torch.Tensor)
    device = device or (maps.device if as_tensor else (maps[0].device if len(maps) else torch.device("cpu")))
    if groups is None:
        groups = truth_groups(batch, jobs, requirements(columns), device)
    values = out if out is not None else torch.full((len(jobs), len(columns) + 1), float("nan"), device=device)
    if as_tensor:
        with clock.stage("metrics"):
            # A map with a NaN or Inf anywhere is invalid, whatever the resize keeps of it.
            values[:, 0] = (~torch.isfinite(maps.flatten(1)).all(dim=1)).float()
    for g in groups:
        with clock.stage("upsample"):
            if as_tensor:
                up = upsample(maps if g.index is None else maps[g.index], g.size)
            else:
                up = torch.stack([resize_to(maps[n], g.size) for n in g.members]).to(device)
        with clock.stage("metrics"):
            if not as_tensor:
                _put(values, g.index, 0, (~torch.isfinite(up).flatten(1).all(dim=1)).float())
            stats = MapStats(up)
            access = model.rows(g.index) if model is not None else None
            for ci, col in enumerate(columns):
                _put(values, g.index, ci + 1, col.score(up, g.truth, stats=stats, model=access).float())
        if on_group is not None:
            on_group(g, up)
    return values


def resize_to(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One map H' x W' as float32 at ``size`` (bilinear, corners not aligned), untouched when it
    is already that size: how a map that comes on its own (a file) reaches its image's size."""
    m = m.float()
    if tuple(m.shape) != tuple(size):
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return m


def _put(values: torch.Tensor, index: torch.Tensor | None, column: int, score: torch.Tensor) -> None:
    if index is None:
        values[:, column] = score
    else:
        values[index, column] = score


def to_host(values: torch.Tensor, targets: torch.Tensor | None) -> tuple[list, list[int | None]]:
    """The batch's one device-to-host copy: the score table (methods x jobs x columns) and the
    jobs' model outputs, packed into one tensor (output indices are exact in float32 up to
    2**24). No targets (saved maps): every output is None."""
    if targets is None:
        return values.cpu().numpy().tolist(), [None] * values.shape[-2]
    packed = torch.cat([values.flatten(), targets.to(values.dtype)]).cpu().numpy()
    n = values.numel()
    table = packed[:n].reshape(values.shape).tolist()
    return table, [int(x) for x in packed[n:]]


def score_rows(
    spec: str,
    batch: Sequence[Prepared],
    jobs: Sequence[Job],
    labels: Sequence[str],
    columns: Sequence[MetricColumn],
    host: list,
    outputs: Sequence[int | None],
    failures: dict[tuple[int, int], str],
    strata: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score rows (method-major, jobs in batch order) and the skip records of failed (method,
    job) pairs (``failures``: (method, job) -> the reason), from the host copy of the score
    table (``host[method][job][column]``). ``strata``: per-target fields (:mod:`bench.data.strata`)
    each row records after its id columns."""
    rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    # Per target, not per method: the flag and the strata read whole masks on the host.
    difficult = [pointing_difficult(j.target, batch[j.item].targets) for j in jobs]
    extra = [target_strata(j.target, strata) for j in jobs]
    for mi, label in enumerate(labels):
        for n, j in enumerate(jobs):
            p = batch[j.item]
            if (mi, n) in failures:
                skips.append(results.skip_record(spec, p.index, p.image_id, j.target.label, failures[(mi, n)], method=label))
                continue
            values = host[mi][n]
            scores = {**extra[n], **{col.label: values[ci + 1] for ci, col in enumerate(columns)}}
            rows.append(results.score_row(spec, label, p.index, p.image_id, j.target.label, outputs[n], difficult[n], bool(values[0]), scores))
    return rows, skips


def save_maps(maps_dir: Path, spec: str, label: str, batch: Sequence[Prepared], jobs: Sequence[Job], maps: torch.Tensor) -> None:
    """Write each job's map (H x W float32, the original resolution) where
    :func:`bench.maps_io.map_path` puts it, atomically."""
    host = maps.detach().cpu().numpy()
    for j, m in zip(jobs, host):
        path = map_path(maps_dir, spec, label, batch[j.item].image_id, j.target.label)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, m.astype(np.float32))
        os.replace(tmp, path)


# -- one batch -------------------------------------------------------------------------------------


def score_batch(run: ModelRun, batch: Sequence[Prepared]) -> BatchResult:
    """Score rows and skip records of one batch (module doc), on ``run.device``, with one
    device-to-host copy."""
    clock = run.clock
    with clock.stage("prepare"):
        jobs, skips = expand_jobs(run, batch)
    if not jobs:
        return BatchResult({results.SCORE_ROWS.name: [], results.SKIP_ROWS.name: skips})
    with clock.stage("prepare"):
        inputs = model_inputs(batch, jobs, run.device)
    targets = resolve_targets(run, jobs, inputs)
    job_inputs = inputs.per_job
    with clock.stage("prepare"):
        groups = truth_groups(batch, jobs, run.requires, run.device)
        values = torch.full((len(run.methods), len(jobs), len(run.columns) + 1), float("nan"), device=run.device)
        access = None
        if MODEL in run.requires:
            access = ModelAccess(
                run.module, job_inputs, targets, run.chunk, lambda: autocast(run.autocast, run.device),
                run.input_space.maps if run.input_space is not None else None,
            )
    failures: dict[tuple[int, int], str] = {}
    kept: list[torch.Tensor] = []  # each method's maps, only for the run's features
    for mi, (label, method) in enumerate(run.methods):
        maps, errors = method_maps(run, label, method, batch, jobs, job_inputs, targets)
        if run.features:
            kept.append(maps)
        for n, err in errors.items():
            failures[(mi, n)] = f"method {label!r} failed: {err}"
        save = None
        if run.maps_dir is not None:
            save = lambda g, up, label=label: save_maps(run.maps_dir, run.spec, label, batch, [jobs[n] for n in g.members], up)  # noqa: E731
        score_maps(maps, batch, jobs, run.columns, device=run.device, groups=groups, model=access, clock=clock, out=values[mi], on_group=save)
    with clock.stage("to_host"):
        host, outputs = to_host(values, targets)
    with clock.stage("rows"):
        rows, failed = score_rows(run.spec, batch, jobs, [label for label, _ in run.methods], run.columns, host, outputs, failures, run.strata)
    out = {results.SCORE_ROWS.name: rows, results.SKIP_ROWS.name: skips + failed}
    if run.features:
        state = BatchMaps(batch, jobs, inputs, targets, groups, kept, values, failures)
        for feature in run.features:
            for name, extra in feature.rows(run, state).items():
                out.setdefault(name, []).extend(extra)
    return BatchResult(out)
