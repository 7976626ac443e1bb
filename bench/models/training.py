"""Training the small scene CNNs on the CPU, and their cache (shared by the harbor and crowd
models).

:func:`fit` is the one training loop: AdamW with a one-cycle schedule, cross-entropy, batches in
an order drawn from a ``torch.Generator`` seeded with ``seed``, single-process, so the weights
are a pure function of (images, labels, settings, torch version). :func:`load_cached` and
:func:`save_cached` keep trained weights and the facts measured about them under
``$GROUNDBENCH_CACHE`` (default ``~/.cache/groundbench``); weights are read back with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def cache_root() -> Path:
    return Path(os.environ.get("GROUNDBENCH_CACHE", Path.home() / ".cache" / "groundbench"))


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    desc: str,
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` (already initialised, channels_last) in place and return it in eval mode.
    Each epoch visits ``len(images) // batch_size`` full batches in a fresh random order."""
    n = int(images.shape[0])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx].contiguous(memory_format=torch.channels_last)
            loss = nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return model.eval()


def load_cached(path: Path, model: nn.Module) -> dict[str, Any] | None:
    """Load ``path``.pt into ``model`` and return the facts in ``path``.json, or None when the
    cache holds no complete entry."""
    weights, facts_file = path.with_suffix(".pt"), path.with_suffix(".json")
    if not (weights.exists() and facts_file.exists()):
        return None
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return json.loads(facts_file.read_text())


def save_cached(path: Path, model: nn.Module, facts: dict[str, Any]) -> None:
    weights, facts_file = path.with_suffix(".pt"), path.with_suffix(".json")
    weights.parent.mkdir(parents=True, exist_ok=True)
    # Written to temporary names and renamed, so an interrupted write never leaves a cache
    # entry that looks complete.
    tmp_w, tmp_f = weights.with_suffix(".pt.tmp"), facts_file.with_suffix(".json.tmp")
    torch.save(model.state_dict(), tmp_w)
    tmp_f.write_text(json.dumps(facts, indent=2, sort_keys=True))
    os.replace(tmp_w, weights)
    os.replace(tmp_f, facts_file)
