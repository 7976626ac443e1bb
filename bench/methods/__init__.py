"""Attribution methods: one registry (``METHODS``), one call signature, plug-ins through the
entry-point group ``groundbench.methods``, and adapters for Captum (``captum:NAME``) and
pytorch-grad-cam (``pytorch_grad_cam:NAME``) resolved by prefix.

Families (one module each): cam (CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM, Score-CAM,
Eigen-CAM), gradient (vanilla gradient, gradient x input, SmoothGrad, Integrated Gradients),
perturbation (occlusion, RISE), transformer (attention rollout, gradient-weighted rollout) and
baseline (center prior, uniform, random); and the erasing cascade (``erase``), a wrapper
around any of them (erasing).
"""

from bench.methods import adapters, baselines, cam, erasing, gradient, perturbation, transformer  # noqa: F401
from bench.methods.base import (
    METHODS,
    AttributionMethod,
    CAMMethod,
    MethodConfigError,
    create_method,
    register_method,
)

__all__ = [
    "METHODS",
    "AttributionMethod",
    "CAMMethod",
    "MethodConfigError",
    "create_method",
    "register_method",
]
