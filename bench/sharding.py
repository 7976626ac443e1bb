"""Which part of a run this process does: ``--shard K/N``, or what a launcher set.

A run shards by sample index: shard K of N scores samples i with ``i % N == K`` (see
:func:`bench.engine.shard_indices`), every model, method and metric. Shards share nothing while
they run; each writes its own results directory (``<run>/shard-K-of-N``) and
``groundbench merge`` combines them (:mod:`bench.merge`).

Where K and N come from, first match wins:

1. ``--shard K/N`` on the command line;
2. ``torchrun`` (and other launchers of torch.distributed): ``RANK`` and ``WORLD_SIZE``;
3. a Slurm job array: ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT``. Array ids need not
   start at 0 or step by 1 (``--array=1-8`` or ``--array=0-30:10``): K is the task's position,
   ``(ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP``.

When both a torchrun world and a Slurm array are set (torchrun inside each array task) the
shards nest: K = array position x WORLD_SIZE + RANK, N = array count x WORLD_SIZE. A world of
one process is no sharding at all. Set variables that contradict each other are an error,
never a silent guess: two shards scoring the same samples would waste a machine, and a shard
that is never run would leave the merge incomplete.
"""

from __future__ import annotations

import os
from typing import Mapping

Shard = tuple[int, int]


class ShardError(ValueError):
    """The shard asked for (on the command line or by the environment) is not valid."""


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError as exc:
        raise ShardError(f"a shard is K/N (e.g. 0/4), got {text!r}") from exc
    return check_shard(k, n, f"shard {text}")


def check_shard(k: int, n: int, what: str) -> Shard:
    if not (n >= 1 and 0 <= k < n):
        raise ShardError(f"{what}: need 0 <= K < N, got K={k}, N={n}")
    return k, n


def _int_var(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ShardError(f"environment variable {name}={value!r} is not an integer") from exc


def _torchrun(env: Mapping[str, str]) -> Shard | None:
    rank, world = _int_var(env, "RANK"), _int_var(env, "WORLD_SIZE")
    if world is None and rank is None:
        return None
    if world is None or rank is None:
        raise ShardError("RANK and WORLD_SIZE must be set together (torchrun sets both)")
    return check_shard(rank, world, "RANK/WORLD_SIZE")


def _slurm_array(env: Mapping[str, str]) -> Shard | None:
    task, count = _int_var(env, "SLURM_ARRAY_TASK_ID"), _int_var(env, "SLURM_ARRAY_TASK_COUNT")
    if task is None:
        return None
    if count is None:
        raise ShardError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
    first = _int_var(env, "SLURM_ARRAY_TASK_MIN")
    step = _int_var(env, "SLURM_ARRAY_TASK_STEP") or 1
    first = 0 if first is None else first
    offset = task - first
    if offset < 0 or offset % step:
        raise ShardError(
            f"SLURM_ARRAY_TASK_ID={task} is not on the array's grid (min {first}, step {step}); "
            "use an evenly spaced --array or pass --shard K/N"
        )
    return check_shard(offset // step, count, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a launcher asked for through the environment, or None (no sharding)."""
    env = os.environ if env is None else env
    world = _torchrun(env)
    array = _slurm_array(env)
    if world is None and array is None:
        return None
    if world is None:
        shard = array
    elif array is None:
        shard = world
    else:
        shard = (array[0] * world[1] + world[0], array[1] * world[1])
    return None if shard[1] == 1 else shard


def resolve_shard(given: Shard | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``given`` (from ``--shard``) if set, else the environment's shard."""
    if given is not None:
        return check_shard(given[0], given[1], "--shard")
    return shard_from_env(env)


def shard_dir_name(shard: Shard) -> str:
    """The subdirectory of a run's results that one shard writes."""
    return f"shard-{shard[0]}-of-{shard[1]}"


def local_device_index(env: Mapping[str, str] | None = None, device_count: int = 1) -> int:
    """The accelerator this process should use on a multi-GPU machine: torchrun's
    ``LOCAL_RANK`` (else Slurm's ``SLURM_LOCALID``) modulo the devices present, else 0."""
    env = os.environ if env is None else env
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = _int_var(env, name)
        if value is not None:
            return value % max(1, device_count)
    return 0
