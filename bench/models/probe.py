"""What one dummy forward pass tells about an unknown model: its number of outputs and a
default CAM target layer.

The default layer is the last module (in the order outputs are produced; a container counts
after its children, so ``layer4`` wins over ``layer4.2.relu``) whose output is 4-D with a
spatial size above 1x1, provided that only the classifier head runs after it: no module with
parameters produces a spatial (or token) output later. For a CNN that is the last feature map
before global pooling (``layer4`` of a ResNet, ``features`` of a VGG or EfficientNet). For a
transformer the condition fails (attention blocks run after the patch embedding) and there is
no default: such a model needs an explicit layer, or a method that needs none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProbeResult:
    num_outputs: int
    target_layer: str | None
    target_shape: tuple[int, ...] | None  # C, h, w of the default layer's output


def probe_module(module: nn.Module, input_size: tuple[int, int]) -> ProbeResult:
    """One forward pass of a zero image (batch 1) through ``module`` in eval mode."""
    fired: list[tuple[str, tuple[int, ...] | None, bool]] = []  # name, shape, has own params
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue
        has_params = any(True for _ in sub.parameters(recurse=False))

        def hook(_m, _i, out, name=name, has_params=has_params):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            fired.append((name, shape, has_params))

        handles.append(sub.register_forward_hook(hook))
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(torch.zeros((1, 3, *input_size), device=device, dtype=dtype))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return B x K logits; for a 1-image batch it returned {got}")

    def spatial(shape) -> bool:
        return shape is not None and len(shape) >= 3 and int(torch.tensor(shape[2:]).prod()) > 1

    layer, layer_shape = None, None
    for pos in range(len(fired) - 1, -1, -1):
        name, shape, _ = fired[pos]
        if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
            later = fired[pos + 1 :]
            if not any(p and spatial(s) for _, s, p in later):
                layer, layer_shape = name, shape[1:]
            break
    return ProbeResult(int(out.shape[1]), layer, layer_shape)
