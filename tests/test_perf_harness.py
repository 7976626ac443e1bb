"""The perf harness measures what it says, on tiny sizes (correctness, not timing)."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn

from bench import results
from bench.config import parse_config
from bench.data.registry import load_dataset
from bench.perf import (
    STAGES,
    PerfReport,
    Row,
    StageTimer,
    SyncDetector,
    find_syncs,
    measure_limit,
    measure_method,
    measure_pipeline,
    model_passes,
    perf_classes,
    pipeline_metrics,
    render,
    resnet50,
    targets_per_image,
    to_json,
    write_image_folder,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("jpegs"), 6, size=(96, 128), seed=3)


def tiny_pipeline(folder, **over):
    """ResNet-50 at 64x64 input (cheap on a CPU), every metric the folder supports."""
    cfg = {
        "name": "perf-test",
        "seed": 0,
        "device": "cpu",
        "batch_size": 2,
        "num_workers": 0,
        "dataset": {"name": "coco", "root": str(folder), "split": "perf", "limit": 6, "manifest": ""},
        "models": [{"spec": "python:bench.perf.resnet:resnet50", "target_layer": "layer4", "class_map": "imagenet", "input_size": 64}],
        "methods": [{"name": "gradcam"}],
        "metrics": pipeline_metrics(),
    }
    cfg.update(over)
    return cfg


def test_resnet50_has_resnet50_shape_and_is_seeded():
    model = resnet50(seed=1)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision's resnet50
    feats = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: feats.setdefault("x", out))
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 224, 224))
    assert tuple(feats["x"].shape) == (1, 2048, 7, 7) and tuple(logits.shape) == (1, 1000)
    assert torch.isfinite(logits).all()
    assert torch.equal(resnet50(seed=1).fc.weight, model.fc.weight)
    assert not torch.equal(resnet50(seed=2).fc.weight, model.fc.weight)


def test_image_folder_is_coco_readable_and_reused(folder):
    ds = load_dataset("coco", root=str(folder), split="perf", manifest="")
    assert len(ds) == 6 and set(ds.class_names) == set(perf_classes())
    s = ds[0]
    assert tuple(s.image.shape) == (3, 96, 128) and 0.0 <= float(s.image.min()) <= float(s.image.max()) <= 1.0
    assert s.targets and all(t.mask.any() for t in s.targets)
    assert all(p.suffix == ".jpg" for p in (folder / "perf").iterdir())
    stamp = (folder / "annotations" / "instances_perf.json").stat().st_mtime_ns
    write_image_folder(folder, 6, size=(96, 128), seed=3)  # same request: nothing rewritten
    assert (folder / "annotations" / "instances_perf.json").stat().st_mtime_ns == stamp


def test_targets_per_image_counts_distinct_classes(tmp_path):
    (tmp_path / "annotations").mkdir()
    anns = [(1, 1), (1, 1), (1, 2), (2, 3), (3, 1)]  # image 1: two instances of class 1, one of 2
    data = {"images": [{"id": i} for i in (1, 2, 3)],
            "annotations": [{"image_id": i, "category_id": c} for i, c in anns]}
    (tmp_path / "annotations" / "instances_perf.json").write_text(json.dumps(data))
    assert targets_per_image(tmp_path, 0, 2) == 1.5
    assert targets_per_image(tmp_path, 1, 3) == 1.0


def test_stage_timer_sums_wall_time_per_stage():
    timer = StageTimer("cpu")
    for _ in range(2):
        with timer.stage("load"):
            time.sleep(0.01)
    with timer.stage("metrics"):
        pass
    assert timer.calls == {"load": 2, "metrics": 1}
    assert 0.02 <= timer.totals["load"] < 0.5
    shares = timer.shares(timer.totals["load"] * 2)
    assert shares["load"] == pytest.approx(0.5)
    timer.reset()
    assert not timer.totals


class Counting(nn.Module):
    """A tiny CNN that counts forward calls and the images it saw."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        self.calls = self.images = 0

    def forward(self, x):
        self.calls += 1
        self.images += x.shape[0]
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_model_passes_are_what_each_method_needs():
    model = Counting().eval()
    x, t = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 4])
    grads = []
    model.features.register_full_backward_hook(lambda _m, gin, gout: grads.append(gout[0]))
    model_passes("gradcam", {}, model, "features", x, t)()
    assert model.calls == 1 and model.images == 3  # one forward ...
    assert len(grads) == 1  # ... and one backward through the target layer
    model.calls = model.images = 0
    model_passes("rise", {"n_masks": 10, "internal_batch_size": 4}, model, None, x, t)()
    assert model.images == 30 and model.calls == math.ceil(30 / 4)  # n_masks forwards per image
    with pytest.raises(ValueError, match="no model-pass limit"):
        model_passes("occlusion", {}, model, None, x, t)


