"""The limit of a run: the model passes its method needs, alone, on inputs already on the device."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch
from torch import nn

from bench.perf.timing import synchronize


def model_passes(method_name: str, params: dict[str, Any], model: nn.Module, layer: str | None,
                 inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    """One call = the model passes ``method_name`` needs for the batch ``inputs`` and nothing
    else: Grad-CAM-like methods one forward (layer output kept) and one backward to the target
    layer; RISE ``n_masks`` forwards per image in chunks of ``internal_batch_size``."""
    from bench.methods import create_method
    from bench.methods.base import resolve_layer

    method = create_method(method_name, **params)
    if method.family == "cam":
        module, _act = resolve_layer(model, params.get("layer") or layer)
        grads = method.needs_grad

        def cam_passes() -> None:
            kept: list[torch.Tensor] = []
            handle = module.register_forward_hook(lambda _m, _i, out: kept.append(out))
            try:
                with torch.set_grad_enabled(grads):
                    logits = model(inputs)
                    if grads:
                        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), kept[0])
            finally:
                handle.remove()

        return cam_passes
    if method_name == "rise":
        n, chunk = int(method.params["n_masks"]), int(method.params["internal_batch_size"])
        total = inputs.shape[0] * n
        sizes = [min(chunk, total - s) for s in range(0, total, chunk)]
        pool = inputs[torch.arange(chunk, device=inputs.device) % inputs.shape[0]]

        @torch.no_grad()
        def rise_passes() -> None:
            for size in sizes:
                model(pool[:size])

        return rise_passes
    raise ValueError(f"perf: no model-pass limit defined for method {method_name!r} (gradcam-like or rise)")


def measure_limit(bundle, method_name: str, params: dict[str, Any], batch_size: int, device: torch.device,
                  *, autocast: str = "none", iters: int = 3, seed: int = 0) -> float:
    """Images/s of the method's model passes alone (:func:`model_passes`), after one warm-up."""
    model = bundle.module.to(device).to(memory_format=torch.channels_last)
    h, w = bundle.preprocess.size if hasattr(bundle.preprocess, "size") else (224, 224)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, h, w, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    num = int(bundle.info.get("num_outputs", 1000))
    targets = torch.randint(0, num, (batch_size,), generator=g).to(device)
    run = model_passes(method_name, params, model, bundle.target_layer, inputs, targets)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast == "bf16" else contextlib.nullcontext
    with ctx():
        run()
    synchronize(device)
    t0 = time.perf_counter()
    with ctx():
        for _ in range(iters):
            run()
    synchronize(device)
    return batch_size * iters / (time.perf_counter() - t0)


def measure_method(bundle, method_name: str, params: dict[str, Any], batch_size: int, device: torch.device,
                   *, autocast: str = "none", iters: int = 3, seed: int = 0) -> float:
    """Images/s of the attribution method itself (its model passes plus its own work: hooks,
    channel weighting, RISE's masks) on inputs already on the device; no data, no metrics."""
    from bench.methods import create_method

    model = bundle.module.to(device).to(memory_format=torch.channels_last)
    h, w = bundle.preprocess.size if hasattr(bundle.preprocess, "size") else (224, 224)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, h, w, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, int(bundle.info.get("num_outputs", 1000)), (batch_size,), generator=g).to(device)
    method = create_method(method_name, **params).with_model_defaults(bundle.target_layer)
    seeds = list(range(batch_size))
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast == "bf16" else contextlib.nullcontext
    with ctx():
        method(model, inputs, targets, seeds=seeds)
    synchronize(device)
    t0 = time.perf_counter()
    with ctx():
        for _ in range(iters):
            method(model, inputs, targets, seeds=seeds)
    synchronize(device)
    return batch_size * iters / (time.perf_counter() - t0)
