"""Test support for the sanity-check tests: a model-independent map registered as a test
method, and a few harbor scenes with their targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.data.synthetic import HarborScenes
from bench.methods.base import AttributionMethod, register_method


class EdgeMap(AttributionMethod):
    """Sobel gradient magnitude of the image's channel mean: the edge detector Adebayo et al.
    compare saliency maps with. It never calls the model, so it must pass through any
    randomisation of the model unchanged (similarity 1)."""

    name = "_test_edges"
    family = "baseline"
    description = "test only: Sobel edge magnitude of the input (model-independent)"

    def attribute(self, model, inputs, targets, *, seeds=None):
        gray = inputs.float().mean(dim=1, keepdim=True)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=inputs.device)
        kernels = torch.stack([kx, kx.t()])[:, None]
        g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
        return g.pow(2).sum(dim=1).sqrt()


register_method(EdgeMap)


def harbor_batch(bundle, n: int = 8, seed: int = 1):
    """The first ``n`` test scenes that hold an object: inputs (channels_last), their target
    output indices, their samples."""
    data = HarborScenes(split="test", n=4 * n, seed=seed, size=96)
    samples = [s for s in (data[i] for i in range(len(data))) if s.targets][:n]
    inputs = torch.stack([bundle.preprocess(s.image) for s in samples]).contiguous(memory_format=torch.channels_last)
    targets = torch.tensor([bundle.class_map.indices(s.targets[0].label)[0] for s in samples])
    return inputs, targets, samples