def test_limit_and_method_rates_are_images_per_second(monkeypatch):
    from bench.models import load_model
    from bench.perf import limit

    bundle = load_model("python:bench.perf.resnet:resnet50", target_layer="layer4", class_map="imagenet", input_size=32)
    for measure in (measure_limit, measure_method):
        rate = measure(bundle, "gradcam", {}, 2, torch.device("cpu"), iters=1)
        assert rate > 0 and math.isfinite(rate)
    # images/s = batch x iterations / seconds: with a clock that advances 1 s per reading pair
    ticks = iter([10.0, 14.0])
    monkeypatch.setattr(limit.time, "perf_counter", lambda: next(ticks))
    assert measure_limit(bundle, "gradcam", {}, 2, torch.device("cpu"), iters=3) == pytest.approx(2 * 3 / 4.0)


def test_pipeline_runs_the_engine_and_times_every_stage(folder, tmp_path):
    # One DataLoader worker: batches (stacked inputs) cross a process boundary as in real runs.
    res = measure_pipeline(tiny_pipeline(folder, num_workers=1), tmp_path / "run", torch.device("cpu"), sync_stages=False)
    assert res.images == 4 and res.batches == 2  # the first batch of 2 is the warm-up
    assert res.images_per_s > 0
    for stage in ("load", "prepare", "attribute", "upsample", "metrics", "to_host", "rows", "write"):
        assert res.stage_shares.get(stage, 0) > 0, stage
    assert "resolve" not in res.stage_shares  # one output per class: no extra forward pass
    assert sum(res.stage_shares.values()) <= 1.0 + 1e-9  # stages never overlap, nothing after the last batch
    rows = results.read_rows(tmp_path / "run" / results.SCORES)
    assert len(rows) == res.rows > 0
    # one row per (image, target): what the limit is scaled by
    assert len(rows) == round(6 * targets_per_image(folder, 0, 6))
    assert {m["name"] for m in pipeline_metrics()} <= set(rows[0])


def test_sync_detector_flags_host_reads_of_device_tensors_only():
    host = torch.ones(3)
    with SyncDetector() as det:
        dev = torch.ones(3).to("cpu")  # an upload (on a CPU the same object, marked all the same)
        y = dev * 2
        bool(host.any())  # host data: free
        float(y.sum())  # a host read of device data
        y[y > 1]  # a data-dependent shape
        torch.nonzero(y)
        z = torch.zeros(2, device="cpu")
        z.tolist()
    ops = [s.op for s in det.sites]
    assert ops == ["__float__", "__getitem__[bool mask]", "nonzero", "tolist"]


def test_engine_loop_has_no_hidden_synchronisation(folder, tmp_path):
    """Besides the one score copy per batch, nothing in the loop reads device data on the host
    (checked on the CPU through the tensors' provenance; on CUDA it is the same code)."""
    cfg = tiny_pipeline(
        folder,
        metrics=[{"name": "pointing_game"}, {"name": "energy_pointing_game"}, {"name": "leakage"}],
        methods=[{"name": "gradcam"}, {"name": "center"}],
    )
    check = find_syncs(cfg, tmp_path / "sync")
    assert check.batches == 3
    assert check.sites == []
    if torch.cuda.is_available():
        assert check.cuda_syncs is not None


