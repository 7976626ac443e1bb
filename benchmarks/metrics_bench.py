"""Per-sample cost of every registered metric on CPU, for a batch of 64 maps at 224x224 and at
800x600, and the ratio to Quantus's equivalent where Quantus is installed.

    python benchmarks/metrics_bench.py [--batch 64] [--repeats 3] [--threads N]

Not a test: it prints a table (milliseconds per sample, the best of ``--repeats`` runs after one
warm-up; Quantus, much slower, once after a warm-up on its first 16 maps) and asserts nothing. Inputs are random maps with a box mask, a context band, two
instances, 250 fixated pixels (2,500 on other images) and a random density, seeded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import numpy as np
import torch

from bench.metrics import METRICS, TruthBatch

QUANTUS_SAMPLES = 16

# groundbench metric -> (Quantus class name, constructor kwargs)
QUANTUS = {
    "pointing_game": ("PointingGame", {}),
    "mass_accuracy": ("RelevanceMassAccuracy", {}),
    "rank_accuracy": ("RelevanceRankAccuracy", {}),
    "top_k_intersection": ("TopKIntersection", {"k": 1000}),
}


def _points(b: int, h: int, w: int, n: int, g: torch.Generator) -> torch.Tensor:
    out = torch.zeros(b, h * w, dtype=torch.bool)
    out.scatter_(1, torch.randint(0, h * w, (b, n), generator=g), True)
    return out.reshape(b, h, w)


def make_batch(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, TruthBatch]:
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, h, w, generator=g)
    masks = torch.zeros(b, h, w, dtype=torch.bool)
    masks[:, h // 4 : h // 2, w // 3 : 2 * w // 3] = True
    context = torch.zeros_like(masks)
    context[:, 2 * h // 3 :, :] = True
    instances = torch.zeros(b, 2, h, w, dtype=torch.bool)
    instances[:, 0, h // 4 : h // 2, w // 3 : w // 2] = True
    instances[:, 1, h // 4 : h // 2, w // 2 : 2 * w // 3] = True
    truth = TruthBatch(
        masks=masks,
        labels=["x"] * b,
        context=context,
        instances=instances,
        instance_counts=torch.full((b,), 2),
        fixations=_points(b, h, w, 250, g),  # about the fixations of 15 viewers
        density=torch.rand(b, h, w, generator=g),
        other_fixations=_points(b, h, w, 2500, g),  # pooled from ten other images
    )
    return maps, truth


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def quantus_timer(name: str, maps: torch.Tensor, truth: TruthBatch):
    try:
        import quantus
    except ImportError:
        return None
    cls_name, kwargs = QUANTUS[name]
    metric = getattr(quantus, cls_name)(disable_warnings=True, normalise=False, abs=False, **kwargs)
    # Quantus is slow: time it on the first QUANTUS_SAMPLES maps (cost per sample is reported).
    a = maps[:QUANTUS_SAMPLES].numpy()[:, None]
    s = truth.masks[:QUANTUS_SAMPLES].numpy()[:, None].astype(np.float32)
    kw = dict(model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(len(a), dtype=int), a_batch=a, s_batch=s)

    def run():
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            metric(**kw, batch_size=len(a))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, CPU")
    for h, w in ((224, 224), (600, 800)):
        maps, truth = make_batch(args.batch, h, w)
        print(f"\n{w}x{h} (ms per sample)")
        print(f"{'metric':24s} {'groundbench':>12s} {'quantus':>10s} {'ratio':>8s}")
        for name in METRICS.names():
            info = METRICS.get(name)
            ours = best_time(lambda: info.score(maps, truth, **info.defaults), args.repeats) / args.batch
            q_ms = ratio = ""
            if name in QUANTUS:
                runner = quantus_timer(name, maps, truth)
                if runner is not None:
                    theirs = best_time(runner, 1) / min(args.batch, QUANTUS_SAMPLES)
                    q_ms, ratio = f"{theirs * 1e3:10.3f}", f"{theirs / ours:7.1f}x"
            print(f"{name:24s} {ours * 1e3:12.3f} {q_ms:>10s} {ratio:>8s}")


if __name__ == "__main__":
    main()
