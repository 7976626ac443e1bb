"""The harbor Vision Transformer and every method on it: deterministic training, the attention
methods against the attention computed by hand, the CAM family on the token grid (batched, a
target per image), and the shipped ViT config end to end on small models."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import results
from bench.config import parse_config
from bench.engine import RunError, run_config
from bench.methods import create_method
from bench.models import load_model
from bench.models.harbor_vit import HarborViT, ViTTrainConfig, build, weights_sha256

REPO = Path(__file__).resolve().parents[1]
# A two-block harbor ViT trained for four steps (128 scenes, batches of 32): cheap, and enough
# to exercise adapter, cache and methods (the first test that builds one caches it for the others).
SMALL = {"n_train": 128, "epochs": 1, "n_eval": 44, "depth": 2}
CAM_FAMILY = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam"]


def _vit(depth: int = 2, seed: int = 0) -> HarborViT:
    torch.manual_seed(seed)
    model = HarborViT(depth=depth).eval()
    # Larger weights than the training init, so that attention is far from uniform and every
    # method's maps differ visibly between targets.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and not name.startswith("patch_embed"):
                p.mul_(8.0)
    return model


def _scenes(b: int) -> torch.Tensor:
    from bench.data.synthetic import scene_batch

    images, _ = scene_batch(1, "test", range(b), None, 96)
    return images


# -- training --------------------------------------------------------------------------------


def test_two_trainings_give_the_same_weights_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDBENCH_CACHE", str(tmp_path))
    cfg = ViTTrainConfig(variant="object_only", rho=None, **SMALL)
    a, facts_a = build(cfg, progress=False)
    for f in tmp_path.rglob("*"):  # no cache: the second build trains again from scratch
        if f.is_file():
            f.unlink()
    b, facts_b = build(cfg, progress=False)
    assert weights_sha256(a) == weights_sha256(b) == facts_a["weights_sha256"]
    assert facts_a == facts_b
    # The cache is read back (weights_only=True) to the same weights and facts.
    c, facts_c = build(cfg, progress=False)
    assert weights_sha256(c) == facts_a["weights_sha256"] and facts_c == facts_a
    # A different seed is a different model.
    other, _ = build(ViTTrainConfig(variant="object_only", rho=None, seed=1, **SMALL), progress=False)
    assert weights_sha256(other) != weights_sha256(a)


def test_bundle_contract_and_facts():
    b = load_model("harbor_vit:object_only", progress=False, **SMALL)
    assert b.spec == "harbor_vit:object_only" and not b.module.training
    assert b.target_layer == "blocks.1.norm1"  # the last block's norm1
    assert b.module.patch_embed.grid_size == (12, 12) and b.module.num_prefix_tokens == 1
    assert b.class_map.indices("boat") == [0] and b.class_map.indices("dolphin") == []
    x = torch.rand(2, 3, 96, 96)
    assert b.module(b.preprocess(x[0])[None]).shape == (1, 4)
    for key in ("accuracy_own_distribution", "accuracy_balanced_test", "reliance", "reliance_n", "weights_sha256"):
        assert key in b.info, key
    with pytest.raises(ValueError, match="unknown harbor_vit model"):
        load_model("harbor_vit:boaty")
    with pytest.raises(ValueError, match="no parameter"):
        load_model("harbor_vit:contextual", epochz=3)


# -- attention methods against the attention computed by hand --------------------------------


def _attention_by_hand(model: HarborViT, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's attention probabilities from its weights and its norm1 output."""
    inputs: list[torch.Tensor] = []
    handles = [blk.norm1.register_forward_hook(lambda _m, _i, out: inputs.append(out)) for blk in model.blocks]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    attns = []
    for blk, z in zip(model.blocks, inputs):
        b, t, d = z.shape
        heads = blk.attn.heads
        qkv = z @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
        q, k, _ = qkv.reshape(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attns.append(torch.softmax(q @ k.transpose(-2, -1) / (d // heads) ** 0.5, dim=-1))
    return attns


def test_rollout_on_a_two_block_vit_is_the_product_by_hand():
    model = _vit(depth=2)
    x = _scenes(3)
    a1, a2 = _attention_by_hand(model, x)
    eye = torch.eye(a1.shape[-1])
    step1 = 0.5 * a1.mean(1) + 0.5 * eye  # rows already sum to 1
    step2 = 0.5 * a2.mean(1) + 0.5 * eye
    expected = (step2 @ step1)[:, 0, 1:].reshape(3, 12, 12)
    out = create_method("attention_rollout")(model, x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-6)
    # Raw attention: the class token's row of the last block, heads averaged; block 0 the first.
    raw = create_method("raw_attention")(model, x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(raw, a2.mean(1)[:, 0, 1:].reshape(3, 12, 12), rtol=1e-4, atol=1e-6)
    first = create_method("raw_attention", block=0, head_fusion="max")(model, x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(first, a1.amax(1)[:, 0, 1:].reshape(3, 12, 12), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="block 2 does not exist"):
        create_method("raw_attention", block=2)(model, x, torch.tensor([0, 1, 2]))


def test_gradcam_on_the_token_layer_is_the_formula_by_hand():
    model = _vit(depth=2)
    x = _scenes(4)
    targets = torch.tensor([3, 2, 1, 0])
    seen: list[torch.Tensor] = []
    handle = model.blocks[1].norm1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    logits = model(x)
    handle.remove()
    (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), seen[0])
    tokens, grads = seen[0].detach()[:, 1:], grads[:, 1:]  # class token dropped
    weights = grads.mean(dim=1)  # B x C: the spatial mean of the gradient over the 144 patches
    expected = torch.relu(torch.einsum("bc,bnc->bn", weights, tokens)).reshape(4, 12, 12)
    out = create_method("gradcam", layer="blocks.1.norm1")(model, x, targets)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-6)


# -- every method on the harbor ViT: batched, one target per image ---------------------------


@pytest.mark.parametrize("name", CAM_FAMILY + ["grad_rollout", "attention_rollout", "raw_attention"])
def test_method_on_the_harbor_vit_token_grid_runs_batched_with_a_target_per_image(name):
    model = _vit(depth=2)
    params = {"layer": "norm"} if name == "cam" else {"layer": "blocks.1.norm1"} if name in CAM_FAMILY else {}
    if name == "scorecam":
        params["internal_batch_size"] = 50  # chunks end inside images
    method = create_method(name, **params)
    x = _scenes(8)
    targets = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    batch = method(model, x, targets)
    assert batch.shape == (8, 12, 12) and torch.isfinite(batch).all()
    assert batch.abs().amax() > 0, f"{name} gave all-zero maps"
    singles = torch.cat([method(model, x[i : i + 1], targets[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5 * float(batch.abs().max()))
    if name not in ("eigencam", "attention_rollout", "raw_attention"):
        assert not torch.allclose(batch, method(model, x, targets.roll(1))), f"{name} ignores the target"


def test_token_layer_without_a_grid_needs_reshape_tokens():
    class Bare(nn.Module):
        """A ViT-like model that does not say its patch grid."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 8, 8)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x).flatten(2).transpose(1, 2)], 1)
            t = self.mix(t)
            return self.head(t.softmax(1).transpose(1, 2).bmm(t).mean(1))

    x = torch.randn(2, 3, 32, 64)
    with pytest.raises(ValueError, match='reshape = "tokens"'):
        create_method("gradcam", layer="mix")(Bare().eval(), x, torch.tensor([0, 1]))
    out = create_method("gradcam", layer="mix", reshape="tokens", prefix_tokens=1)(Bare().eval(), x, torch.tensor([0, 1]))
    assert out.shape == (2, 4, 8)  # the input's aspect ratio
    with pytest.raises(ValueError, match="feature map"):
        create_method("gradcam", layer="embed", reshape="tokens")(Bare().eval(), x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="prefix_tokens"):
        create_method("gradcam", prefix_tokens=-1)


# -- fused attention (timm's layout, without timm) -------------------------------------------


class FusedAttention(nn.Module):
    """timm's ``Attention`` switch: ``fused_attn`` True computes with
    ``scaled_dot_product_attention`` and ``attn_drop`` never runs."""

    def __init__(self, dim: int = 8, heads: int = 2):
        super().__init__()
        self.heads, self.fused_attn = heads, True
        self.qkv, self.attn_drop, self.proj = nn.Linear(dim, 3 * dim), nn.Dropout(0.0), nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = self.attn_drop((q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class FusedViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attn1, self.attn2, self.head = FusedAttention(), FusedAttention(), nn.Linear(8, 3)

    def forward(self, x):
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.patch(x).flatten(2).transpose(1, 2)], 1)
        t = t + self.attn1(t)
        return self.head((t + self.attn2(t))[:, 0])


@pytest.mark.parametrize("name", ["attention_rollout", "grad_rollout", "raw_attention"])
def test_attention_methods_switch_fused_attention_off_and_back_on(name):
    torch.manual_seed(0)
    model = FusedViT().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused_logits = model(x)
    out = create_method(name)(model, x, torch.tensor([0, 2]))
    assert out.shape == (2, 4, 4) and torch.isfinite(out).all() and out.abs().amax() > 0
    assert model.attn1.fused_attn is True and model.attn2.fused_attn is True, "flags restored"
    with torch.no_grad():
        torch.testing.assert_close(model(x), fused_logits)


# -- the shipped ViT config, end to end, and the pre-flight check ----------------------------


def _shipped_config(n: int, models: list[dict]) -> dict:
    data = tomllib.loads((REPO / "configs" / "harbor_vit.toml").read_text())
    data["dataset"]["n"] = n
    data["models"] = models
    data["device"] = "cpu"
    return data


# The shipped config's many-pass methods with fewer passes, so the test stays light on two cores.
LIGHTER = {"smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 4}}


def test_shipped_vit_config_runs_every_method_on_both_harbor_vits(tmp_path):
    small = [{"spec": f"harbor_vit:{v}", **SMALL} for v in ("contextual", "object_only")]
    data = _shipped_config(6, small)  # scenes 0-5: a boat on each ground, two cars
    shipped = [m["name"] for m in data["methods"]]
    for needed in ("raw_attention", "attention_rollout", "grad_rollout", "cam", "gradcam", "gradcampp",
                   "xgradcam", "layercam", "scorecam", "eigencam", "gradient", "gradient_x_input",
                   "smoothgrad", "integrated_gradients"):
        assert needed in shipped, needed
    assert {"name": "cam", "layer": "norm"} in data["methods"]
    for m in data["methods"]:
        m.update(LIGHTER.get(m["name"], {}))
    cfg = parse_config(data, source="configs/harbor_vit.toml")
    methods = [m.label or create_method(m.name, **m.params).label for m in cfg.methods]
    out = tmp_path / "vit"
    run_config(cfg, out_dir=out, progress=False)
    rows = results.read_rows(out / results.SCORES)
    skipped = results.read_rows(out / results.SKIPPED)
    assert skipped == [], skipped[:3]
    per = {(r["model"], r["method"]) for r in rows}
    assert per == {(f"harbor_vit:{v}", m) for v in ("contextual", "object_only") for m in methods}
    assert len(rows) == 2 * len(methods) * 6
    transformer_rows = [r for r in rows if r["method"] in ("raw_attention", "attention_rollout", "grad_rollout")]
    assert not any(r["map_invalid"] for r in transformer_rows)
    # The shipped [reliance] section measures both ViTs' reliance (the validity table's input).
    reliance = results.read_rows(out / results.RELIANCE)
    assert data["reliance"]["modes"] == ["mean", "blur"]
    assert {(r["model"], r["mode"]) for r in reliance} == {(f"harbor_vit:{v}", m) for v in ("contextual", "object_only") for m in ("mean", "blur")}


def test_a_method_that_cannot_run_on_the_model_stops_the_run_before_any_row(tmp_path):
    tiny_cnn = {"spec": "harbor:object_only", "n_train": 64, "epochs": 1, "n_eval": 22, "width": 8}
    data = _shipped_config(4, [tiny_cnn])
    data["methods"] = [{"name": "gradcam"}, {"name": "attention_rollout"}]
    out = tmp_path / "cnn"
    with pytest.raises(RunError, match="attention_rollout.*harbor:object_only.*attn_pattern"):
        run_config(parse_config(data), out_dir=out, progress=False)
    scores = out / results.SCORES
    assert not scores.exists() or scores.stat().st_size == 0
