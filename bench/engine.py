"""The run loop: datasets, models and devices, batches streamed through the scoring core to
durable rows, resume and sharding.

For each model: a DataLoader decodes and preprocesses samples (workers when asked), and each
batch goes through :func:`bench.scoring.score_batch` (jobs, targets, every method's maps,
every metric on the device, one host copy); the batch's rows of every row stream are then
appended with one durable write each and the batch is marked done (:mod:`bench.results`). Maps
are dropped after scoring, so memory stays flat as the dataset grows. That host copy is the
loop's only synchronisation with the device, so a GPU's queue never drains mid-batch;
``tests/test_perf_harness.py`` checks this on any device and ``groundbench perf`` measures how
close the loop comes to the model's own passes.

Sharding: ``shard=(K, N)`` scores only samples ``i % N == K``; each shard writes its own
directory and :mod:`bench.merge` combines them into the single-process result.

Resume: after a batch's rows are durable its sample indices go to ``progress.jsonl``. A run
restarted with the same config drops rows of samples not in the progress file from every row
stream (a batch that was being written when the run died) and continues with the samples not
yet done, so there is neither a duplicate nor a missing row whatever moment the run was killed
at. A resumed run
must have the same config (``num_workers`` and ``output_dir`` aside) and the same code
(package versions, git commit) as the session that wrote the rows; otherwise it stops before
touching them.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import provenance, results
from bench.batching import Prepared, PreparedSamples, collate_prepared
from bench.config import RunConfig
from bench.data.registry import load_dataset
from bench.methods import AttributionMethod, create_method
from bench.models import load_model
from bench.scoring import NO_CLOCK, BatchResult, ModelRun, StageClock, metric_columns, score_batch
from bench.sharding import check_shard, local_device_index


class RunError(RuntimeError):
    """The run cannot go on; rows already written are kept."""


@dataclass
class RunSummary:
    out_dir: Path
    rows_written: int = 0
    skipped: int = 0
    resumed_samples: int = 0
    seconds: float = 0.0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)


BatchScorer = Callable[[ModelRun, Sequence[Prepared]], BatchResult]


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


def shard_indices(n: int, shard: tuple[int, int] | None) -> list[int]:
    """The dataset indices shard (K, N) scores: ``i % N == K`` (all of them without a shard)."""
    if shard is None:
        return list(range(n))
    k, count = check_shard(shard[0], shard[1], "shard")
    return list(range(k, n, count))


def methods_of(cfg: RunConfig) -> list[tuple[str, AttributionMethod]]:
    """The config's methods, each under its label (the config's, else the method's own)."""
    out = []
    for m in cfg.methods:
        method = create_method(m.name, **m.params)
        out.append((m.label or method.label, method))
    return out


# Config keys that change how a run is executed but not a single score row: a resumed run may
# differ in these (more decoding workers, a results folder that was moved).
EXECUTION_ONLY_KEYS = ("num_workers", "output_dir")
# Provenance identity fields that must match for rows of two sessions to be one run.
CODE_IDENTITY_KEYS = ("packages", "python", "torch", "git_commit")


def _same_run_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in EXECUTION_ONLY_KEYS}  # noqa: E731
    return strip(a) == strip(b)


def _check_same_code(out: results.ResultsDir, prov: dict[str, Any]) -> None:
    """A resumed run appends to rows an earlier session wrote: refuse if the code that wrote
    them (package versions, Python, torch, git commit) is not the code running now."""
    path = out / results.PROVENANCE
    if not path.exists():
        return
    try:
        before = out.provenance().get("identity", {})
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the earlier session's provenance ({exc})") from exc
    now = prov["identity"]
    changed = [k for k in CODE_IDENTITY_KEYS if before.get(k) != now.get(k)]
    if changed:
        detail = "; ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in changed)
        raise RunError(
            f"{out.path} holds rows written by other code ({detail}); resuming would mix them. "
            "Start it again with --fresh, or use another run name / --out"
        )


def _check_same_config(cfg: RunConfig, out: results.ResultsDir) -> None:
    previous = out / results.CONFIG_JSON
    resolved = json.loads(json.dumps(cfg.to_dict(), sort_keys=True))
    if previous.exists() and not _same_run_config(out.config(), resolved):
        raise RunError(
            f"{out.path} holds results of a different config ({previous}); "
            "a resumed run must use the same config (only num_workers and output_dir may change)"
        )


def _prepare_out_dir(cfg: RunConfig, out: results.ResultsDir, resume: bool, columns: list[dict[str, Any]]) -> dict[str, set[int]]:
    """The samples already done per model: after dropping unfinished rows from every stream
    (a resumed run), or none (a new run, whose header is written now)."""
    if out.path.exists() and out.has_rows():
        if not resume:
            raise RunError(f"{out.path} already holds results; use --resume to continue, or another run name / --out")
        _check_same_config(cfg, out)
        done = out.done()
        out.drop_unfinished(done)
        return done
    out.write_header(cfg.to_dict(), columns)
    return {}


