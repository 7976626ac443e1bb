"""``torchvision:NAME`` and ``timm:NAME``: models from those libraries' zoos, when installed.

Neither library is a dependency of groundbench (torchvision's wheels pin one torch version each;
timm needs torchvision). If the package is not importable the spec fails with the pip line to
run. Pretrained weights come from the libraries' own caches and downloads; offline, a model
whose weights are not cached stops at once with one message naming the model and the ways that
work offline (:mod:`bench.models.zoo_weights`).

Both adapters give the module in eval mode, a whole-image preprocessing (resize to the model's
input size, no crop; mean/std from the weights' own metadata), a default target layer found by
:func:`bench.models.probe.probe_module` (the last spatial feature map before the head), and, for
1000-output models, the ImageNet-1k -> ``class_map`` map (default ``"coco"``); other models get
no class map unless one is given (only ``"<top-1>"`` resolves).

Vision Transformers (a ``patch_embed`` and ``blocks`` of pre-norm blocks, as timm's ViT, DeiT,
BEiT, EVA ...): the default CAM layer is the last block's ``norm1``, the deepest layer whose
patch tokens still reach the class token (after the last block only the class token reaches the
head, so the gradient on every patch token there is zero); CAM methods turn its tokens into the
patch grid (:mod:`bench.methods.tokens`). timm's fused attention needs nothing here: the
attention methods switch it off for their own forward passes (:mod:`bench.methods.transformer`).
"""

from __future__ import annotations

from torch import nn

from bench.models.base import MODEL_ADAPTERS, ModelBundle
from bench.models.bundle import AUTO, module_bundle
from bench.models.transforms import IMAGENET_MEAN, IMAGENET_STD, parse_size
from bench.models.weights import import_optional
from bench.models.zoo_weights import (
    WeightsUnavailableError,
    ensure_weights,
    offline_message,
    timm_source,
    torchvision_source,
)

# Errors a library raises when a download fails (urllib's URLError is an OSError; requests' and
# the Hub client's connection errors are too, or come from these modules).
_NETWORK_MODULES = ("urllib", "http", "socket", "requests", "huggingface_hub", "urllib3", "ssl")


def _is_network_error(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, (OSError, TimeoutError)) or type(exc).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _need_name(prefix: str, rest: str) -> str:
    if not rest:
        raise ValueError(f"model spec {prefix!r} needs a model name, e.g. {prefix}:resnet50")
    return rest


