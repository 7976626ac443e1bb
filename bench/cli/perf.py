"""``groundbench perf``: pipeline vs model-pass limit, stage shares, memory, metric cost."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perf",
        help="measure the pipeline against the model's own passes (images/s, stage shares, memory)",
        description=(
            "Measure the pipeline against the model's own passes (images/s, stage shares, memory).\n\n"
            "For a ResNet-50 (random weights) and EfficientNet-Lite0 at 224x224, Grad-CAM and RISE,\n"
            "batch sizes 1/16/64: images/s of the method's model passes alone (the limit) and of the\n"
            "full engine from 640x480 JPEGs on disk to score rows, their ratio, and each stage's\n"
            "share; then peak memory of a small and a large harbor run, metric cost vs Quantus, and\n"
            "host synchronisations found in the loop."
        ),
        epilog=(
            "Examples:\n"
            "  groundbench perf --quick\n"
            "  groundbench perf --device cuda --autocast bf16 --json perf.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores: batch 1 and 16, 2 timed batches, smaller memory runs, RISE with 8 masks")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--models", type=_names, help="comma-separated: resnet50,effnet-lite0")
    p.add_argument("--methods", type=_names, help="comma-separated: gradcam,rise")
    p.add_argument("--batch-sizes", type=_ints, help="comma-separated (default 1,16,64)")
    p.add_argument("--batches", type=int, help="timed batches per measurement after one warm-up batch (default 3)")
    p.add_argument("--workers", type=int, help="DataLoader workers for decoding (default min(8, CPU cores))")
    p.add_argument("--autocast", choices=("none", "bf16"), default="none", help="mixed precision for the model passes")
    p.add_argument("--rise-masks", type=int, help="RISE n_masks (default 1000 on CUDA, 16 on CPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default torch's)")
    p.add_argument("--memory-sizes", type=_ints, help="the two harbor sample counts to compare (default 500,5000)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory comparison")
    p.add_argument("--no-quantus", action="store_true", help="skip the metrics vs Quantus comparison")
    p.add_argument("--no-sync-check", action="store_true", help="skip the search for host synchronisations")
    p.add_argument("--work-dir", help="keep the JPEGs and run folders here (default: a temporary directory, removed)")
    p.add_argument("--json", help="also write the measurements as JSON to this file")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.perf import PerfOptions, quick_options, render, run_benchmark, to_json

    over = {"device": args.device, "autocast": args.autocast, "memory": not args.no_memory,
            "quantus": not args.no_quantus, "check_syncs": not args.no_sync_check}
    for key in ("models", "methods", "batch_sizes", "batches", "workers", "rise_masks", "threads"):
        value = getattr(args, key)
        if value is not None:
            over[key] = value
    if args.memory_sizes is not None:
        if len(args.memory_sizes) != 2:
            print("error: --memory-sizes takes two numbers, e.g. 500,5000", file=sys.stderr)
            return 2
        over["memory_sizes"] = args.memory_sizes
    if args.work_dir:
        over["work_dir"] = Path(args.work_dir)
    opts = quick_options(**over) if args.quick else PerfOptions(**over)
    report = run_benchmark(opts, log=lambda line: print(line, file=sys.stderr, flush=True))
    text = render(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(report), indent=2, default=str) + "\n")
    return 0
