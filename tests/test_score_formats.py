"""``groundbench score`` reads maps in every accepted form and scores them alike: the same maps
saved as H x W .npy, 1 x H x W .npy, .npz, .pt, 8- and 16-bit .png, an N x H x W batch with an
index file and an N x 1 x H x W .pt batch with its index inside all give the rows of the plain
.npy set, to the bit; files that give no map become skip records and their count is printed;
the overlays are drawn for every form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main as cli
from bench.data.registry import load_dataset
from bench.maps_io import safe_name
from bench.report.leaderboard import load_results
from bench.results import read_rows

DATASET = {"split": "test", "n": 8, "seed": 1}
MODEL = "ext:model"
FORMS = ("npy", "npy_1hw", "npz", "pt", "png8", "png16", "batch_csv", "batch_pt_4d")


@pytest.fixture(scope="module")
def pairs():
    ds = load_dataset("harbor", **DATASET)
    out = []
    for i in range(len(ds)):
        s = ds[i]
        out += [(str(s.image_id), t.label, s.size) for t in s.targets]
    assert len(out) >= 4
    return out


@pytest.fixture(scope="module")
def maps_dir(pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("formats") / "maps"
    rng = np.random.default_rng(3)
    # Values on the 8-bit grid k/255: exactly representable in 8- and 16-bit PNGs as well.
    maps = {(i, t): (rng.integers(0, 256, size) / 255).astype(np.float32) for i, t, size in pairs}
    base = root / safe_name(MODEL)
    folders = {form: base / form for form in FORMS}
    for f in folders.values():
        f.mkdir(parents=True)
    name = lambda i, t: f"{safe_name(i)}__{safe_name(t)}"  # noqa: E731
    for (i, t), m in maps.items():
        np.save(folders["npy"] / f"{name(i, t)}.npy", m)
        np.save(folders["npy_1hw"] / f"{name(i, t)}.npy", m[None])
        np.savez(folders["npz"] / f"{name(i, t)}.npz", map=m)
        torch.save(torch.from_numpy(m), folders["pt"] / f"{name(i, t)}.pt")
        Image.fromarray(np.round(m * 255).astype(np.uint8)).save(folders["png8"] / f"{name(i, t)}.png")
        Image.fromarray(np.round(m * 65535).astype(np.uint16)).save(folders["png16"] / f"{name(i, t)}.png")
    keys = list(maps)
    np.save(folders["batch_csv"] / "all.npy", np.stack([maps[k] for k in keys]))
    (folders["batch_csv"] / "all.index.csv").write_text("image_id,target\n" + "".join(f"{i},{t}\n" for i, t in keys))
    torch.save(
        {"maps": torch.from_numpy(np.stack([maps[k] for k in keys]))[:, None], "image_ids": [i for i, _ in keys], "targets": [t for _, t in keys]},
        folders["batch_pt_4d"] / "cams.pt",
    )
    # Files that give no map: each must be recorded, none silently dropped.
    (folders["npy"] / "README.txt").write_text("maps of an external tool")
    np.save(folders["npy"] / "harbor-test-s1-99999__boat.npy", maps[keys[0]])  # names no (image, target)
    np.save(folders["npz"] / "stack.npy", np.stack([maps[keys[0]]] * 2))  # a batch without index
    return root


@pytest.fixture(scope="module")
def scored(maps_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    args = ["score", str(maps_dir), "--dataset", "harbor", "--out", str(out), "--name", "formats"]
    for key, value in DATASET.items():
        args += ["--dataset-param", f"{key}={json.dumps(value)}"]
    args += ["--metric", "pointing_game:tolerance=6.0", "--metric", "energy_pointing_game", "--metric", "leakage"]
    return out / "formats", args


def test_every_form_scores_like_the_plain_npy(scored, pairs, capsys):
    folder, args = scored
    assert cli(args) == 0
    printed = capsys.readouterr().out
    rows, _ = load_results(folder)
    assert set(rows["method"]) == set(FORMS)
    cols = ["pointing_game", "energy_pointing_game", "leakage", "map_invalid"]
    reference = rows[rows.method == "npy"].set_index(["image_id", "target"])[cols].sort_index()
    assert len(reference) == len(pairs)
    for form in FORMS:
        got = rows[rows.method == form].set_index(["image_id", "target"])[cols].sort_index()
        assert got.equals(reference), form
    # The files that gave no map: in skipped.jsonl with their reasons, and counted on stdout.
    skips = [r for r in read_rows(folder / "skipped.jsonl") if r.get("reason", "").startswith(("map file not used", "unmatched map file"))]
    reasons = {r["reason"] for r in skips}
    assert len(skips) == 3, reasons
    assert any("README.txt" in r and "not a map file format" in r for r in reasons)
    assert any("harbor-test-s1-99999__boat.npy" in r and "matches no (image, target)" in r for r in reasons)
    assert any("stack.npy" in r and "index" in r for r in reasons)
    assert "3 map files not used" in printed


def test_overlays_are_drawn_for_every_form(scored):
    folder, args = scored
    if not (folder / "scores.jsonl").exists():
        assert cli(args) == 0
    notes = folder / "figures" / "NOTES.txt"
    assert not notes.exists() or "overlays" not in notes.read_text()
    assert (folder / "figures" / "overlays.png").exists()
    from bench.report import examples

    rows, columns = load_results(folder)
    chosen = examples.collect(folder, rows, list(columns), k=2)
    for ex in chosen:
        shapes = {method: ex.maps[(MODEL, method)].shape for method in FORMS}
        assert set(shapes.values()) == {tuple(ex.image.shape[-2:])}, shapes
        for method in FORMS:
            np.testing.assert_allclose(ex.maps[(MODEL, method)], ex.maps[(MODEL, "npy")], rtol=0, atol=0)
