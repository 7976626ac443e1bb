"""On CUDA: interventions and faithfulness metrics give the CPU's numbers and never wait for the
device inside (torch's sync debug mode raises on any host synchronisation). Skipped without
CUDA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.interventions import measure_reliance, pack
from bench.metrics.faithfulness import confidence_change, deletion, insertion

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).eval()
    g = torch.Generator().manual_seed(1)
    b = 8
    x = torch.randn(b, 3, 48, 48, generator=g)
    obj = torch.zeros(b, 48, 48, dtype=torch.bool)
    obj[:, 10:25, 12:30] = True
    ctx = torch.zeros(b, 48, 48, dtype=torch.bool)
    ctx[:, 30:, :] = True
    ctx[::3] = False
    return model, x, torch.randint(0, 10, (b,), generator=g), obj, ctx, torch.rand(b, generator=g, dtype=torch.float64), torch.rand(b, 48, 48, generator=g)


def _all(model, x, y, obj, ctx, draws, maps):
    return (
        pack(measure_reliance(model, x, y, obj, ctx, draws, max_batch=16)),
        deletion(model, x, maps, y, steps=8),
        insertion(model, x, maps, y, steps=8),
        *confidence_change(model, x, maps, y),
    )


def test_cuda_gives_the_cpu_numbers_without_host_synchronisation():
    torch.backends.cudnn.allow_tf32 = False
    model, *data = _case()
    cpu = _all(model, *data)
    dev = [t.cuda() for t in data]
    model = model.cuda()
    _all(model, *dev)  # warm-up: cuDNN picks its algorithms (which may synchronise) here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = _all(model, *dev)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for a, b in zip(cpu, gpu):
        b = b.cpu()
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        assert torch.allclose(a.nan_to_num(0), b.nan_to_num(0), atol=1e-4)
