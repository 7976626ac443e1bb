"""Stage timing: the engine's ``timer`` hook, and waiting for a device's queue."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Iterator

import torch

# The engine's stages, in the order a batch passes them (see :func:`bench.engine.run_config`).
STAGES = ("load", "prepare", "resolve", "attribute", "upsample", "metrics", "to_host", "rows", "write")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class StageTimer:
    """The engine's ``timer`` hook: wall time per stage, summed over batches.

    ``sync=False`` (default) never touches the device, so timing does not change what it
    measures; on an asynchronous device a stage's time is then the host's time to queue its
    work, and the wait lands in whichever stage first needs a result (``to_host``).
    ``sync=True`` synchronises the device at every stage boundary: each stage gets its own
    device time, at the cost of the overlap between stages.
    """

    def __init__(self, device: torch.device | str = "cpu", sync: bool = False):
        self.device = torch.device(device)
        self.sync = sync
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.sync:
            synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                synchronize(self.device)
            self.totals[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def shares(self, wall: float) -> dict[str, float]:
        """Each stage's time as a fraction of ``wall`` (the rest is loop overhead)."""
        return {k: v / wall for k, v in self.totals.items()} if wall > 0 else {}
