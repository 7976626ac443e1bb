"""Shared pieces of the ``test_defects_*`` regression tests (issue 16): a tiny harbor config
and helpers to run the real CLI in this process or in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from bench.data.synthetic import make_scene

REPO = Path(__file__).resolve().parents[1]

# 8 scenes (one without an object: a "no targets" skip record), one cached model, one cheap
# method: a whole run is a second or two once the harbor net is cached.
TINY = """
name = "{name}"
seed = 0
device = "cpu"
batch_size = 4

[dataset]
name = "harbor"
split = "test"
n = {n}
seed = 1
size = 96

[[models]]
spec = "harbor:contextual"

[[methods]]
name = "{method}"
{method_params}

[[metrics]]
name = "pointing_game"
tolerance = 6.0
"""


def tiny_config(folder: Path, name: str = "tiny", n: int = 8, method: str = "center", method_params: str = "", file: str = "tiny.toml") -> Path:
    path = Path(folder) / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY.format(name=name, n=n, method=method, method_params=method_params))
    return path


def env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's ``bench``."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(bench_cmd(*args), cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)


# Runs the real CLI in a subprocess, held at its first score write until ``gate`` exists.
HELD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from bench import results
    from bench.cli import main

    gate, config, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    original = results.RowWriter.write

    def write(self, rows):
        rows = list(rows)
        if self.path.name == "scores.jsonl" and rows and not gate.exists():
            (gate.parent / "waiting").write_text(str(os.getpid()))
            t0 = time.time()
            while not gate.exists() and time.time() - t0 < 240:
                time.sleep(0.05)
        return original(self, rows)

    results.RowWriter.write = write
    sys.exit(main(["run", config, "--out", out, "--no-progress"]))
    """
)


# -- a small COCO-format dataset of harbor scenes (official layout) ---------------------------------

CATEGORIES = [{"id": 1, "name": "boat"}, {"id": 2, "name": "car"}, {"id": 3, "name": "bird"}, {"id": 4, "name": "airplane"}]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}


def _scene(k: int):
    """The k-th harbor test scene that has an object."""
    i = found = 0
    while True:
        s = make_scene(5, "test", i, None, 96)
        i += 1
        if s.spec.label is not None:
            if found == k:
                return s
            found += 1


def _ann(ann_id: int, image_id, scene) -> dict:
    m = scene.object_mask
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    ys, xs = np.nonzero(m)
    return {
        "id": ann_id, "image_id": image_id, "category_id": CAT_ID[scene.spec.label], "iscrowd": 0,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
        "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)], "area": float(m.sum()),
    }


def coco_tree(root: Path, n: int) -> tuple[list[dict], list[dict]]:
    """``n`` harbor scenes as an official-layout COCO directory; returns (images, annotations)
    for the caller to break and write with :func:`write_coco`."""
    (root / "val2017").mkdir(parents=True)
    images, anns = [], []
    for k in range(n):
        s = _scene(k)
        name = f"{k:012d}.png"
        Image.fromarray((s.image * 255).round().astype(np.uint8)).save(root / "val2017" / name)
        images.append({"id": k, "file_name": name, "height": 96, "width": 96})
        anns.append(_ann(k + 1, k, s))
    return images, anns


def write_coco(root: Path, images: list, anns: list) -> Path:
    (root / "annotations").mkdir(exist_ok=True)
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path