@MODEL_ADAPTERS.register("torchvision")
def load_torchvision(
    rest: str,
    *,
    seed: int = 0,
    weights: str | None = "DEFAULT",
    pretrained: bool = True,
    input_size: int | list[int] | None = None,
    target_layer: str | None = None,
    class_map: str | None = AUTO,
) -> ModelBundle:
    """``torchvision:NAME`` via ``torchvision.models.get_model(NAME, weights=weights)``.
    ``weights``: a weights enum name (``"IMAGENET1K_V2"``), ``"DEFAULT"``, or None (random
    init; also what ``pretrained=False`` means). ``input_size`` defaults to the weights'
    evaluation crop size (224 for most)."""
    name = _need_name("torchvision", rest)
    spec = f"torchvision:{name}"
    install = "pip install torchvision (the release built for your torch version)"
    torchvision = import_optional("torchvision", spec=spec, install=install)
    models = import_optional("torchvision.models", spec=spec, install=install)
    if not pretrained:
        weights = None
    w = None
    if weights is not None:
        try:
            enum = models.get_model_weights(name)
            member = str(weights).split(".")[-1]  # "ResNet50_Weights.IMAGENET1K_V2" or "IMAGENET1K_V2"
            w = enum.DEFAULT if member == "DEFAULT" else enum[member]
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{spec}: no weights {weights!r} ({exc})") from exc
        ensure_weights(torchvision_source(spec, w))
    try:
        module = models.get_model(name, weights=weights)
    except ValueError as exc:
        raise ValueError(f"{spec}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a download that fails after the host answered
        if w is not None and _is_network_error(exc):
            raise WeightsUnavailableError(
                offline_message(spec, f"download failed: {type(exc).__name__}: {exc}", str(torchvision_source(spec, w).cached))
            ) from None
        raise
    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, 224
    if w is not None:
        tf = w.transforms()
        mean = tuple(getattr(tf, "mean", mean))
        std = tuple(getattr(tf, "std", std))
        crop = getattr(tf, "crop_size", [size])
        size = crop[0] if isinstance(crop, (list, tuple)) else crop
    info = {"library": f"torchvision {getattr(torchvision, '__version__', '?')}", "weights": str(weights)}
    return module_bundle(
        spec, module,
        input_size=parse_size(input_size if input_size is not None else size),
        mean=mean, std=std, target_layer=target_layer, class_map=class_map, info=info,
        imagenet_default=weights is not None,
    )


def transformer_target_layer(module: nn.Module) -> str | None:
    """``blocks.<last>.norm1`` for a ViT-style model (``patch_embed`` and ``blocks`` whose last
    block has ``norm1``), else None."""
    blocks = getattr(module, "blocks", None)
    if getattr(module, "patch_embed", None) is None or not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not len(blocks):
        return None
    return f"blocks.{len(blocks) - 1}.norm1" if isinstance(getattr(blocks[-1], "norm1", None), nn.Module) else None


@MODEL_ADAPTERS.register("timm")
def load_timm(
    rest: str,
    *,
    seed: int = 0,
    pretrained: bool = True,
    num_classes: int | None = None,
    input_size: int | list[int] | None = None,
    target_layer: str | None = None,
    class_map: str | None = AUTO,
) -> ModelBundle:
    """``timm:NAME`` via ``timm.create_model(NAME, pretrained=pretrained)``; input size,
    mean and std from ``timm.data.resolve_data_config`` (the pretrained config).
    ``num_classes``: a head of that many outputs instead of the model's own (for weights of a
    fine-tuned model given with ``file:``)."""
    name = _need_name("timm", rest)
    spec = f"timm:{name}"
    timm = import_optional("timm", spec=spec, install="pip install timm (needs torchvision)")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    source = None
    if pretrained:
        source = _timm_weights(timm, name, spec)
        if source is not None:
            ensure_weights(source)
            if source.cached is not None and source.cached.is_file():
                # Read the cached file directly: the Hub client would first ask the network
                # for a newer revision (and retry for about a minute when offline).
                kwargs["pretrained_cfg_overlay"] = {"file": str(source.cached)}
    try:
        module = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        if pretrained and _is_network_error(exc):
            raise _timm_unavailable(spec, exc, source) from None
        raise ValueError(f"{spec}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a download that fails after the host answered
        if pretrained and _is_network_error(exc):
            raise _timm_unavailable(spec, exc, source) from None
        raise
    cfg = timm.data.resolve_data_config({}, model=module)
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    info = {"library": f"timm {getattr(timm, '__version__', '?')}", "pretrained": pretrained}
    vit_layer = transformer_target_layer(module) if target_layer is None else None
    bundle = module_bundle(
        spec, module,
        input_size=parse_size(input_size if input_size is not None else list(size)),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
        target_layer=target_layer if vit_layer is None else vit_layer, class_map=class_map, info=info,
        imagenet_default=pretrained,
    )
    if vit_layer is not None:
        bundle.info["target_layer_source"] = "auto: the last transformer block's norm1 (tokens on the patch grid)"
        bundle.info["num_prefix_tokens"] = int(getattr(module, "num_prefix_tokens", 1))
    return bundle


def _timm_weights(timm, name: str, spec: str):
    """Where timm would fetch ``name``'s pretrained weights (None: nothing to fetch or unknown)."""
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown tag or name: timm.create_model says it better
        return None
    return timm_source(spec, cfg) if cfg is not None else None


def _timm_unavailable(spec: str, exc: BaseException, source) -> WeightsUnavailableError:
    hint = source.cache_hint if source is not None else "the Hugging Face cache, HF_HOME"
    return WeightsUnavailableError(offline_message(spec, f"download failed: {type(exc).__name__}: {exc}", hint))
