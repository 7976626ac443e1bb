"""The run loop: batches through model, methods and metrics, rows streamed to disk.

For each model: a DataLoader decodes and preprocesses samples (workers when asked), each batch
is expanded into one job per (sample, target) the model can represent, every method attributes
all jobs in one call, maps are resized to their image's original size on the device, every
metric scores them there, and the batch's rows are copied to the host once and appended to
``scores.jsonl`` with one durable write. Maps are dropped after scoring, so memory stays flat as
the dataset grows. That host copy is the loop's only synchronisation with the device (inputs
arrive stacked and pinned, index lists go up without blocking, multi-output classes are
resolved on the device), so a GPU's queue never drains mid-batch; ``tests/test_perf_harness.py``
checks this on any device and ``groundbench perf`` measures how close the loop comes to the
model's own passes.

Sharding: ``shard=(K, N)`` scores only samples ``i % N == K``; each shard writes its own
directory and :mod:`bench.merge` combines them into the single-process result.

Resume: after a batch's rows are durable its sample indices go to ``progress.jsonl``. A run
restarted with the same config drops rows of samples not in the progress file (a batch that was
being written when the run died) and continues with the samples not yet done, so there is
neither a duplicate nor a missing row whatever moment the run was killed at. A resumed run
must have the same config (``num_workers`` and ``output_dir`` aside) and the same code
(package versions, git commit) as the session that wrote the rows; otherwise it stops before
touching them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import provenance, results
from bench.batching import Job, Prepared, PreparedSamples, collate_prepared, target_problem, truth_for
from bench.config import RunConfig
from bench.data.annotations import pointing_difficult
from bench.data.registry import load_dataset
from bench.methods import AttributionMethod, create_method
from bench.metrics import METRICS, MetricInfo
from bench.models import ModelBundle, load_model
from bench.data.sample import TOP1
from bench.sharding import local_device_index

PROGRESS = "progress.jsonl"


class StageClock(Protocol):
    """What :func:`run_config` needs of a timer: ``stage(name)`` gives a context manager."""

    def stage(self, name: str) -> ContextManager[Any]: ...


class _NoClock:
    def stage(self, name: str) -> ContextManager[Any]:
        return contextlib.nullcontext()


_NO_TIMER = _NoClock()


class RunError(RuntimeError):
    """The run cannot go on; rows already written are kept."""


@dataclass
class MetricColumn:
    label: str
    info: MetricInfo
    params: dict[str, Any]


@dataclass
class RunSummary:
    out_dir: Path
    rows_written: int = 0
    skipped: int = 0
    resumed_samples: int = 0
    seconds: float = 0.0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # One process per GPU under torchrun / srun: each takes its own local GPU.
        return torch.device("cuda", local_device_index(device_count=torch.cuda.device_count()))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def item_seed(run_seed: int, image_id: str, target: str, method: str) -> int:
    """A per-(image, target, method) seed: independent of batch composition, shard and resume."""
    digest = hashlib.sha256(f"{run_seed}|{image_id}|{target}|{method}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def shard_indices(n: int, shard: tuple[int, int] | None) -> list[int]:
    if shard is None:
        return list(range(n))
    k, count = shard
    if not (count >= 1 and 0 <= k < count):
        raise RunError(f"shard {k}/{count} is invalid: need 0 <= K < N")
    return list(range(k, n, count))


def _metric_columns(cfg: RunConfig) -> list[MetricColumn]:
    return [MetricColumn(m.label or m.name, METRICS.get(m.name), dict(m.params)) for m in cfg.metrics]


def _methods(cfg: RunConfig) -> list[tuple[str, AttributionMethod]]:
    out = []
    for m in cfg.methods:
        method = create_method(m.name, **m.params)
        out.append((m.label or method.label, method))
    return out


def _load_progress(out: Path) -> dict[str, set[int]]:
    done: dict[str, set[int]] = defaultdict(set)
    for rec in results.read_rows(out / PROGRESS):
        done[rec["model"]].update(int(i) for i in rec["samples"])
    return done


def _drop_unfinished(path: Path, done: dict[str, set[int]]) -> int:
    """Rewrite ``path`` without rows of samples whose batch never completed."""
    if not path.exists():
        return 0
    rows = results.read_rows(path)
    keep = [r for r in rows if int(r["sample"]) in done.get(r["model"], set())]
    if len(keep) != len(rows) or path.read_bytes()[-1:] not in (b"\n", b""):
        results.write_text(path, "".join(results.encode_row(r) + "\n" for r in keep))
    return len(rows) - len(keep)


# Config keys that change how a run is executed but not a single score row: a resumed run may
# differ in these (more decoding workers, a results folder that was moved).
EXECUTION_ONLY_KEYS = ("num_workers", "output_dir")
# Provenance identity fields that must match for rows of two sessions to be one run.
CODE_IDENTITY_KEYS = ("packages", "python", "torch", "git_commit")


def _same_run_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in EXECUTION_ONLY_KEYS}  # noqa: E731
    return strip(a) == strip(b)


def _check_same_code(out: Path, prov: dict[str, Any]) -> None:
    """A resumed run appends to rows an earlier session wrote: refuse if the code that wrote
    them (package versions, Python, torch, git commit) is not the code running now."""
    path = out / results.PROVENANCE
    if not path.exists():
        return
    try:
        before = json.loads(path.read_text()).get("identity", {})
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the earlier session's provenance ({exc})") from exc
    now = prov["identity"]
    changed = [k for k in CODE_IDENTITY_KEYS if before.get(k) != now.get(k)]
    if changed:
        detail = "; ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in changed)
        raise RunError(
            f"{out} holds rows written by other code ({detail}); resuming would mix them. "
            "Start it again with --fresh, or use another run name / --out"
        )


def _check_same_config(cfg: RunConfig, out: Path) -> None:
    previous = out / "config.json"
    resolved = json.loads(json.dumps(cfg.to_dict(), sort_keys=True))
    if previous.exists() and not _same_run_config(json.loads(previous.read_text()), resolved):
        raise RunError(
            f"{out} holds results of a different config ({previous}); "
            "a resumed run must use the same config (only num_workers and output_dir may change)"
        )


def _prepare_out_dir(cfg: RunConfig, out: Path, resume: bool) -> dict[str, set[int]]:
    config_file = out / results.CONFIG
    resolved = json.dumps(cfg.to_dict(), sort_keys=True)
    if out.exists() and (out / results.SCORES).exists():
        if not resume:
            raise RunError(f"{out} already holds results; use --resume to continue, or another run name / --out")
        _check_same_config(cfg, out)
        done = _load_progress(out)
        _drop_unfinished(out / results.SCORES, done)
        _drop_unfinished(out / results.SKIPPED, done)
        return done
    out.mkdir(parents=True, exist_ok=True)
    results.write_text(config_file, _to_toml(cfg.to_dict()))
    results.write_text(out / "config.json", resolved + "\n")
    return defaultdict(set)


def _to_toml(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)


def run_config(
    cfg: RunConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    timer: StageClock | None = None,
) -> RunSummary:
    """Run ``cfg``; results go to ``out_dir`` (default ``<cfg.output_dir>/<cfg.name>``).

    ``on_batch(batch_no)`` is called after each batch's rows are durable. ``timer``, if given,
    is any object whose ``stage(name)`` returns a context manager (e.g.
    :class:`bench.perf.StageTimer`): each batch's work is wrapped in stages ``load``,
    ``prepare``, ``resolve``, ``attribute``, ``upsample``, ``metrics``, ``to_host``, ``rows``
    and ``write``. The engine itself never synchronises the device for it; on an asynchronous
    device a stage's time is the host's until the timer chooses to synchronise."""
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name
    device = resolve_device(cfg.device)
    try:
        dataset = load_dataset(cfg.dataset.name, **cfg.dataset.params)
    except (TypeError, KeyError) as exc:
        # A parameter the loader does not take, or an unknown name: the config's fault.
        raise RunError(f"{cfg.source}: [dataset] {cfg.dataset.name!r}: {exc}") from exc
    methods = _methods(cfg)
    columns = _metric_columns(cfg)
    requires = {r for c in columns for r in c.info.requires}
    manifest = getattr(dataset, "manifest", None)
    prov = provenance.collect(cfg.to_dict(), device, manifest)
    prov["shard"] = list(shard) if shard else None
    prov["dataset_size"] = len(dataset)  # lets `groundbench merge` check that shards cover it
    resuming = (out / results.SCORES).exists()
    if resuming and resume:
        # The config first: a different config is the likelier mistake and the clearer message.
        _check_same_config(cfg, out)
        _check_same_code(out, prov)
    done = _prepare_out_dir(cfg, out, resume)
    summary = RunSummary(out_dir=out, resumed_samples=sum(len(v) for v in done.values()))
    if resuming:
        _keep_session_times(out, prov)
    results.write_json(out / results.PROVENANCE, prov)
    # A list, not a mapping: the config's column order is the table's column order.
    results.write_json(
        out / "columns.json",
        [{**c.info.describe(), "label": c.label, "params": {**c.info.defaults, **c.params}} for c in columns],
    )
    models_file = out / results.MODELS
    models_info = json.loads(models_file.read_text()) if models_file.exists() else {}

    indices = shard_indices(len(dataset), shard)
    with results.RowWriter(out / results.SCORES) as scores, results.RowWriter(
        out / results.SKIPPED
    ) as skipped, results.RowWriter(out / PROGRESS) as progress_log:
        for model_cfg in cfg.models:
            try:
                bundle = load_model(model_cfg.name, seed=cfg.seed, **model_cfg.params)
            except (TypeError, KeyError) as exc:
                raise RunError(f"{cfg.source}: model {model_cfg.name!r}: {exc}") from exc
            models_info[bundle.spec] = {
                "info": bundle.info,
                "target_layer": bundle.target_layer,
                "methods": {label: m.with_model_defaults(bundle.target_layer).describe() for label, m in methods},
            }
            results.write_json(models_file, models_info)
            todo = [i for i in indices if i not in done.get(bundle.spec, set())]
            counts = _run_model(cfg, bundle, dataset, todo, methods, columns, requires, device, scores, skipped, progress_log, progress, on_batch, out, timer or _NO_TIMER)
            summary.rows_written += counts[0]
            summary.skipped += counts[1]
            summary.models[bundle.spec] = bundle.info
    prov["data"] = data_hashes(out)
    results.write_json(out / results.PROVENANCE, prov)
    summary.seconds = time.perf_counter() - t0
    return summary


def _keep_session_times(out: Path, prov: dict[str, Any]) -> None:
    """A resumed run keeps the first session's start time and lists when it was resumed."""
    try:
        before = json.loads((out / results.PROVENANCE).read_text())
    except (OSError, ValueError):
        return
    if "started_utc" in before:
        prov["resumed_utc"] = [*before.get("resumed_utc", []), prov["started_utc"]]
        prov["started_utc"] = before["started_utc"]


