"""The run loop: batches through model, methods and metrics, rows streamed to disk.

For each model: a DataLoader decodes and preprocesses samples (workers when asked), each batch
is expanded into one job per (sample, target) the model can represent, every method attributes
all jobs in one call, maps are resized to their image's original size on the device, every
metric scores them there, and the batch's rows are copied to the host once and appended to
``scores.jsonl`` with one durable write. Maps are dropped after scoring, so memory stays flat as
the dataset grows.

Resume: after a batch's rows are durable its sample indices go to ``progress.jsonl``. A run
restarted with the same config drops rows of samples not in the progress file (a batch that was
being written when the run died) and continues with the samples not yet done, so there is
neither a duplicate nor a missing row whatever moment the run was killed at.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import provenance, results
from bench.batching import Job, Prepared, PreparedSamples, collate_prepared, truth_for
from bench.config import RunConfig
from bench.data.registry import load_dataset
from bench.methods import AttributionMethod, create_method
from bench.metrics import METRICS, MetricInfo
from bench.models import ModelBundle, load_model

TOP1 = "<top-1>"  # target label meaning "the model's top prediction" (gaze data)
PROGRESS = "progress.jsonl"


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
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def _prepare_out_dir(cfg: RunConfig, out: Path, resume: bool) -> dict[str, set[int]]:
    config_file = out / results.CONFIG
    resolved = json.dumps(cfg.to_dict(), sort_keys=True)
    if out.exists() and (out / results.SCORES).exists():
        previous = out / "config.json"
        if not resume:
            raise RunError(f"{out} already holds results; use --resume to continue, or another run name / --out")
        if previous.exists() and json.loads(previous.read_text()) != json.loads(resolved):
            raise RunError(
                f"{out} holds results of a different config ({previous}); "
                "a resumed run must use the same config"
            )
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
) -> RunSummary:
    """Run ``cfg``; results go to ``out_dir`` (default ``<cfg.output_dir>/<cfg.name>``)."""
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name
    device = resolve_device(cfg.device)
    dataset = load_dataset(cfg.dataset.name, **cfg.dataset.params)
    methods = _methods(cfg)
    columns = _metric_columns(cfg)
    requires = {r for c in columns for r in c.info.requires}
    done = _prepare_out_dir(cfg, out, resume)
    summary = RunSummary(out_dir=out, resumed_samples=sum(len(v) for v in done.values()))

    manifest = getattr(dataset, "manifest", None)
    prov = provenance.collect(cfg.to_dict(), device, manifest)
    prov["shard"] = list(shard) if shard else None
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
            bundle = load_model(model_cfg.name, seed=cfg.seed, **model_cfg.params)
            models_info[bundle.spec] = {
                "info": bundle.info,
                "target_layer": bundle.target_layer,
                "methods": {label: m.with_model_defaults(bundle.target_layer).describe() for label, m in methods},
            }
            results.write_json(models_file, models_info)
            todo = [i for i in indices if i not in done.get(bundle.spec, set())]
            counts = _run_model(cfg, bundle, dataset, todo, methods, columns, requires, device, scores, skipped, progress_log, progress, on_batch, out)
            summary.rows_written += counts[0]
            summary.skipped += counts[1]
            summary.models[bundle.spec] = bundle.info
    summary.seconds = time.perf_counter() - t0
    return summary


def _resolve_outputs(bundle: ModelBundle, label: str, n_outputs: int | None) -> list[int]:
    if label == TOP1:
        return [-1]  # resolved per image from the logits
    return bundle.class_map.indices(label)


def _run_model(cfg, bundle, dataset, todo, methods, columns, requires, device, scores, skipped, progress_log, show_progress, on_batch, out):
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
    for batch_no, batch in enumerate(loader):
        rows, skips = _score_batch(cfg, bundle, model, batch, methods, columns, requires, device, out)
        scores.write(rows)
        skipped.write(skips)
        progress_log.write([{"model": bundle.spec, "samples": [p.index for p in batch]}])
        n_rows += len(rows)
        n_skipped += len(skips)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(batch_no)
    bar.close()
    return n_rows, n_skipped


def _skip(bundle: ModelBundle, p: Prepared, target: str | None, reason: str) -> dict[str, Any]:
    return {"model": bundle.spec, "sample": p.index, "image_id": p.image_id, "target": target, "reason": reason}


def _score_batch(cfg, bundle, model, batch: list[Prepared], methods, columns, requires, device, out):
    skips: list[dict[str, Any]] = []
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
            jobs.append(Job(pos, t, candidates=cands))
    if not jobs:
        return [], skips

    used = sorted({j.item for j in jobs})
    slot = {item: k for k, item in enumerate(used)}
    inputs = torch.stack([batch[i].input for i in used]).to(device, non_blocking=True)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    if any(len(j.candidates) > 1 or j.candidates == [-1] for j in jobs):
        # Several outputs stand for a class (or "the top prediction"): per image, the one with
        # the highest logit is the target.
        with torch.no_grad():
            logits = model(inputs)
        for j in jobs:
            row = logits[slot[j.item]]
            if j.candidates == [-1]:
                j.output = int(row.argmax())
            else:
                cand = torch.as_tensor(j.candidates, device=row.device)
                j.output = int(cand[row[cand].argmax()])
    else:
        for j in jobs:
            j.output = j.candidates[0]
    job_inputs = inputs[torch.as_tensor([slot[j.item] for j in jobs], device=device)]
    targets = torch.as_tensor([j.output for j in jobs], device=device)

    # Group jobs by original image size so that maps and masks of a group stack.
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n, j in enumerate(jobs):
        groups[batch[j.item].size].append(n)
    truths = {size: truth_for([jobs[n] for n in members], batch, requires, device) for size, members in groups.items()}

    values = torch.full((len(methods), len(jobs), len(columns) + 1), float("nan"), device=device)
    failures: dict[tuple[int, int], str] = {}
    for mi, (label, method) in enumerate(methods):
        seeds = [item_seed(cfg.seed, batch[j.item].image_id, j.target.label, label) for j in jobs]
        maps, errors = _attribute(method, model, job_inputs, targets, seeds)
        for n, err in errors.items():
            failures[(mi, n)] = err
        for size, members in groups.items():
            idx = torch.as_tensor(members, device=device)
            up = F.interpolate(maps[idx][:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
            values[mi, idx, 0] = (~torch.isfinite(up).flatten(1).all(dim=1)).float()
            for ci, col in enumerate(columns):
                values[mi, idx, ci + 1] = col.info.score(up, truths[size], **col.params).float()
            if cfg.save_maps:
                _save_maps(out, bundle.spec, label, [jobs[n] for n in members], batch, up)
    host = values.cpu().tolist()  # the one device-to-host copy of the batch

    rows = []
    for mi, (label, _method) in enumerate(methods):
        for n, j in enumerate(jobs):
            p = batch[j.item]
            if (mi, n) in failures:
                skips.append({**_skip(bundle, p, j.target.label, f"method {label!r} failed: {failures[(mi, n)]}"), "method": label})
                continue
            area = float(j.target.mask.float().mean())
            row = {
                "model": bundle.spec,
                "method": label,
                "sample": p.index,
                "image_id": p.image_id,
                "target": j.target.label,
                "output": j.output,
                "difficult": bool(area < 0.25 and len(p.targets) > 1),
                "annotated_difficult": bool(j.target.difficult),
                "map_invalid": bool(host[mi][n][0]),
            }
            for ci, col in enumerate(columns):
                row[col.label] = host[mi][n][ci + 1]
            rows.append(row)
    return rows, skips


def _attribute(method, model, inputs, targets, seeds) -> tuple[torch.Tensor, dict[int, str]]:
    """Attribute the whole batch; if the method raises, retry image by image so that one bad
    sample costs only its own rows (recorded as skipped, with the error)."""
    try:
        maps = method(model, inputs, targets, seeds=seeds)
        _check_maps(maps, inputs)
        return maps, {}
    except (RuntimeError, ValueError, FloatingPointError):
        pass
    parts: dict[int, torch.Tensor] = {}
    errors: dict[int, str] = {}
    for n in range(inputs.shape[0]):
        try:
            one = method(model, inputs[n : n + 1], targets[n : n + 1], seeds=seeds[n : n + 1])
            _check_maps(one, inputs[n : n + 1])
            parts[n] = one[0]
        except (RuntimeError, ValueError, FloatingPointError) as exc:
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
