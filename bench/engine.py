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
at (skip records and the loader's drop records included: a skip is never recorded twice). A
resumed run must have the same config (``num_workers`` and ``output_dir`` aside) and the same
code (package versions, git commit) as the session that wrote the rows; otherwise it stops
before touching them.

Before the results folder is touched, the dataset and every model are loaded and every method is
checked against every model (:meth:`~bench.methods.AttributionMethod.check_model`), so a missing
weights file or a misspelled layer leaves nothing behind; the folder is then locked
(:class:`bench.results.ResultsLock`) for the whole run. A method that fails on every (image,
target) of a model is reported in :attr:`RunSummary.failed_methods` (the CLI exits non-zero).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import ceiling, provenance, results
from bench.batching import Prepared, PreparedSamples, collate_prepared
from bench.config import RunConfig
from bench.data.registry import load_dataset
from bench.methods import AttributionMethod, create_method
from bench.methods.adapters import library_progress
from bench.models import ModelBundle, load_model
from bench.sanity.scorer import SanityChecks, SanityError, example_input
from bench.reliance import RelianceFeature
from bench.scoring import NO_CLOCK, BatchResult, ModelRun, StageClock, metric_columns, score_batch
from bench.sharding import check_shard, local_device_index


class RunError(RuntimeError):
    """The run cannot go on; rows already written are kept. ``resumable``: the same command
    can continue the run once the cause is fixed (False where it never can: the folder holds
    another config's or another version's rows, or is damaged)."""

    def __init__(self, message: str, *, resumable: bool = True):
        super().__init__(message)
        self.resumable = resumable


@dataclass
class RunSummary:
    out_dir: Path
    rows_written: int = 0
    skipped: int = 0
    resumed_samples: int = 0
    seconds: float = 0.0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One message per (model, method) that failed on every (image, target) it was given.
    failed_methods: list[str] = field(default_factory=list)


BatchScorer = Callable[[ModelRun, Sequence[Prepared]], BatchResult]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # One process per GPU under torchrun / srun: each takes its own local GPU.
        return torch.device("cuda", local_device_index(device_count=torch.cuda.device_count()))
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise RunError(f"device {name!r}: not a device name (auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type not in ("cpu", "cuda", "mps"):
        raise RunError(f"device {name!r}: groundbench runs on cpu, cuda or mps, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RunError(f"device {name!r} asked for, but MPS (Apple GPU) is not available here")
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
        earlier = out.provenance()
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the earlier session's provenance ({exc})") from exc
    # Packages are compared by installed version: whether an optional package imports can
    # depend on what else the process imported first, which is not other code.
    before = {**earlier.get("identity", {}), "packages": _installed(earlier)}
    now = {**prov["identity"], "packages": _installed(prov)}
    changed = [k for k in CODE_IDENTITY_KEYS if before.get(k) != now.get(k)]
    if changed:
        detail = "; ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in changed)
        raise RunError(
            f"{out.path} holds rows written by other code ({detail}); resuming would mix them. "
            "Start it again with --fresh, or use another run name / --out",
            resumable=False,
        )


def _installed(prov: dict[str, Any]) -> dict[str, str]:
    """Installed package versions of a provenance record: those that imported and those that
    did not (``environment.packages_not_importable`` holds "VERSION (reason)")."""
    missing = prov.get("environment", {}).get("packages_not_importable", {}) or {}
    versions = {k: str(v).split(" ", 1)[0] for k, v in missing.items()}
    return dict(sorted({**versions, **(prov.get("identity", {}).get("packages") or {})}.items()))


def _check_same_config(cfg: RunConfig, out: results.ResultsDir) -> None:
    previous = out / results.CONFIG_JSON
    resolved = json.loads(json.dumps(cfg.to_dict(), sort_keys=True))
    if previous.exists() and not _same_run_config(out.config(), resolved):
        raise RunError(
            f"{out.path} holds results of a different config ({previous}); "
            "a resumed run must use the same config (only num_workers and output_dir may change). "
            "Start it again with --fresh, or use another run name / --out",
            resumable=False,
        )


@dataclass
class _Tally:
    """Per (model, method), the rows scored and the failures recorded, this session and the
    earlier sessions of a resumed run (what :attr:`RunSummary.failed_methods` is made of)."""

    rows: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, scores: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]]) -> None:
        for r in scores:
            self.rows[(r["model"], r["method"])] += 1
        for r in skipped:
            if r.get("method") is not None:
                self.failures[(r["model"], r["method"])].append(str(r.get("reason")))

    def failed_methods(self) -> list[str]:
        """A message per (model, method) with failures and not one scored row."""
        out = []
        for (model, method), reasons in self.failures.items():
            if reasons and not self.rows.get((model, method)):
                first = reasons[0].split(" failed: ", 1)[-1]
                out.append(
                    f"method {method!r} failed on every (image, target) of model {model!r} "
                    f"({len(reasons)} of them); the first failure: {first}"
                )
        return out


