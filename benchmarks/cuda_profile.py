"""Where the CUDA pipeline's time goes: one Grad-CAM pipeline run (ResNet-50, 640x480 JPEGs,
every box/mask metric) under torch.profiler, the top operators by device and host time.

    python benchmarks/cuda_profile.py OUT_DIR [--batch 64] [--model resnet50]

Run on a machine with CUDA (see benchmarks/cuda_check.sh); writes ``OUT_DIR/profile.txt``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.perf import measure_pipeline, pipeline_config, write_image_folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--method", default="gradcam")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    work = Path(tempfile.mkdtemp(prefix="gb-prof-"))
    n = args.batch * 4
    root = write_image_folder(work / "images", n)
    cfg = pipeline_config(args.model, {"name": args.method}, root, n, args.batch, "cuda", 8, "none")
    measure_pipeline(cfg, work / "warm", device, sync_stages=False)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        res = measure_pipeline(cfg, work / "run", device, sync_stages=False)
    text = [f"{args.model} {args.method} batch {args.batch}: {res.images_per_s:.1f} img/s, shares {res.stage_shares}",
            prof.key_averages().table(sort_by="cuda_time_total", row_limit=40),
            prof.key_averages().table(sort_by="cpu_time_total", row_limit=40)]
    (args.out / f"profile_{args.model}_{args.method}_b{args.batch}.txt").write_text("\n\n".join(text))
    print(text[0])


if __name__ == "__main__":
    main()
