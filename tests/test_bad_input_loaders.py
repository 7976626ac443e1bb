"""Bad input inside a dataset, met during a real run.

Policy (README "Guarantees"): a sample whose image cannot be read, or whose annotation breaks
its format, is skipped and the reason recorded in ``skipped.jsonl`` with the file named; a
target with no ground truth (boxes outside the image or of zero area, an empty mask) or with a
class the model cannot represent is skipped the same way while the image's other targets are
scored; images in unusual modes are converted and scored. The run never stops for these, and
every other row is what a run on clean data gives.

The data is a small COCO-format dataset written here (harbor scenes as PNG files with their
object masks as RLE), once with every kind of bad input and once clean, and both are run with
the harbor contextual model.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from bench import results
from bench.config import parse_config
from bench.data.synthetic import make_scene
from bench.engine import run_config
from bench.report.leaderboard import build
from bench.report.render import render_text

CATEGORIES = [
    {"id": 1, "name": "boat"},
    {"id": 2, "name": "car"},
    {"id": 3, "name": "bird"},
    {"id": 4, "name": "airplane"},
    {"id": 9, "name": "giraffe"},  # no output of the harbor models stands for it
]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
SIZE = 96

# image index -> what is wrong with it (None: nothing)
CASES = {
    0: None, 1: None, 2: None, 3: None,
    4: "truncated",
    5: None,
    6: "missing",
    7: "box_outside",
    8: "zero_area_box",
    9: "empty_mask",
    10: "unknown_class",
    11: "cmyk", 12: "sixteen_bit", 13: "rgba", 14: "palette", 15: "grayscale",
    16: "bomb",
    17: "corrupt",
    18: "float_mode",
    19: None,
}
FILE_ERRORS = {"truncated", "missing", "bomb", "corrupt", "float_mode"}
EXTRA_TARGET = {"box_outside", "zero_area_box", "empty_mask", "unknown_class"}
CONVERTED = {"cmyk", "sixteen_bit", "rgba", "palette", "grayscale"}


def _scenes() -> list:
    """Scenes with an object, one per case (the test split cycles through classes)."""
    out, i = [], 0
    while len(out) < len(CASES):
        s = make_scene(3, "test", i, None, SIZE)
        i += 1
        if s.spec.label is not None:
            out.append(s)
    return out


def _bomb_png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _write_image(path: Path, rgb: np.ndarray, case: str | None, clean: bool) -> str:
    """Write the image for ``case``; returns the file name used in the JSON."""
    if clean or case not in FILE_ERRORS | CONVERTED:
        Image.fromarray(rgb).save(path.with_suffix(".png"))
        return path.with_suffix(".png").name
    if case == "truncated":
        Image.fromarray(rgb).save(path.with_suffix(".png"))
        data = path.with_suffix(".png").read_bytes()
        path.with_suffix(".png").write_bytes(data[: len(data) // 2])
    elif case == "missing":
        pass
    elif case == "bomb":
        _bomb_png(path.with_suffix(".png"))
    elif case == "corrupt":
        path.with_suffix(".png").write_bytes(np.random.default_rng(1).bytes(3000))
    elif case == "float_mode":
        Image.fromarray(rgb[..., 0].astype(np.float32) / 255).save(path.with_suffix(".tif"))
        return path.with_suffix(".tif").name
    elif case == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path.with_suffix(".jpg"), quality=95)
        return path.with_suffix(".jpg").name
    elif case == "sixteen_bit":
        Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(path.with_suffix(".png"))
    elif case == "rgba":
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA").save(path.with_suffix(".png"))
    elif case == "palette":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path.with_suffix(".png"))
    elif case == "grayscale":
        Image.fromarray(rgb).convert("L").save(path.with_suffix(".png"))
    return path.with_suffix(".png").name


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def build_coco(root: Path, clean: bool) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "imgs").mkdir()
    images, anns = [], []
    other = {"boat": "car", "car": "boat", "bird": "airplane", "airplane": "bird"}
    for idx, scene in enumerate(_scenes()):
        case = CASES[idx]
        rgb = (scene.image * 255).round().astype(np.uint8)
        name = _write_image(root / "imgs" / f"{idx:03d}", rgb, case, clean)
        images.append({"id": idx, "file_name": name, "height": SIZE, "width": SIZE})
        label = scene.spec.label
        anns.append({
            "id": len(anns) + 1, "image_id": idx, "category_id": CAT_ID[label], "iscrowd": 0,
            "segmentation": _rle(scene.object_mask), "bbox": _bbox(scene.object_mask),
            "area": float(scene.object_mask.sum()),
        })
        if clean or case not in EXTRA_TARGET:
            continue
        bad = {"id": len(anns) + 1, "image_id": idx, "iscrowd": 0, "area": 0.0, "segmentation": []}
        if case == "box_outside":
            bad.update(category_id=CAT_ID[other[label]], bbox=[SIZE + 20.0, -50.0, 15.0, 10.0])
        elif case == "zero_area_box":
            bad.update(category_id=CAT_ID[other[label]], bbox=[10.0, 12.0, 0.0, 8.0])
        elif case == "empty_mask":
            bad.update(category_id=CAT_ID[other[label]], bbox=[0.0, 0.0, 0.0, 0.0],
                       segmentation={"size": [SIZE, SIZE], "counts": [SIZE * SIZE]})
        elif case == "unknown_class":
            bad.update(category_id=CAT_ID["giraffe"], bbox=[5.0, 5.0, 20.0, 20.0])
        anns.append(bad)
    (root / "annotations" / "instances_bad.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES})
    )
    return root


def run(root: Path, out: Path, workers: int) -> Path:
    cfg = parse_config({
        "name": "bad", "seed": 0, "device": "cpu", "batch_size": 4, "num_workers": workers,
        "dataset": {"name": "coco", "root": str(root), "split": "bad", "images": "imgs", "manifest": ""},
        "models": [{"spec": "harbor:contextual"}],
        "methods": [{"name": "gradcam"}],
        "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "energy_pointing_game"}],
    }, source="bad-input-test")
    run_config(cfg, out_dir=out, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-coco")
    bad = run(build_coco(base / "bad", clean=False), base / "bad-run", workers=2)  # errors cross workers
    clean = run(build_coco(base / "clean", clean=True), base / "clean-run", workers=0)
    return bad, clean


def _rows(out: Path) -> list[dict]:
    return results.read_rows(out / results.SCORES)


def _skips(out: Path, index: int) -> list[dict]:
    return [s for s in results.read_rows(out / results.SKIPPED) if s["sample"] == index]


def assert_other_rows_intact(bad: Path, clean: Path) -> None:
    """Every row of the clean run for an unaffected (sample, target) is in the bad run, equal
    (scores to float noise: a batch without the bad sample may differ in the last bits)."""
    got = {(r["sample"], r["target"]): r for r in _rows(bad)}
    checked = 0
    for want in _rows(clean):
        case = CASES[want["sample"]]
        if case in FILE_ERRORS | CONVERTED:
            continue
        row = got[(want["sample"], want["target"])]
        for key, value in want.items():
            if key == "difficult" and case == "unknown_class":
                continue  # the giraffe is "another class present": difficult may differ

            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-5, nan_ok=True), key
            else:
                assert row[key] == value, key
        checked += 1
    assert checked == len(CASES) - len(FILE_ERRORS | CONVERTED)


def _one_skip(bad: Path, case: str) -> dict:
    index = next(i for i, c in CASES.items() if c == case)
    skips = _skips(bad, index)
    assert len(skips) == 1, skips
    # "#<index>" where the loader cannot name the image id without decoding the sample.
    assert skips[0]["image_id"] in {str(index), f"#{index}"}
    return skips[0]


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("truncated", r"sample not loaded: ImageDecodeError: .*imgs/004\.png: cannot decode image, truncated or corrupt"),
        ("missing", r"sample not loaded: ImageDecodeError: .*imgs/006\.png: image file not found"),
        ("bomb", r"sample not loaded: ImageDecodeError: .*imgs/016\.png: .*decompression.bomb"),
        ("corrupt", r"sample not loaded: ImageDecodeError: .*imgs/017\.png: not a readable image"),
        ("float_mode", r"sample not loaded: ImageDecodeError: .*imgs/018\.tif: floating-point images"),
    ],
)
def test_unreadable_image_skips_the_sample_naming_the_file(runs, case, pattern):
    bad, clean = runs
    skip = _one_skip(bad, case)
    assert skip["target"] is None
    assert __import__("re").search(pattern, skip["reason"]), skip["reason"]
    index = skip["sample"]
    assert not [r for r in _rows(bad) if r["sample"] == index]
    assert_other_rows_intact(bad, clean)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("box_outside", r"has an empty ground-truth mask \(boxes outside the image or of zero area"),
        ("zero_area_box", r"has an empty ground-truth mask \(boxes outside the image or of zero area"),
        ("empty_mask", r"has an empty ground-truth mask"),
        ("unknown_class", r"class 'giraffe' has no output in harbor:contextual's class map"),
    ],
)
def test_target_without_usable_ground_truth_is_skipped_and_the_image_still_scored(runs, case, pattern):
    bad, clean = runs
    skip = _one_skip(bad, case)
    assert __import__("re").search(pattern, skip["reason"]), skip["reason"]
    index = skip["sample"]
    scored = [r["target"] for r in _rows(bad) if r["sample"] == index]
    assert scored and skip["target"] not in scored  # the image's real object is scored
    assert_other_rows_intact(bad, clean)


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_unusual_image_modes_are_converted_and_scored(runs, case):
    bad, clean = runs
    index = next(i for i, c in CASES.items() if c == case)
    assert not _skips(bad, index)
    rows = [r for r in _rows(bad) if r["sample"] == index]
    assert len(rows) == 1 and not rows[0]["map_invalid"]
    assert math.isfinite(rows[0]["energy_pointing_game"])
    assert_other_rows_intact(bad, clean)


def test_leaderboard_footer_counts_what_was_not_scored(runs):
    bad, _ = runs
    text = render_text(build(bad))
    footer = text[text.index("not scored:"):]
    assert "5 × sample not loaded" in footer
    assert "empty ground-truth mask" in footer
    assert "1 × class 'giraffe' has no output in harbor" in footer
    n_skipped = len(results.read_rows(bad / results.SKIPPED))
    assert n_skipped == len(FILE_ERRORS) + len(EXTRA_TARGET)


DECODE_IN_A_BOX = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a crash, not the machine's memory
    from bench.data.coco import decode_segmentation
    x = float(sys.argv[1])
    try:
        m = decode_segmentation({"id": 7, "segmentation": [[0, 0, x, 0, 0, 5]], "bbox": [0, 0, 1, 1]}, 12, 16)
        print("mask", tuple(m.shape))
    except ValueError as exc:
        print("refused", type(exc).__name__, exc)
    """
)


@pytest.mark.parametrize("x", ["1e8", "-1e9", "1e12"])
def test_polygon_with_far_out_coordinates_is_an_error_not_a_crash(x):
    """pycocotools rasterises a polygon on a grid spanning its coordinates: a vertex at 1e8 px
    makes it allocate gigabytes and segfault, which would kill a run (and every resume of it)
    at that image. The loader must refuse such an annotation (or clip it) before pycocotools."""
    proc = subprocess.run(
        [sys.executable, "-c", DECODE_IN_A_BOX, x], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, f"decoding crashed the process (rc {proc.returncode})"
    out = proc.stdout.strip()
    assert out == "mask (12, 16)" or (out.startswith("refused") and "7" in out), out
