"""The harbor CNNs: they learn their task, and intervention shows which one uses the water."""

from __future__ import annotations

import torch

from bench.models import load_model
from bench.models.harbor import HarborNet, TrainConfig, build


def test_both_models_learn_their_task_and_reliance_is_ordered():
    ctx = load_model("harbor:contextual", progress=False)
    obj = load_model("harbor:object_only", progress=False)
    # Clean accuracy on each model's own test distribution (docs/design.md, "The harbor suite", asks for >= 90%).
    assert ctx.info["accuracy_own_distribution"] >= 0.90
    assert obj.info["accuracy_own_distribution"] >= 0.90
    # The object-only model does not care where the object is; the contextual one does.
    assert obj.info["accuracy_balanced_test"] >= 0.90
    assert ctx.info["accuracy_balanced_test"] < obj.info["accuracy_balanced_test"]
    # True reliance on context, by intervention: the contextual model relies on it more,
    # overall and for boats on water in particular (the seed problem).
    assert ctx.info["reliance"] > obj.info["reliance"] + 0.2
    assert ctx.info["reliance_boat"] > obj.info["reliance_boat"] + 0.2
    assert ctx.info["reliance_n"] == obj.info["reliance_n"] > 50


def test_bundle_contract():
    b = load_model("harbor:object_only", progress=False)
    assert not b.module.training
    assert b.target_layer == "features"
    assert b.class_map.indices("boat") == [0] and b.class_map.indices("dolphin") == []
    x = torch.rand(2, 3, 96, 96)
    assert b.module(b.preprocess(x[0])[None]).shape == (1, 4)


def test_training_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDBENCH_CACHE", str(tmp_path))
    cfg = TrainConfig(variant="object_only", rho=None, n_train=256, epochs=1, n_eval=44, width=8)
    a, facts_a = build(cfg, progress=False)
    # Remove the cache so the second build trains again from scratch.
    for f in tmp_path.rglob("*"):
        if f.is_file():
            f.unlink()
    b, facts_b = build(cfg, progress=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert facts_a == facts_b
    # The cache is loaded with weights_only=True and gives the same weights.
    c, facts_c = build(cfg, progress=False)
    assert facts_c == facts_a
    assert all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_unknown_variant_and_parameter():
    import pytest

    with pytest.raises(ValueError, match="unknown harbor model"):
        load_model("harbor:boaty")
    with pytest.raises(ValueError, match="no parameter"):
        load_model("harbor:contextual", epochz=3)
    assert isinstance(HarborNet(), torch.nn.Module)
