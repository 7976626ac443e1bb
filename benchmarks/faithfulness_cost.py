"""What measured reliance and the faithfulness columns cost: model forward passes per row
(counted by a hook on the model) and wall time per row against a Grad-CAM-only run, on the
harbor suite's object-only model (CPU by default).

    python benchmarks/faithfulness_cost.py [--n 44] [--device cpu]

Each configuration is the same run (harbor test scenes, Grad-CAM, the pointing game) plus one
extra: ``[reliance]`` (mean + blur), or one faithfulness column. Prints, per configuration,
passes per row (images through the model, divided by the score rows), seconds per row and the
ratio of its time to the Grad-CAM-only run's. Timings on a shared machine move by +-20%; the
pass counts are exact.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import results
from bench.config import parse_config
from bench.engine import run_config
from bench.scoring import score_batch

EXTRAS = {
    "gradcam only": {},
    "+ reliance (mean, blur)": {"reliance": {"modes": ["mean", "blur"]}},
    "+ reliance (mean)": {"reliance": {"modes": ["mean"]}},
    "+ deletion (20 steps)": {"metrics": [{"name": "deletion"}]},
    "+ deletion (10 steps)": {"metrics": [{"name": "deletion", "steps": 10}]},
    "+ insertion (20 steps)": {"metrics": [{"name": "insertion"}]},
    "+ average_drop": {"metrics": [{"name": "average_drop"}]},
}


def config(n: int, device: str, extra: dict) -> dict:
    base = {
        "name": "cost",
        "seed": 0,
        "device": device,
        "batch_size": 64,
        "dataset": {"name": "harbor", "split": "test", "n": n, "seed": 1, "size": 96},
        "models": [{"spec": "harbor:object_only"}],
        "methods": [{"name": "gradcam"}],
        "metrics": [{"name": "pointing_game", "tolerance": 6.0}],
    }
    out = dict(base)
    if "metrics" in extra:
        out["metrics"] = base["metrics"] + extra["metrics"]
    if "reliance" in extra:
        out["reliance"] = extra["reliance"]
    return out


def measure(cfg: dict) -> tuple[int, int, float]:
    """(rows, images through the model, seconds) of one run, model loading excluded."""
    seen = {"images": 0, "seconds": 0.0}

    def counting(run, batch):
        if not getattr(run.module, "_counted", False):
            run.module.register_forward_hook(lambda m, args, out: seen.__setitem__("images", seen["images"] + args[0].shape[0]))
            run.module._counted = True
        t0 = time.perf_counter()
        result = score_batch(run, batch)
        seen["seconds"] += time.perf_counter() - t0
        return result

    with tempfile.TemporaryDirectory() as tmp:
        run_config(parse_config(cfg), out_dir=Path(tmp), progress=False, scorer=counting)
        rows = len(results.read_rows(Path(tmp) / results.SCORES))
    return rows, seen["images"], seen["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=44, help="harbor test scenes (default 44: 2 cycles)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    base_time = None
    print(f"harbor:object_only, {args.n} scenes, Grad-CAM, device {args.device}")
    print(f"{'configuration':28s} {'rows':>5s} {'passes/row':>10s} {'s/row':>8s} {'x gradcam-only':>15s}")
    for name, extra in EXTRAS.items():
        rows, images, seconds = measure(config(args.n, args.device, extra))
        base_time = seconds if base_time is None else base_time
        print(f"{name:28s} {rows:5d} {images / rows:10.1f} {seconds / rows:8.4f} {seconds / base_time:15.2f}")


if __name__ == "__main__":
    main()