def test_sync_check_finds_a_synchronisation_put_into_the_loop(folder, tmp_path, monkeypatch):
    import bench.scoring as scoring

    original = scoring.device_index

    def syncing_index(values, device):
        out = original(values, device)
        int(out.sum())  # what `int(row.argmax())` per job used to do
        return out

    monkeypatch.setattr(scoring, "device_index", syncing_index)
    cfg = tiny_pipeline(folder, metrics=[{"name": "pointing_game"}])
    cfg["dataset"]["limit"] = 2
    sites = find_syncs(cfg, tmp_path / "sync").sites
    assert sites and all(s.op == "__int__" and s.where.startswith("bench/scoring.py") for s in sites)


def test_engine_loop_has_no_hidden_synchronisation_with_max_logit_classes(tmp_path):
    """Classes with several outputs (COCO -> ImageNet) are resolved on the device too."""
    from bench.perf import write_image_folder as write

    root = write(tmp_path / "coco", 2, size=(64, 64), seed=1)
    data = json.loads((root / "annotations" / "instances_perf.json").read_text())
    for c in data["categories"]:
        c["name"] = ["boat", "dog", "car", "bird", "cat", "bus", "truck", "train", "chair", "bottle"][c["id"] - 1]
    (root / "annotations" / "instances_perf.json").write_text(json.dumps(data))
    cfg = tiny_pipeline(root, metrics=[{"name": "energy_pointing_game"}])
    cfg["dataset"]["limit"] = 2
    cfg["models"][0]["class_map"] = "coco"
    check = find_syncs(cfg, tmp_path / "sync")
    assert check.batches == 1 and check.sites == []
    rows = results.read_rows(tmp_path / "sync" / results.SCORES)
    assert rows and all(isinstance(r["output"], int) and 0 <= r["output"] < 1000 for r in rows)


def test_render_and_json_hold_every_measurement():
    report = PerfReport(device="CPU: test", environment={"torch": torch.__version__}, settings={"workers": 2})
    report.rows.append(Row("resnet50", "gradcam", 16, 10.0, 9.5, 8.0, 0.8, {"attribute": 0.7, "metrics": 0.1}, 32, 1.75))
    report.memory = {"samples": [200, 2000], "peak_rss_mb": [400.0, 410.0], "growth": 0.025, "suite": "harbor"}
    report.metrics = [{"metric": "pointing_game", "groundbench_ms": 0.1, "quantus_ms": 5.0, "speedup": 50.0},
                      {"metric": "iou", "groundbench_ms": 0.2, "quantus_ms": math.nan, "speedup": math.nan}]
    text = render(report)
    assert "resnet50" in text and "0.80" in text and "70.0" in text and "9.50" in text and "1.75" in text
    assert "200 samples 400 MiB" in text and "+2.5%" in text
    assert "50.0x" in text
    assert len(STAGES) == 9
    data = json.loads(json.dumps(to_json(report), default=str))
    assert data["rows"][0]["ratio"] == 0.8


def test_autocast_config_key_is_validated():
    base = {"dataset": {"name": "harbor"}, "models": [{"spec": "harbor:contextual"}], "methods": [{"name": "center"}],
            "metrics": [{"name": "pointing_game"}]}
    assert parse_config(base).autocast == "none"
    assert "autocast" not in parse_config(base).to_dict()  # unset: resolved configs unchanged
    cfg = parse_config({**base, "autocast": "bf16"})
    assert cfg.autocast == "bf16" and cfg.to_dict()["autocast"] == "bf16"
    from bench.config import ConfigError

    with pytest.raises(ConfigError, match="autocast"):
        parse_config({**base, "autocast": "fp8"})
