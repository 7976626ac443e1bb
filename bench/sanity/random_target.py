"""The random-target (random-logit) test: does the map change when the model is asked about
another class?

Adebayo et al. (and Quantus's ``RandomLogit``) explain a randomly chosen class other than the
target and compare the two maps; a map that does not depend on the class stays the same. Here
the random class's map is also scored with the run's grounding metrics against the *target's*
ground truth: a method that still "finds" the boat when asked about a tarantula is not
grounding the class.

The random class of a (image, target) pair is drawn uniformly from the model's outputs that do
not stand for the target's dataset class: every output its class map gives that class is
excluded (a COCO ``boat`` is not explained by ``speedboat`` instead of ``canoe``), and for the
model's top-1 target (gaze data, no class) the resolved top-1 output alone. The draw comes from
a CPU generator seeded with the pair's own seed (:func:`random_target_seed`), so it does not
depend on batch, shard, device or method: every method of a run is asked about the same random
class of a pair.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch


def random_target_seed(run_seed: int, image_id: str, target: str) -> int:
    """The seed of a pair's random class: one per (run seed, image, target), shared by methods."""
    digest = hashlib.sha256(f"{int(run_seed)}|{image_id}|{target}|random-target".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _draw(n: int, seed: int) -> int:
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return int(torch.randint(n, (1,), generator=gen))


def random_other_outputs(
    targets: torch.Tensor,
    excluded: Sequence[Sequence[int] | None],
    num_outputs: int,
    seeds: Sequence[int],
) -> torch.Tensor:
    """One random output per row, on ``targets``' device (long B).

    ``excluded[i]``: the outputs row i may not draw (its class's outputs; the target is among
    them), or None to exclude only ``targets[i]`` (the top-1 target, known on the device only).
    The draw is uniform over the ``num_outputs - len(excluded[i])`` others. Raises if a row has
    no other output to draw."""
    if not (len(excluded) == len(seeds) == targets.shape[0]):
        raise ValueError(f"need one exclusion list and one seed per target, got {len(excluded)}, {len(seeds)}, {targets.shape[0]}")
    picks, shift = [], []
    for ex, seed in zip(excluded, seeds):
        if ex is None:
            if num_outputs < 2:
                raise ValueError("the model has one output: there is no other class to draw")
            # k in [0, K-2]; on the device, (target + 1 + k) mod K skips the target.
            picks.append(_draw(num_outputs - 1, seed))
            shift.append(True)
            continue
        banned = sorted(set(int(e) for e in ex))
        if any(not 0 <= e < num_outputs for e in banned):
            raise ValueError(f"excluded outputs {banned} outside the model's {num_outputs} outputs")
        free = num_outputs - len(banned)
        if free < 1:
            raise ValueError(f"every one of the model's {num_outputs} outputs is excluded: no other class to draw")
        out = _draw(free, seed)
        for e in banned:  # the k-th output not banned
            if e <= out:
                out += 1
        picks.append(out)
        shift.append(False)
    device = targets.device
    drawn = torch.tensor(picks, dtype=torch.long).to(device, non_blocking=True)
    relative = torch.tensor(shift, dtype=torch.bool).to(device, non_blocking=True)
    return torch.where(relative, (targets + 1 + drawn) % num_outputs, drawn)