def _prepare_out_dir(cfg: RunConfig, out: results.ResultsDir, resume: bool, done: results.Done, columns: list[dict[str, Any]], tally: _Tally) -> None:
    """Resume (keep the rows of every stream marked done, drop the rest, and count the kept
    rows and failures in ``tally``) when a batch is marked done; otherwise start the folder
    afresh (:meth:`bench.results.ResultsDir.start`: an attempt that finished no batch holds
    nothing to keep, so it never blocks the next)."""
    if done.any:
        if not resume:
            raise RunError(f"{out.path} already holds results; use --resume to continue, or another run name / --out", resumable=False)
        _check_same_config(cfg, out)
        # A damaged line in the middle of a rows file raises ValueError here, before any change.
        kept = out.drop_unfinished(done)
        tally.add(kept.get(results.SCORE_ROWS.name, []), kept.get(results.SKIP_ROWS.name, []))
        return
    out.start(cfg.to_dict(), columns)


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
    lock: results.ResultsLock | None = None,
) -> RunSummary:
    """Run ``cfg``; results go to ``out_dir`` (default ``<cfg.output_dir>/<cfg.name>``).

    Before the results folder is touched, the dataset and every model are loaded and every
    method is checked against every model, so a missing weights file or a misspelled layer
    leaves nothing behind. The folder is then locked (:class:`bench.results.ResultsLock`; pass
    ``lock`` when the caller already holds it) for the whole run: a second process fails at
    once instead of writing every row twice.

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
    indices = shard_indices(len(dataset), shard)
    bundles = [_load_bundle(cfg, m, progress) for m in cfg.models]
    for bundle in bundles:
        _check_methods(cfg, bundle, methods, dataset, indices)

    held = lock
    if held is None:
        results.check_claimable(out.path)
        held = results.ResultsLock(out.path).acquire()
    try:
        # progress=False also silences the bars the adapters' libraries draw (pytorch-grad-cam).
        with library_progress(progress):
            return _run_locked(cfg, out, dataset, methods, columns, indices, bundles, device, resume, shard, progress, on_batch, timer, scorer, t0)
    finally:
        if lock is None:
            held.release()


def _load_bundle(cfg: RunConfig, model_cfg: Any, progress: bool) -> ModelBundle:
    try:
        return load_model(model_cfg.name, seed=cfg.seed, progress=progress, **model_cfg.params)
    except (TypeError, KeyError, ValueError, OSError, ImportError, RuntimeError) as exc:
        # Bad parameters, missing weights, a factory that fails: a message, not a traceback.
        raise RunError(f"{cfg.source}: model {model_cfg.name!r} cannot be loaded: {type(exc).__name__}: {exc}") from exc


def _check_methods(cfg: RunConfig, bundle: ModelBundle, methods: Sequence[tuple[str, AttributionMethod]], dataset: Any, indices: list[int]) -> None:
    """Every method's parameters against the model (layer names, sizes that depend on the
    input), on the model input of the first sample that loads."""
    shape = None
    probe = PreparedSamples(dataset, bundle.preprocess, indices[:8])
    for k in range(len(probe)):
        p = probe[k]
        if p.input is not None:
            shape = tuple(p.input.shape)
            break
    for label, method in methods:
        bound = method.with_model_defaults(bundle.target_layer)
        try:
            if shape is not None:
                bound.check_model(bundle.module, shape)
            else:
                bound.check_model(bundle.module, (0, 10**9, 10**9))  # layer names still checked
        except (ValueError, TypeError) as exc:
            raise RunError(f"{cfg.source}: method {label!r} on model {bundle.spec!r}: {exc}", resumable=False) from exc


def _run_locked(cfg, out: results.ResultsDir, dataset, methods, columns, indices, bundles, device, resume, shard, progress, on_batch, timer, scorer, t0) -> RunSummary:
    manifest = getattr(dataset, "manifest", None)
    prov = provenance.collect(cfg.to_dict(), device, manifest)
    prov["shard"] = list(shard) if shard else None
    prov["dataset_size"] = len(dataset)  # lets `groundbench merge` check that shards cover it
    done = out.done()
    if done.any and resume:
        # The config first: a different config is the likelier mistake and the clearer message.
        _check_same_config(cfg, out)
        _check_same_code(out, prov)
    column_info = [c.describe() for c in columns]
    tally = _Tally()
    _prepare_out_dir(cfg, out, resume, done, column_info, tally)
    summary = RunSummary(out_dir=out.path, resumed_samples=sum(len(v) for v in done.samples.values()))
    if done.any:
        _keep_session_times(out, prov)
    results.write_json(out / results.PROVENANCE, prov)
    results.write_json(out / results.COLUMNS, column_info)
    models_file = out / results.MODELS
    models_info = json.loads(models_file.read_text()) if models_file.exists() else {}
    clock = timer or NO_CLOCK
    ceiling_info = ceiling.info(dataset, columns, cfg.dataset.name) if cfg.human_ceiling else None
    if ceiling_info is not None:
        results.write_json(out / results.CEILING, ceiling_info)
    # Images the loader left out are recorded once per model (as every skip is), by one shard.
    drops = list(getattr(dataset, "dropped", ()) or ()) if shard is None or shard[0] == 0 else []

    with out.open() as writer:
        for n, bundle in enumerate(bundles):
            bundles[n] = None  # freed once this model is done
            models_info[bundle.spec] = {
                "info": bundle.info,
                "target_layer": bundle.target_layer,
                "methods": {label: m.with_model_defaults(bundle.target_layer).describe() for label, m in methods},
            }
            results.write_json(models_file, models_info)
            if drops and bundle.spec not in done.dropped:
                writer.commit_drops(bundle.spec, [results.skip_record(bundle.spec, None, str(d.image_id), None, d.reason) for d in drops])
                summary.skipped += len(drops)
            source, bundle = _bind_dataset(dataset, bundle, device, prov, out)
            run = ModelRun.for_model(
                bundle, methods, columns, device, seed=cfg.seed, autocast=cfg.autocast, clock=clock,
                maps_dir=out / results.MAPS if cfg.save_maps else None, strata=tuple(cfg.strata),
            )
            checks = None
            if cfg.sanity is not None:
                try:
                    checks = SanityChecks(cfg.sanity, run, example_input(bundle.preprocess))
                except (SanityError, ValueError) as exc:
                    raise RunError(f"{cfg.source}: [sanity] on model {bundle.spec!r}: {exc}") from exc
                run.features.append(checks)
                models_info[bundle.spec]["sanity"] = checks.describe()
            if cfg.reliance is not None:
                try:
                    feature = RelianceFeature(cfg.reliance, run)
                except ValueError as exc:
                    raise RunError(f"{cfg.source}: [reliance] on model {bundle.spec!r}: {exc}") from exc
                run.features.append(feature)
                models_info[bundle.spec]["measured_reliance"] = feature.describe()
            if cfg.sanity is not None or cfg.reliance is not None:
                results.write_json(models_file, models_info)
            todo = [i for i in indices if i not in done.of(bundle.spec)]
            loader = sample_loader(source, bundle.preprocess, todo, cfg, device)
            model_scorer = scorer
            if n == 0 and ceiling_info is not None and ceiling_info["computed"]:
                model_scorer = with_ceiling(scorer, dataset, columns, device)
            n_rows, n_skipped = _run_model(run, loader, len(todo), writer, model_scorer, progress, on_batch, tally)
            if checks is not None and not checks.weights_unchanged(run):
                raise RunError(f"{bundle.spec}: its trained weights changed during the sanity checks (a bug: they work on a copy); the rows written are kept")
            summary.rows_written += n_rows
            summary.skipped += n_skipped
            summary.models[bundle.spec] = bundle.info
    prov["data"] = out.data_hashes()
    results.write_json(out / results.PROVENANCE, prov)
    summary.failed_methods = tally.failed_methods()
    summary.seconds = time.perf_counter() - t0
    return summary


def _bind_dataset(dataset: Any, bundle: Any, device: torch.device, prov: dict[str, Any], out: results.ResultsDir) -> tuple[Any, Any]:
    """The one hook for datasets that exist only in a model's input space (grid mosaics,
    :mod:`bench.data.mosaic`): a dataset with ``for_model(bundle, device)`` is rebuilt per
    model; the bound dataset's ``preprocess`` replaces the model's (its samples already are
    model inputs) and its ``provenance`` (what it was built from) is recorded at once under
    ``model_datasets``. Any other dataset passes through unchanged."""
    bind = getattr(dataset, "for_model", None)
    if not callable(bind):
        return dataset, bundle
    bound = bind(bundle, device)
    prov.setdefault("model_datasets", {})[bundle.spec] = bound.provenance
    results.write_json(out / results.PROVENANCE, prov)
    return bound, dataclasses.replace(bundle, preprocess=bound.preprocess)


def with_ceiling(scorer: BatchScorer, dataset: Any, columns: Sequence[Any], device: torch.device) -> BatchScorer:
    """``scorer`` plus the human ceiling's rows of each batch's samples (row stream
    ``ceiling``, :mod:`bench.ceiling`): model-independent, so the engine asks for them with the
    first model's batches only, and they are committed, resumed and merged with those."""

    def score(run: ModelRun, batch: Sequence[Prepared]) -> BatchResult:
        result = scorer(run, batch)
        extra = ceiling.rows(dataset, columns, batch, run.spec, device=device)
        return BatchResult({**result.rows, results.CEILING_ROWS.name: extra})

    return score


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