def data_hashes(out: Path) -> dict[str, dict[str, Any]]:
    """Per model: how many samples were read and one sha256 over their digests (the model
    input after preprocessing and all ground truth; see :func:`bench.batching.sample_digest`)
    in sample order. Two runs with equal hashes consumed exactly the same data, however it was
    stored or loaded; a sample that failed to load counts with its error instead."""
    per_model: dict[str, dict[int, str]] = defaultdict(dict)
    for rec in results.read_rows(out / PROGRESS):
        digests = rec.get("digests") or [None] * len(rec["samples"])
        for index, digest in zip(rec["samples"], digests):
            per_model[rec["model"]][int(index)] = digest if isinstance(digest, str) else "-"
    hashed = {}
    for model, digests in per_model.items():
        h = hashlib.sha256()
        for index in sorted(digests):
            h.update(f"{index}:{digests[index]}\n".encode())
        hashed[model] = {"samples": len(digests), "sha256": h.hexdigest()}
    return hashed


def _resolve_outputs(bundle: ModelBundle, label: str, n_outputs: int | None) -> list[int]:
    if label == TOP1:
        return [-1]  # resolved per image from the logits
    return bundle.class_map.indices(label)


def _run_model(cfg, bundle, dataset, todo, methods, columns, requires, device, scores, skipped, progress_log, show_progress, on_batch, out, clock):
    model = bundle.module.to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        PreparedSamples(dataset, bundle.preprocess, todo),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate_prepared,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    methods = [(label, m.with_model_defaults(bundle.target_layer)) for label, m in methods]
    n_rows = n_skipped = 0
    bar = tqdm(total=len(todo), desc=bundle.spec, unit="img", disable=not show_progress, file=sys.stderr)
    batches = iter(loader)
    for batch_no in itertools.count():
        with clock.stage("load"):
            batch = next(batches, None)
        if batch is None:
            break
        rows, skips = _score_batch(cfg, bundle, model, batch, methods, columns, requires, device, out, clock)
        with clock.stage("write"):
            scores.write(rows)
            skipped.write(skips)
            progress_log.write([{"model": bundle.spec, "samples": [p.index for p in batch], "digests": [p.digest for p in batch]}])
        n_rows += len(rows)
        n_skipped += len(skips)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(batch_no)
    bar.close()
    return n_rows, n_skipped


