"""Perturbation family: change the input, watch the target's score. Model-agnostic and
gradient-free; cost grows with the number of perturbed inputs, which run batched across images,
``internal_batch_size`` model inputs at a time. Maps are at input resolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.methods.base import (
    AttributionMethod,
    MethodConfigError,
    chunks,
    image_seeds,
    register_method,
    target_scores,
)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Top/left corners of the occlusion windows along one axis: 0, stride, ... and, when the
    stride does not land on the border, one more window flush with it, so every pixel is covered
    (where the stride divides ``size - window``, the windows are exactly Captum's)."""
    if window > size:
        raise MethodConfigError(f"occlusion: window {window} is larger than the input side {size}")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@register_method
class Occlusion(AttributionMethod):
    """Zeiler & Fergus 2014: slide a ``window`` x ``window`` patch (all channels) with step
    ``stride``, replacing the input by ``baseline`` (model-input units; 0 is the dataset mean for
    mean/std-normalised inputs). A pixel's value is the mean, over the windows that cover it, of
    the drop of the target logit: logit(x) - logit(x occluded). Equals Captum's ``Occlusion``
    with sliding window (C, window, window) and strides (C, stride, stride)."""

    name = "occlusion"
    family = "perturbation"
    defaults = {"window": 16, "stride": 8, "baseline": 0.0, "internal_batch_size": 64}
    description = "occlusion (Zeiler & Fergus, ECCV 2014): logit drop under a sliding patch"

    def validate(self) -> None:
        self.require("window", self.params["window"] >= 1, "an integer >= 1")
        self.require("stride", self.params["stride"] >= 1, "an integer >= 1")
        self.require("baseline", math.isfinite(self.params["baseline"]), "a finite number")

    def check_model(self, model, input_shape) -> None:
        super().check_model(model, input_shape)
        side = min(int(input_shape[-2]), int(input_shape[-1]))
        if self.params["window"] > side:
            raise MethodConfigError(
                f"method 'occlusion' parameter 'window' must be at most the model input's side "
                f"({'x'.join(map(str, input_shape[-2:]))} px), got {self.params['window']}"
            )

    @torch.no_grad()
    def attribute(self, model, inputs, targets, *, seeds=None):
        win, stride = int(self.params["window"]), int(self.params["stride"])
        if win < 1 or stride < 1:
            raise MethodConfigError("occlusion: window and stride must be >= 1")
        b, _, h, w = inputs.shape
        ys = torch.tensor(window_starts(h, win, stride)).to(inputs.device)
        xs = torch.tensor(window_starts(w, win, stride)).to(inputs.device)
        y0 = ys.repeat_interleave(len(xs))
        x0 = xs.repeat(len(ys))
        n = y0.shape[0]
        rows = torch.arange(h, device=inputs.device)
        cols = torch.arange(w, device=inputs.device)
        base = target_scores(model(inputs), targets)
        image = torch.arange(b, device=inputs.device).repeat_interleave(n)
        window = torch.arange(n, device=inputs.device).repeat(b)
        total = torch.zeros((b, h, w), device=inputs.device, dtype=inputs.dtype)
        for sl in chunks(b * n, self.params["internal_batch_size"]):
            idx, win_idx = image[sl], window[sl]
            in_rows = (rows >= y0[win_idx, None]) & (rows < y0[win_idx, None] + win)
            in_cols = (cols >= x0[win_idx, None]) & (cols < x0[win_idx, None] + win)
            mask = in_rows[:, :, None] & in_cols[:, None, :]  # n x H x W
            occluded = torch.where(mask[:, None], float(self.params["baseline"]), inputs[idx])
            drop = base[idx] - target_scores(model(occluded), targets[idx])
            total.index_add_(0, idx, drop.to(total.dtype)[:, None, None] * mask)
        in_rows = (rows >= y0[:, None]) & (rows < y0[:, None] + win)
        in_cols = (cols >= x0[:, None]) & (cols < x0[:, None] + win)
        counts = (in_rows[:, :, None] & in_cols[:, None, :]).sum(0)  # every pixel >= 1
        return total / counts


@register_method
class RISE(AttributionMethod):
    """Petsiuk et al. 2018: map = sum_i score(x * M_i) M_i / (n_masks * p). Each mask M_i is a
    random binary grid of cells of ``cell`` input pixels (each cell kept with probability
    ``p``), one cell larger than the input, upsampled bilinearly and cropped at a random offset
    in [0, cell) so masks are smooth and shifted. The score is the target's softmax probability
    (``softmax=True``, as in the paper) or its logit.

    Masks are drawn from a CPU generator seeded with the image's seed (so they do not depend on
    the device, the batch, or ``internal_batch_size``) as small grids and offsets; only those
    move to the device, where masks are upsampled chunk by chunk."""

    name = "rise"
    family = "perturbation"
    stochastic = True
    defaults = {"n_masks": 1000, "cell": 32, "p": 0.5, "softmax": True, "internal_batch_size": 64}

    def validate(self) -> None:
        self.require("n_masks", self.params["n_masks"] >= 1, "an integer >= 1")
        self.require("cell", self.params["cell"] >= 1, "an integer >= 1")
        self.require("p", 0 < self.params["p"] <= 1, "in (0, 1]")

    description = "RISE (Petsiuk et al., BMVC 2018): score-weighted random masks; seeded per image"

    @torch.no_grad()
    def attribute(self, model, inputs, targets, *, seeds=None):
        n, cell, p = int(self.params["n_masks"]), int(self.params["cell"]), float(self.params["p"])
        if n < 1 or cell < 1 or not 0.0 < p <= 1.0:
            raise MethodConfigError("rise: need n_masks >= 1, cell >= 1 and 0 < p <= 1")
        b, _, h, w = inputs.shape
        gh, gw = -(-h // cell) + 1, -(-w // cell) + 1
        grids, offsets = [], []
        for s in image_seeds(seeds, b):
            gen = torch.Generator(device="cpu").manual_seed(s)
            grids.append((torch.rand((n, gh, gw), generator=gen) < p).float())
            offsets.append(torch.randint(0, cell, (n, 2), generator=gen))
        grid = torch.cat(grids).to(inputs.device, inputs.dtype)[:, None]  # (b*n) x 1 x gh x gw
        offset = torch.cat(offsets).to(inputs.device)
        image = torch.arange(b, device=inputs.device).repeat_interleave(n)
        ys = torch.arange(h, device=inputs.device)
        xs = torch.arange(w, device=inputs.device)
        total = torch.zeros((b, h, w), device=inputs.device, dtype=inputs.dtype)
        for sl in chunks(b * n, self.params["internal_batch_size"]):
            up = F.interpolate(grid[sl], size=(gh * cell, gw * cell), mode="bilinear", align_corners=False)[:, 0]
            rows = offset[sl, 0, None] + ys  # m x H: the crop's row indices
            cols = offset[sl, 1, None] + xs
            m = torch.arange(up.shape[0], device=inputs.device)[:, None, None]
            masks = up[m, rows[:, :, None], cols[:, None, :]]  # m x H x W
            idx = image[sl]
            out = model(inputs[idx] * masks[:, None])
            if self.params["softmax"]:
                out = out.softmax(dim=1)
            score = target_scores(out, targets[idx])
            total.index_add_(0, idx, score.to(total.dtype)[:, None, None] * masks)
        return total / (n * p)