def run_config(
    cfg: RunConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    timer: StageClock | None = None,
    scorer: BatchScorer = score_batch,
) -> RunSummary:
    """Run ``cfg``; results go to ``out_dir`` (default ``<cfg.output_dir>/<cfg.name>``).

    ``on_batch(batch_no)`` is called after each batch's rows are durable. ``timer``, if given,
    is any object whose ``stage(name)`` returns a context manager (e.g.
    :class:`bench.perf.StageTimer`): each batch's work is wrapped in stages ``load``,
    ``prepare``, ``resolve``, ``attribute``, ``upsample``, ``metrics``, ``to_host``, ``rows``
    and ``write``. The engine itself never synchronises the device for it; on an asynchronous
    device a stage's time is the host's until the timer chooses to synchronise. ``scorer``: the
    per-batch call, :func:`bench.scoring.score_batch` (``groundbench perf`` wraps it to watch
    each batch)."""
    t0 = time.perf_counter()
    out = results.ResultsDir(Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / cfg.name)
    device = resolve_device(cfg.device)
    try:
        dataset = load_dataset(cfg.dataset.name, **cfg.dataset.params)
    except (TypeError, KeyError) as exc:
        # A parameter the loader does not take, or an unknown name: the config's fault.
        raise RunError(f"{cfg.source}: [dataset] {cfg.dataset.name!r}: {exc}") from exc
    methods = methods_of(cfg)
    columns = metric_columns(cfg.metrics)
    manifest = getattr(dataset, "manifest", None)
    prov = provenance.collect(cfg.to_dict(), device, manifest)
    prov["shard"] = list(shard) if shard else None
    prov["dataset_size"] = len(dataset)  # lets `groundbench merge` check that shards cover it
    resuming = out.has_rows()
    if resuming and resume:
        # The config first: a different config is the likelier mistake and the clearer message.
        _check_same_config(cfg, out)
        _check_same_code(out, prov)
    column_info = [c.describe() for c in columns]
    done = _prepare_out_dir(cfg, out, resume, column_info)
    summary = RunSummary(out_dir=out.path, resumed_samples=sum(len(v) for v in done.values()))
    if resuming:
        _keep_session_times(out, prov)
    results.write_json(out / results.PROVENANCE, prov)
    results.write_json(out / results.COLUMNS, column_info)
    models_file = out / results.MODELS
    models_info = json.loads(models_file.read_text()) if models_file.exists() else {}
    clock = timer or NO_CLOCK

    indices = shard_indices(len(dataset), shard)
    with out.open() as writer:
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
            run = ModelRun.for_model(
                bundle, methods, columns, device, seed=cfg.seed, autocast=cfg.autocast, clock=clock,
                maps_dir=out / results.MAPS if cfg.save_maps else None,
            )
            todo = [i for i in indices if i not in done.get(bundle.spec, set())]
            loader = sample_loader(dataset, bundle.preprocess, todo, cfg, device)
            n_rows, n_skipped = _run_model(run, loader, len(todo), writer, scorer, progress, on_batch)
            summary.rows_written += n_rows
            summary.skipped += n_skipped
            summary.models[bundle.spec] = bundle.info
    prov["data"] = out.data_hashes()
    results.write_json(out / results.PROVENANCE, prov)
    summary.seconds = time.perf_counter() - t0
    return summary


def _keep_session_times(out: results.ResultsDir, prov: dict[str, Any]) -> None:
    """A resumed run keeps the first session's start time and lists when it was resumed."""
    try:
        before = out.provenance()
    except (OSError, ValueError):
        return
    if "started_utc" in before:
        prov["resumed_utc"] = [*before.get("resumed_utc", []), prov["started_utc"]]
        prov["started_utc"] = before["started_utc"]


def sample_loader(dataset: Any, preprocess: Callable[[torch.Tensor], torch.Tensor], indices: Sequence[int], cfg: RunConfig, device: torch.device) -> DataLoader:
    """Batches of :class:`~bench.batching.Prepared` samples ``indices`` in order: decoded and
    preprocessed in ``cfg.num_workers`` DataLoader workers, stacked there, pinned for CUDA."""
    return DataLoader(
        PreparedSamples(dataset, preprocess, indices),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.num_workers,
        collate_fn=collate_prepared,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _run_model(run: ModelRun, loader: DataLoader, total: int, writer: results.BatchWriter, scorer: BatchScorer, show_progress: bool, on_batch: Callable[[int], None] | None) -> tuple[int, int]:
    n_rows = n_skipped = 0
    bar = tqdm(total=total, desc=run.spec, unit="img", disable=not show_progress, file=sys.stderr)
    batches = iter(loader)
    for batch_no in itertools.count():
        with run.clock.stage("load"):
            batch = next(batches, None)
        if batch is None:
            break
        result = scorer(run, batch)
        with run.clock.stage("write"):
            writer.commit(run.spec, [p.index for p in batch], [p.digest for p in batch], result.rows)
        n_rows += len(result.scores)
        n_skipped += len(result.skipped)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(batch_no)
    bar.close()
    return n_rows, n_skipped