def _skip(bundle: ModelBundle, p: Prepared, target: str | None, reason: str) -> dict[str, Any]:
    return {"model": bundle.spec, "sample": p.index, "image_id": p.image_id, "target": target, "reason": reason}


def _score_batch(cfg, bundle, model, batch: list[Prepared], methods, columns, requires, device, out, clock: StageClock):
    skips: list[dict[str, Any]] = []
    with clock.stage("prepare"):
        jobs = _jobs(bundle, batch, skips)
    if not jobs:
        return [], skips

    # Nothing below waits for the device until the batch's one host copy (``_to_host``):
    # index lists go up with non-blocking copies, class resolution stays on the device, and
    # map validity is read from the method's own maps, all of which keeps a GPU queue full.
    with clock.stage("prepare"):
        used = sorted({j.item for j in jobs})
        slot = {item: k for k, item in enumerate(used)}
        inputs = _batch_inputs(batch, used, device)
        job_slots = [slot[j.item] for j in jobs]
        # One job per image (the common case): the batch is the jobs' input, no gather.
        job_inputs = inputs if job_slots == list(range(len(used))) else inputs[_index(job_slots, device)]
    if any(len(j.candidates) > 1 or j.candidates == [-1] for j in jobs):
        # Several outputs stand for a class (or "the top prediction"): per image, the one with
        # the highest logit is the target.
        with clock.stage("resolve"), torch.no_grad(), _autocast(cfg, device):
            logits = model(inputs)
        targets = _max_logit_targets(jobs, logits[_index(job_slots, device)], device)
    else:
        targets = _index([j.candidates[0] for j in jobs], device)

    with clock.stage("prepare"):
        # Group jobs by original image size so that maps and masks of a group stack.
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for n, j in enumerate(jobs):
            groups[batch[j.item].size].append(n)
        truths = {size: truth_for([jobs[n] for n in members], batch, requires, device) for size, members in groups.items()}
        group_index = {size: None if len(members) == len(jobs) else _index(members, device) for size, members in groups.items()}
        values = torch.full((len(methods), len(jobs), len(columns) + 1), float("nan"), device=device)
    failures: dict[tuple[int, int], str] = {}
    for mi, (label, method) in enumerate(methods):
        seeds = [item_seed(cfg.seed, batch[j.item].image_id, j.target.label, label) for j in jobs]
        with clock.stage("attribute"), _autocast(cfg, device):
            maps, errors = _attribute(method, model, job_inputs, targets, seeds)
        for n, err in errors.items():
            failures[(mi, n)] = err
        with clock.stage("metrics"):
            # A map with a NaN or Inf anywhere is invalid, whatever the resize keeps of it.
            values[mi, :, 0] = (~torch.isfinite(maps.flatten(1)).all(dim=1)).float()
        for size, members in groups.items():
            idx = group_index[size]
            with clock.stage("upsample"):
                group_maps = maps if idx is None else maps[idx]
                up = F.interpolate(group_maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
            with clock.stage("metrics"):
                for ci, col in enumerate(columns):
                    score = col.info.score(up, truths[size], **col.params).float()
                    if idx is None:
                        values[mi, :, ci + 1] = score
                    else:
                        values[mi, idx, ci + 1] = score
            if cfg.save_maps:
                _save_maps(out, bundle.spec, label, [jobs[n] for n in members], batch, up)
    with clock.stage("to_host"):
        host, outputs = _to_host(values, targets)

    with clock.stage("rows"):
        rows = _rows(bundle, batch, jobs, methods, columns, host, outputs, failures, skips)
    return rows, skips


def _jobs(bundle: ModelBundle, batch: list[Prepared], skips: list[dict[str, Any]]) -> list[Job]:
    """One job per (sample, target) the model can represent; the rest go to ``skips``."""
    jobs: list[Job] = []
    for pos, p in enumerate(batch):
        if p.error is not None:
            skips.append(_skip(bundle, p, None, f"sample not loaded: {p.error}"))
            continue
        if not p.targets:
            skips.append(_skip(bundle, p, None, "no targets in this image"))
            continue
        for t in p.targets:
            cands = _resolve_outputs(bundle, t.label, None)
            if not cands:
                skips.append(_skip(bundle, p, t.label, f"class {t.label!r} has no output in {bundle.spec}'s class map"))
                continue
            problem = target_problem(t, p)
            if problem is not None:
                skips.append(_skip(bundle, p, t.label, problem))
                continue
            jobs.append(Job(pos, t, candidates=cands))
    return jobs


def _rows(bundle, batch, jobs, methods, columns, host, outputs, failures, skips) -> list[dict[str, Any]]:
    rows = []
    # Per target, not per method: the flag reads whole masks on the host.
    difficult = [pointing_difficult(j.target, batch[j.item].targets) for j in jobs]
    for mi, (label, _method) in enumerate(methods):
        for n, j in enumerate(jobs):
            p = batch[j.item]
            if (mi, n) in failures:
                skips.append({**_skip(bundle, p, j.target.label, f"method {label!r} failed: {failures[(mi, n)]}"), "method": label})
                continue
            row = {
                "model": bundle.spec,
                "method": label,
                "sample": p.index,
                "image_id": p.image_id,
                "target": j.target.label,
                "output": outputs[n],
                "difficult": difficult[n],
                "annotated_difficult": bool(j.target.difficult),
                "map_invalid": bool(host[mi][n][0]),
            }
            for ci, col in enumerate(columns):
                row[col.label] = host[mi][n][ci + 1]
            rows.append(row)
    return rows


def _index(values: list[int], device: torch.device) -> torch.Tensor:
    """A host list as a long tensor on ``device``. The copy is non-blocking, so the host does not
    wait for the device's queue to drain (a blocking copy would: a hidden synchronisation)."""
    return torch.tensor(values, dtype=torch.long).to(device, non_blocking=True)


def _batch_inputs(batch: list[Prepared], used: list[int], device: torch.device) -> torch.Tensor:
    """The model inputs of batch positions ``used`` on ``device``, channels_last. A batch from
    :func:`bench.batching.collate_prepared` brings them stacked (pinned, when the DataLoader
    pins memory), so the upload is one asynchronous copy."""
    stacked = getattr(batch, "inputs", None)
    if stacked is not None:
        rows = [batch.input_rows[i] for i in used]
        host = stacked if rows == list(range(stacked.shape[0])) else stacked[rows]
    else:
        host = torch.stack([batch[i].input for i in used])
    return host.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _max_logit_targets(jobs: list[Job], logits: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Per job, the candidate output with the highest logit (every output for the top-1
    label), computed on the device: J x K logits, one row per job. Ties go to the lowest output
    index."""
    allowed = torch.zeros(logits.shape, dtype=torch.bool)
    for n, j in enumerate(jobs):
        if j.candidates == [-1]:
            allowed[n] = True
        else:
            allowed[n, j.candidates] = True
    allowed = allowed.to(device, non_blocking=True)
    return logits.float().masked_fill(~allowed, -math.inf).argmax(dim=1)


def _autocast(cfg: RunConfig, device: torch.device) -> ContextManager[Any]:
    """The config's mixed precision for the model passes (``autocast = "bf16"``), else none."""
    dtype = {"bf16": torch.bfloat16}.get(cfg.autocast)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_host(values: torch.Tensor, targets: torch.Tensor) -> tuple[list, list[int]]:
    """The batch's one device-to-host copy: the score table (methods x jobs x columns) and the
    jobs' model outputs, packed into one tensor (output indices are exact in float32 up to
    2**24)."""
    packed = torch.cat([values.flatten(), targets.to(values.dtype)]).cpu().numpy()
    n = values.numel()
    table = packed[:n].reshape(values.shape).tolist()
    return table, [int(x) for x in packed[n:]]


def _attribute(method, model, inputs, targets, seeds) -> tuple[torch.Tensor, dict[int, str]]:
    """Attribute the whole batch; if the method raises, retry image by image so that one bad
    sample costs only its own rows (recorded as skipped, with the error).

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


def _save_maps(out: Path, model_spec: str, method: str, jobs: list[Job], batch: list[Prepared], maps: torch.Tensor) -> None:
    from bench.maps_io import map_path

    host = maps.detach().cpu().numpy()
    for j, m in zip(jobs, host):
        path = map_path(out / "maps", model_spec, method, batch[j.item].image_id, j.target.label)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, m.astype(np.float32))
        os.replace(tmp, path)