def _run_model(run: ModelRun, loader: DataLoader, total: int, writer: results.BatchWriter, scorer: BatchScorer, show_progress: bool, on_batch: Callable[[int], None] | None, tally: _Tally) -> tuple[int, int]:
    n_rows = n_skipped = 0
    bar = tqdm(total=total, desc=run.spec, unit="img", disable=not show_progress, file=sys.stderr)
    batches = iter(loader)
    for batch_no in itertools.count():
        with run.clock.stage("load"):
            batch = next(batches, None)
        if batch is None:
            break
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for part in same_input_shape(batch):
            for name, part_rows in scorer(run, part).rows.items():
                rows[name] += part_rows
        scores, skipped = rows[results.SCORE_ROWS.name], rows[results.SKIP_ROWS.name]
        tally.add(scores, skipped)
        with run.clock.stage("write"):
            writer.commit(run.spec, [p.index for p in batch], [p.digest for p in batch], rows)
        n_rows += len(scores)
        n_skipped += len(skipped)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(batch_no)
    bar.close()
    return n_rows, n_skipped


def same_input_shape(batch: Sequence[Prepared]) -> list[Sequence[Prepared]]:
    """The batch itself when its model inputs stack (one shape: the usual case), else one part
    per input shape, in order of first appearance, so that a model that takes images at their
    own size (the harbor nets) can be run on a dataset of mixed sizes. Samples that did not
    load go with the first part (they only produce skip records)."""
    if getattr(batch, "inputs", None) is not None:
        return [batch]
    parts: dict[Any, list[Prepared]] = {}
    for p in batch:
        key = tuple(p.input.shape) if p.input is not None else None
        parts.setdefault(key, []).append(p)
    if len(parts) <= 1:
        return [batch]
    failed = parts.pop(None, [])
    groups = list(parts.values())
    groups[0] = failed + groups[0]
    return groups
