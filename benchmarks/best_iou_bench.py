"""Best IoU: the full sort of each map (the definition, :func:`best_iou_by_sort`) against the
branch and bound over a histogram of the map (:func:`best_iou`, the CPU path), on 224x224,
640x480 and 1024x768 maps.

    python benchmarks/best_iou_bench.py [--batch 16] [--repeats 5] [--threads N]

Not a test: it prints the machine's load, milliseconds per map (the best of ``--repeats`` runs after one warm-up,
old and new interleaved so that a noisy machine slows both alike), their ratio, and checks that
both give the same values to the bit. Maps of three kinds, seeded:

- ``cam``: a Grad-CAM-like map, a rectified 7x7 grid upsampled bilinearly (smooth, half of it
  zero, small tie groups at the borders);
- ``noise``: uniform noise (every value distinct: the most pixels in each bin);
- ``steps``: 16 distinct values in blocks (occlusion-like: large groups of equal values).

Masks are discs of random centre and radius (5% to 30% of the image).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from bench.metrics.overlap import best_iou, best_iou_by_sort

SIZES = ((224, 224), (480, 640), (768, 1024))


def make_maps(kind: str, b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    if kind == "cam":
        grid = torch.randn(b, 1, 7, 7, generator=g).relu()
        return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[:, 0].contiguous()
    if kind == "noise":
        return torch.rand(b, h, w, generator=g)
    if kind == "steps":
        grid = torch.randint(0, 16, (b, 1, 8, 8), generator=g).float()
        return F.interpolate(grid, size=(h, w), mode="nearest")[:, 0].contiguous()
    raise ValueError(kind)


def make_masks(b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cy, cx = torch.rand(b, generator=g) * h, torch.rand(b, generator=g) * w
    r = (0.05 + 0.25 * torch.rand(b, generator=g)) * min(h, w)
    return (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 < r[:, None, None] ** 2


def interleaved(fns, repeats: int) -> list[float]:
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, CPU; ms per map; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'size':>9s} {'maps':>6s} {'sort':>9s} {'histogram':>10s} {'ratio':>7s}  same")
    g = torch.Generator().manual_seed(0)
    for h, w in SIZES:
        for kind in ("cam", "noise", "steps"):
            maps, masks = make_maps(kind, args.batch, h, w, g), make_masks(args.batch, h, w, g)
            old, new = interleaved([lambda: best_iou_by_sort(maps, masks), lambda: best_iou(maps, masks)], args.repeats)
            same = torch.equal(best_iou_by_sort(maps, masks), best_iou(maps, masks))
            print(f"{w:>4d}x{h:<4d} {kind:>6s} {old / args.batch * 1e3:9.2f} {new / args.batch * 1e3:10.2f} "
                  f"{old / new:6.1f}x  {'yes' if same else 'NO'}")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (ratios are same-process, interleaved; times are not "
          "comparable across machines or loads)")


if __name__ == "__main__":
    main()
