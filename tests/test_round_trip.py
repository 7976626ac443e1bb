"""The round trip a notebook user makes: maps computed with Captum, pytorch-grad-cam and
Quantus's ``explain`` directly (not through groundbench), saved the way each library hands them
over (a .pt batch with its index inside, one 1 x H x W .npy per image, an N x 1 x H x W .npy
with an index file), scored by ``groundbench score``, give the same numbers as the adapters
(``captum:LayerGradCam``, ``pytorch_grad_cam:GradCAM`` and ``captum:IntegratedGradients`` set
up as Quantus calls it) give in a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import bench
from bench.cli import main as cli
from bench.maps_io import safe_name

from test_methods_reference import _import_pgc

DATASET = {"name": "harbor", "split": "test", "n": 10, "seed": 1}
MODEL = "harbor:contextual"
# Quantus 0.6.0's explain(method="IntegratedGradients"): zero baseline, 10 steps, Riemann
# trapezoid, attributions summed over the channel axis.
QUANTUS_IG = {"name": "captum:IntegratedGradients", "n_steps": 10, "method": "riemann_trapezoid", "reduce": "sum"}
METRICS = [{"name": "pointing_game", "tolerance": 6.0}, {"name": "energy_pointing_game"}, {"name": "leakage"}]


@pytest.fixture(scope="module")
def libraries():
    pytest.importorskip("captum.attr")
    quantus = pytest.importorskip("quantus")
    pgc = _import_pgc()
    return pgc, quantus


@pytest.fixture(scope="module")
def adapter_run(libraries, tmp_path_factory):
    """The adapters in a run; batch size 1, as the notebook below calls each library per image."""
    config = {
        "name": "adapters", "seed": 0, "device": "cpu", "batch_size": 1,
        "dataset": DATASET, "models": [{"spec": MODEL}],
        "methods": [{"name": "captum:LayerGradCam"}, {"name": "pytorch_grad_cam:GradCAM"}, QUANTUS_IG],
        "metrics": METRICS,
    }
    return bench.run(config, out=tmp_path_factory.mktemp("rt"), write_tables=False)


@pytest.fixture(scope="module")
def notebook_maps(libraries, tmp_path_factory):
    """What a notebook does: load the data and the model, call each library, save its maps."""
    pgc, quantus = libraries
    from captum.attr import LayerGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from bench.data.registry import load_dataset
    from bench.models import load_model

    dataset = load_dataset(DATASET["name"], **{k: v for k, v in DATASET.items() if k != "name"})
    bundle = load_model(MODEL)
    model = bundle.module.eval()
    layer = model.get_submodule(bundle.target_layer)
    root = tmp_path_factory.mktemp("notebook") / "maps" / safe_name(MODEL)
    folders = {m: root / safe_name(m) for m in ("captum:LayerGradCam", "pytorch_grad_cam:GradCAM", "quantus:IntegratedGradients")}
    for f in folders.values():
        f.mkdir(parents=True)
    captum_maps, quantus_maps, index = [], [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        x = bundle.preprocess(sample.image)[None]
        for target in sample.targets:
            out = bundle.class_map.indices(target.label)
            if not out:
                continue
            t = out[0]
            index.append((str(sample.image_id), target.label))
            captum_maps.append(LayerGradCam(model, layer).attribute(x, target=t).detach())  # 1 x 1 x h x w
            with pgc.GradCAM(model=model, target_layers=[layer]) as cam:
                m = cam(input_tensor=x, targets=[ClassifierOutputTarget(t)])  # 1 x H x W numpy
            np.save(folders["pytorch_grad_cam:GradCAM"] / f"{safe_name(str(sample.image_id))}__{safe_name(target.label)}.npy", m)
            quantus_maps.append(quantus.explain(model, x.numpy(), np.array([t]), method="IntegratedGradients"))  # 1 x 1 x H x W
    assert index
    torch.save(
        {"maps": torch.cat(captum_maps), "image_ids": [i for i, _ in index], "targets": [t for _, t in index]},
        folders["captum:LayerGradCam"] / "layergradcam.pt",
    )
    np.save(folders["quantus:IntegratedGradients"] / "ig.npy", np.concatenate(quantus_maps))  # N x 1 x H x W
    (folders["quantus:IntegratedGradients"] / "ig.index.json").write_text(json.dumps(index))
    return root.parent


def test_library_maps_saved_and_scored_equal_the_adapters(adapter_run, notebook_maps, tmp_path):
    args = ["score", str(notebook_maps), "--dataset", "harbor", "--out", str(tmp_path), "--name", "notebook"]
    for key, value in DATASET.items():
        if key != "name":
            args += ["--dataset-param", f"{key}={json.dumps(value)}"]
    args += ["--metric", "pointing_game:tolerance=6.0", "--metric", "energy_pointing_game", "--metric", "leakage", "--batch-size", "1"]
    assert cli(args) == 0
    scored = bench.rows(tmp_path / "notebook")
    ran = bench.rows(adapter_run)
    same_method = {
        "captum:LayerGradCam": "captum:LayerGradCam",
        "pytorch_grad_cam:GradCAM": "pytorch_grad_cam:GradCAM",
        "quantus:IntegratedGradients": "captum:IntegratedGradients[method=riemann_trapezoid,n_steps=10,reduce=sum]",
    }
    assert set(scored["method"]) == set(same_method)
    assert set(ran["method"]) == set(same_method.values())
    key = ["image_id", "target"]
    cols = ["pointing_game", "energy_pointing_game", "leakage"]
    for ours, theirs in same_method.items():
        a = scored[scored.method == ours].set_index(key)[cols].sort_index()
        b = ran[ran.method == theirs].set_index(key)[cols].sort_index()
        assert len(a) == len(b) > 0 and list(a.index) == list(b.index), ours
        # The same maps through the same scoring core: equal to float32 rounding.
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6, obj=ours)
