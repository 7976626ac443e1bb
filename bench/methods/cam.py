"""CAM family: each method only says how it weighs or combines the target layer's channels.

Notation: A (BxCxhxw) is the target layer's output, g = d score / d A its gradient, where the
score is the target's logit. Every map is at the layer's resolution and rectified (ReLU) unless
``relu=False``. On a Vision Transformer the layer's tokens (B x T x C) become A on the patch grid
first, prefix tokens dropped (:class:`bench.methods.base.CAMMethod`, :mod:`bench.methods.tokens`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import CAMMethod, MethodConfigError, chunks, register_method


@register_method
class CAM(CAMMethod):
    """Zhou et al. 2016, for a global-average-pool + linear head: map = sum_c W[target, c] A_c,
    with W the weight matrix of the final linear layer (no bias, no 1/(h*w)). On such a model
    Grad-CAM equals this map divided by h*w (Selvaraju et al. 2017, sec. 3.1), which a test pins.

    ``fc`` names the linear layer; when unset, the model's last ``nn.Linear`` in module order.
    The layer's input features must be the target layer's channels (the head must be GAP +
    linear for the map to mean anything)."""

    name = "cam"
    needs_grad = False
    defaults = {"fc": None}
    description = "CAM (Zhou et al., CVPR 2016): final linear weights x activations; GAP+linear heads"

    def check_model(self, model, input_shape) -> None:
        super().check_model(model, input_shape)
        _linear_layer(model, self.params.get("fc"))

    def combine(self, model, inputs, targets, acts, grads, logits):
        fc = _linear_layer(model, self.params.get("fc"))
        if fc.in_features != acts.shape[1]:
            raise MethodConfigError(
                f"cam: linear layer has {fc.in_features} input features but layer "
                f"{self.params['layer']!r} has {acts.shape[1]} channels; CAM needs a "
                "global-average-pool + linear head on that layer"
            )
        weights = fc.weight.detach()[targets].to(acts.dtype)  # B x C
        return torch.einsum("bc,bchw->bhw", weights, acts)


def _linear_layer(model: nn.Module, name: str | None) -> nn.Linear:
    if name:
        try:
            layer = model.get_submodule(name)
        except AttributeError as exc:
            raise MethodConfigError(f"cam: model has no layer {name!r} (param 'fc')") from exc
        if not isinstance(layer, nn.Linear):
            raise MethodConfigError(f"cam: layer {name!r} is {type(layer).__name__}, not nn.Linear")
        return layer
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MethodConfigError("cam: model has no nn.Linear layer; name the head with 'fc'")
    return linears[-1]


@register_method
class GradCAM(CAMMethod):
    """Selvaraju et al. 2017: channel weights are the spatial mean of the target score's
    gradient; map = ReLU(sum_c w_c A_c)."""

    name = "gradcam"
    description = "Grad-CAM (Selvaraju et al., ICCV 2017): spatial-mean gradients weigh channels"

    def combine(self, model, inputs, targets, acts, grads, logits):
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(dim=1)


@register_method
class GradCAMPlusPlus(CAMMethod):
    """Chattopadhay et al. 2018, eq. 19 with the exponential-score closed form:
    alpha = g^2 / (2 g^2 + sum_xy(A) g^3 + eps) where g != 0 (else 0), w_c = sum_xy alpha
    ReLU(g), map = ReLU(sum_c w_c A_c). ``eps`` = 1e-6 as pytorch-grad-cam adds it, so maps agree
    with that implementation; ``eps=0`` is the paper's exact form (well defined: wherever
    ReLU(g) > 0 the denominator is positive for non-negative activations)."""

    name = "gradcampp"
    defaults = {"eps": 1e-6}
    description = "Grad-CAM++ (Chattopadhay et al., WACV 2018): pixel-weighted positive gradients"

    def combine(self, model, inputs, targets, acts, grads, logits):
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_a = acts.sum(dim=(2, 3), keepdim=True)
        denom = 2 * g2 + sum_a * g3 + float(self.params["eps"])
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        alpha = torch.where(grads != 0, g2 / safe, torch.zeros_like(grads))
        weights = (alpha * torch.relu(grads)).sum(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(dim=1)


@register_method
class XGradCAM(CAMMethod):
    """Fu et al. 2020: w_c = sum_xy g A / (sum_xy A + eps); map = ReLU(sum_c w_c A_c). The eps
    (1e-7, as pytorch-grad-cam) only matters for an all-zero channel, whose weight is then 0."""

    name = "xgradcam"
    description = "XGrad-CAM (Fu et al., BMVC 2020): activation-normalised gradient weights"

    def combine(self, model, inputs, targets, acts, grads, logits):
        sum_a = acts.sum(dim=(2, 3), keepdim=True)
        weights = (grads * acts).sum(dim=(2, 3), keepdim=True) / (sum_a + 1e-7)
        return (weights * acts).sum(dim=1)


@register_method
class LayerCAM(CAMMethod):
    """Jiang et al. 2021: each position weighs itself, map = ReLU(sum_c ReLU(g) A)."""

    name = "layercam"
    description = "Layer-CAM (Jiang et al., TIP 2021): positive gradients weigh each position"

    def combine(self, model, inputs, targets, acts, grads, logits):
        return (torch.relu(grads) * acts).sum(dim=1)


@register_method
class ScoreCAM(CAMMethod):
    """Wang et al. 2020: each channel, upsampled to the input (bilinear, corners aligned, as
    pytorch-grad-cam) and min-max scaled to [0, 1], masks the input; the masked input's score
    weighs the channel. map = ReLU(sum_c w_c A_c) at the layer's resolution.

    ``weighting``:
    - ``"softmax"`` (default, pytorch-grad-cam): w = softmax over channels of the masked inputs'
      target logits;
    - ``"probability"`` (the authors' code): w_c = softmax over classes of the masked input,
      at the target; channels that are constant get weight 0.

    Masked inputs for all images and channels are batched together, ``internal_batch_size`` at a
    time (one model input per image and channel: C forward passes per image, 1280 on
    EfficientNet-Lite0's head)."""

    name = "scorecam"
    needs_grad = False
    defaults = {"weighting": "softmax", "internal_batch_size": 64}
    choices = {"weighting": ("softmax", "probability")}
    description = "Score-CAM (Wang et al., CVPRW 2020): channels weighed by the score of the masked input"

    @torch.no_grad()
    def combine(self, model, inputs, targets, acts, grads, logits):
        b, c, h, w = acts.shape
        size = inputs.shape[-2:]
        flat = acts.reshape(b * c, 1, h, w)
        image = torch.arange(b, device=acts.device).repeat_interleave(c)
        scores = torch.empty(b * c, device=acts.device, dtype=logits.dtype)
        constant = torch.empty(b * c, device=acts.device, dtype=torch.bool)
        for sl in chunks(b * c, self.params["internal_batch_size"]):
            up = F.interpolate(flat[sl], size=size, mode="bilinear", align_corners=True)
            lo = up.amin(dim=(2, 3), keepdim=True)
            hi = up.amax(dim=(2, 3), keepdim=True)
            masks = (up - lo) / (hi - lo + 1e-8)
            constant[sl] = (hi == lo).flatten()
            out = model(inputs[image[sl]] * masks)
            if self.params["weighting"] == "probability":
                out = out.softmax(dim=1)
            scores[sl] = out.gather(1, targets[image[sl]][:, None]).squeeze(1)
        scores = scores.reshape(b, c)
        if self.params["weighting"] == "softmax":
            weights = scores.softmax(dim=1)
        else:
            weights = torch.where(constant.reshape(b, c), torch.zeros_like(scores), scores)
        return torch.einsum("bc,bchw->bhw", weights.to(acts.dtype), acts)


@register_method
class EigenCAM(CAMMethod):
    """Muhammad & Yeasin 2020: the projection of the (spatially centred) activations on their
    first principal component. Class-agnostic: the target is ignored. The SVD's sign is
    arbitrary; we fix it so the map correlates positively with the channel-summed centred
    activations (equivalently, the principal direction has a non-negative component sum).
    On CUDA, ``torch.linalg.svd`` checks convergence on the host: one sync per batch."""

    name = "eigencam"
    needs_grad = False
    description = "Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): first principal component; class-agnostic"

    def combine(self, model, inputs, targets, acts, grads, logits):
        b, c, h, w = acts.shape
        x = acts.reshape(b, c, h * w).transpose(1, 2).float()  # B x hw x C
        x = x - x.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        v = vh[:, 0, :]  # B x C
        sign = torch.where(v.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
        proj = torch.einsum("bnc,bc->bn", x, v * sign)
        return proj.reshape(b, h, w).to(acts.dtype)
