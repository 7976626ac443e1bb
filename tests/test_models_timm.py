"""timm Vision Transformers (random weights): every method runs on them by default.

timm is not a dependency of groundbench (it needs torchvision, whose wheels pin one torch build
each): these tests run wherever ``import timm`` works and skip with the reason otherwise. They
use random weights, so nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:
    import timm
except Exception as exc:  # noqa: BLE001 - torchvision of another torch build raises RuntimeError
    pytest.skip(
        f"timm does not import here ({type(exc).__name__}: {exc}); install timm beside the "
        "torchvision built for this torch to run these tests",
        allow_module_level=True,
    )

from bench.methods import create_method
from bench.models import load_model

CAM_FAMILY = ["gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam"]
ATTENTION = ["raw_attention", "attention_rollout", "grad_rollout"]


def _small(name: str) -> torch.nn.Module:
    """A timm model at 64 x 64 input (4 x 4 patches of 16), random weights, as created."""
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=64, num_classes=5).eval()


def _fused(model: torch.nn.Module) -> list[bool]:
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def test_timm_adapter_gives_vits_a_token_layer():
    b = load_model("timm:vit_tiny_patch16_224", pretrained=False)
    assert b.target_layer == "blocks.11.norm1"
    assert b.info["num_prefix_tokens"] == 1 and "norm1" in b.info["target_layer_source"]
    x = torch.rand(2, 3, 224, 224)
    maps = create_method("gradcam").with_model_defaults(b.target_layer)(b.module, x, torch.tensor([3, 7]))
    assert maps.shape == (2, 14, 14) and torch.isfinite(maps).all()


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_methods_run_on_timm_as_created(name):
    model = _small("vit_tiny_patch16_224")
    before = _fused(model)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2, 3])
    out = create_method(name)(model, x, targets)
    assert out.shape == (4, 4, 4) and torch.isfinite(out).all() and out.abs().amax() > 0
    assert _fused(model) == before, "the fused-attention flags are restored"
    singles = torch.cat([create_method(name)(model, x[i : i + 1], targets[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(out, singles, rtol=1e-4, atol=1e-6)


def test_rollout_on_timm_is_the_product_of_its_attention():
    model = _small("vit_tiny_patch16_224")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    attns: list[torch.Tensor] = []
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    handles = [blk.attn.attn_drop.register_forward_hook(lambda _m, _i, out: attns.append(out)) for blk in model.blocks]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    t = attns[0].shape[-1]
    expected = torch.eye(t).expand(2, t, t)
    for a in attns:
        expected = (0.5 * a.mean(1) + 0.5 * torch.eye(t)) @ expected
    out = create_method("attention_rollout")(model, x, torch.tensor([0, 1]))
    torch.testing.assert_close(out, expected[:, 0, 1:].reshape(2, 4, 4), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", CAM_FAMILY)
def test_cam_family_on_the_timm_token_grid_batched_with_a_target_per_image(name):
    model = _small("vit_tiny_patch16_224")
    params = {"layer": "blocks.11.norm1"}
    if name == "scorecam":
        params["internal_batch_size"] = 100
    method = create_method(name, **params)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([4, 2, 0, 1])
    batch = method(model, x, targets)
    assert batch.shape == (4, 4, 4) and torch.isfinite(batch).all()
    singles = torch.cat([method(model, x[i : i + 1], targets[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5 * float(batch.abs().max() + 1e-12))


def test_distilled_deit_prefix_tokens_come_from_the_model():
    model = _small("deit_tiny_distilled_patch16_224")
    assert model.num_prefix_tokens == 2  # class and distillation tokens
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    for name in ATTENTION:
        assert create_method(name)(model, x, torch.tensor([0, 1])).shape == (2, 4, 4)
    out = create_method("gradcam", layer="blocks.11.norm1")(model, x, torch.tensor([0, 1]))
    assert out.shape == (2, 4, 4)
    # Counting only the class token as prefix leaves 17 tokens: not the model's 4 x 4 grid.
    with pytest.raises(ValueError, match="patch grid"):
        create_method("attention_rollout", prefix_tokens=1)(model, x, torch.tensor([0, 1]))


def test_local_weights_load_through_file_with_a_timm_arch(tmp_path):
    torch.manual_seed(5)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    path = tmp_path / "vit_tiny.pth"
    torch.save(source.state_dict(), path)
    b = load_model(f"file:{path}", arch="timm:vit_tiny_patch16_224", class_map="coco")
    for k, v in source.state_dict().items():
        assert torch.equal(v, b.module.state_dict()[k]), k
    assert b.target_layer == "blocks.11.norm1" and b.class_map.indices("boat")


def test_run_with_a_timm_vit_scores_every_row_and_exits_0(tmp_path):
    config = tmp_path / "timm_vit.toml"
    config.write_text(
        """
name = "timm-vit"
device = "cpu"
batch_size = 4
[dataset]
name = "harbor"
split = "test"
n = 4
seed = 1
[[models]]
spec = "timm:deit_tiny_patch16_224"
pretrained = false
class_map = "coco"
[[methods]]
name = "raw_attention"
[[methods]]
name = "attention_rollout"
[[methods]]
name = "grad_rollout"
[[methods]]
name = "gradcam"
[[metrics]]
name = "pointing_game"
"""
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(config), "--out", str(tmp_path / "results"), "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    from bench import results

    out = tmp_path / "results" / "timm-vit"
    rows = results.read_rows(out / results.SCORES)
    skipped = results.read_rows(out / results.SKIPPED)
    assert not [s for s in skipped if "method" in s], skipped
    assert {r["method"] for r in rows} == {"raw_attention", "attention_rollout", "grad_rollout", "gradcam"}
    assert len(rows) == 4 * 4  # 4 scenes, each with one object
