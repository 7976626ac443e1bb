"""Other libraries' methods as groundbench methods, resolved by name prefix in ``METHODS``:

- ``captum:NAME``: any Captum attribution class (``captum.attr.NAME``: input attributions such
  as ``IntegratedGradients``, ``Occlusion``, ``Lime``; layer attributions such as
  ``LayerGradCam`` with ``layer``). Parameters are the keyword arguments of its ``attribute``
  (and simple ones of its constructor), with Captum's defaults; lists become tuples (TOML has no
  tuples). Input attributions BxCxHxW are reduced over channels by ``reduce``.
- ``pytorch_grad_cam:NAME``: any pytorch-grad-cam CAM class (``GradCAM``, ``ScoreCAM``, ...).
  That library returns maps min-max scaled per image and resized to the input with OpenCV, and
  it copies activations to the CPU: use these adapters to compare with it, not on the hot path.

Both libraries are optional: naming an adapter without its package installed (or, for
pytorch-grad-cam, importable: it imports torchvision, OpenCV, ttach and scikit-learn) raises a
clear error.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch

from bench.methods.base import (
    FAMILIES,
    METHODS,
    REDUCTIONS,
    AttributionMethod,
    MethodConfigError,
    image_seeds,
    reduce_channels,
    resolve_layer,
)
from bench.registry import UnknownNameError

# -- Captum ------------------------------------------------------------------------------------

# attribute() arguments the adapter itself supplies or that cannot come from a config file.
_CAPTUM_FIXED = {
    "self", "inputs", "target", "additional_forward_args", "return_convergence_delta",
    "show_progress", "feature_mask", "custom_attribution_func", "grad_kwargs", "verbose",
}
_CAPTUM_NOT_METHODS = {
    "Attribution", "GradientAttribution", "PerturbationAttribution", "LayerAttribution",
    "NeuronAttribution", "LimeBase", "NoiseTunnel", "DataLoaderAttribution",
}
# Classes that draw random numbers from torch's global RNG: run per image under a forked,
# seeded RNG so maps are reproducible and batch-invariant without touching global state.
_CAPTUM_STOCHASTIC = {
    "Lime", "KernelShap", "ShapleyValueSampling", "FeaturePermutation", "GradientShap",
    "LayerGradientShap", "LayerFeaturePermutation",
}
_SIMPLE = (bool, int, float, str, tuple, type(None))


def _captum_names(attr_mod) -> list[str]:
    base = attr_mod.Attribution
    return sorted(
        n for n in dir(attr_mod)
        if isinstance(getattr(attr_mod, n), type)
        and issubclass(getattr(attr_mod, n), base)
        and n not in _CAPTUM_NOT_METHODS
        and not issubclass(getattr(attr_mod, n), attr_mod.NeuronAttribution)
        and not n.startswith("LLM") and not n.startswith("Remote")
    )


def _simple_params(sig: inspect.Signature, skip: set[str]) -> dict[str, Any]:
    out = {}
    for p in sig.parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        if isinstance(default, _SIMPLE):
            out[p.name] = default
    return out


def captum_method(class_name: str) -> type[AttributionMethod]:
    try:
        import captum
        import captum.attr as attr_mod
    except ImportError as exc:
        raise UnknownNameError(
            f"method 'captum:{class_name}' needs Captum (pip install 'groundbench[captum]' or "
            f"pip install captum): {exc}"
        ) from exc
    names = _captum_names(attr_mod)
    if class_name not in names:
        close = difflib.get_close_matches(class_name, names, n=3)
        hint = f"; did you mean {' or '.join(repr('captum:' + c) for c in close)}?" if close else ""
        raise UnknownNameError(f"Captum has no attribution class {class_name!r}{hint}")
    cls = getattr(attr_mod, class_name)
    init_sig = inspect.signature(cls.__init__)
    attr_sig = inspect.signature(cls.attribute)
    init_skip = {"self", "forward_func", "model", "layer", "device_ids", "attribution_method"}
    init_params = _simple_params(init_sig, init_skip)
    call_params = _simple_params(attr_sig, _CAPTUM_FIXED)
    required = [
        p.name for p in attr_sig.parameters.values()
        if p.name in call_params and p.default is inspect.Parameter.empty
    ]
    is_layer = "layer" in init_sig.parameters
    if is_layer and "GradCam" in class_name:
        family = "cam"
    elif issubclass(cls, attr_mod.PerturbationAttribution):
        family = "perturbation"
    else:
        family = "gradient"
    assert family in FAMILIES
    defaults: dict[str, Any] = {}
    if is_layer:
        defaults["layer"] = None
    defaults.update(init_params)
    defaults.update(call_params)
    defaults["reduce"] = "sum" if is_layer else "abs_sum"
    if "feature_mask" in attr_sig.parameters:
        defaults["feature_grid"] = 0

    class CaptumMethod(AttributionMethod):
        name = f"captum:{class_name}"
        needs_grad = family != "perturbation"
        stochastic = class_name in _CAPTUM_STOCHASTIC
        choices = {"reduce": REDUCTIONS}
        execution_params = frozenset({"internal_batch_size", "perturbations_per_eval", "nt_samples_batch_size"})
        description = (
            f"Captum {class_name} (captum {captum.__version__}); 4-D outputs reduced over "
            "channels by 'reduce'" + ("; 'feature_grid' = side of square feature cells" if "feature_grid" in defaults else "")
        )

        def attribute(self, model, inputs, targets, *, seeds=None):
            p = self.params
            missing = [r for r in required if p.get(r) is None]
            if missing:
                raise MethodConfigError(f"method {self.name!r} needs parameter(s) {', '.join(missing)}")
            ctor = {k: p[k] for k in init_params}
            if is_layer:
                if not p.get("layer"):
                    raise MethodConfigError(f"method {self.name!r} needs a target layer (param 'layer')")
                module, act = resolve_layer(model, p["layer"])
                if act is not None:
                    raise MethodConfigError(
                        f"method {self.name!r}: Captum hooks modules directly; layer spec "
                        f"{p['layer']!r} with an activation suffix is not supported"
                    )
                explainer = cls(model, module, **ctor)
            else:
                explainer = cls(model, **ctor)
            kwargs = {k: _tuples(p[k]) for k in call_params if p[k] is not None}
            if p.get("feature_grid"):
                kwargs["feature_mask"] = _grid_mask(inputs, int(p["feature_grid"]))
            if self.stochastic:
                out = torch.cat([
                    _seeded(seed, inputs.device, lambda i=i: explainer.attribute(
                        inputs[i:i + 1], target=targets[i:i + 1], **kwargs))
                    for i, seed in enumerate(image_seeds(seeds, inputs.shape[0]))
                ])
            else:
                out = explainer.attribute(inputs, target=targets, **kwargs)
            if isinstance(out, tuple):
                out = out[0]
            out = out.detach()
            return reduce_channels(out, p["reduce"]) if out.ndim == 4 else out

    CaptumMethod.defaults = defaults
    CaptumMethod.family = family
    CaptumMethod.__name__ = CaptumMethod.__qualname__ = f"Captum_{class_name}"
    return CaptumMethod


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _grid_mask(inputs: torch.Tensor, cell: int) -> torch.Tensor:
    """Feature ids of square cells (shared by all channels), 1x1xHxW, for Captum's
    ``feature_mask``: perturbation methods then perturb cells, not single pixel values."""
    _, _, h, w = inputs.shape
    rows = torch.arange(h, device=inputs.device) // cell
    cols = torch.arange(w, device=inputs.device) // cell
    return (rows[:, None] * (-(-w // cell)) + cols[None, :])[None, None]


def _seeded(seed: int, device: torch.device, fn):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fn()


# -- pytorch-grad-cam ----------------------------------------------------------------------------


def pytorch_grad_cam_method(class_name: str) -> type[AttributionMethod]:
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.base_cam import BaseCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as exc:
        raise UnknownNameError(
            f"method 'pytorch_grad_cam:{class_name}' needs the grad-cam package importable "
            f"(pip install grad-cam; it imports torchvision, opencv, ttach and scikit-learn): {exc}"
        ) from exc
    names = sorted(
        n for n in dir(pgc)
        if isinstance(getattr(pgc, n), type) and issubclass(getattr(pgc, n), BaseCAM) and n != "BaseCAM"
    )
    if class_name not in names:
        close = difflib.get_close_matches(class_name, names, n=3)
        hint = f"; did you mean {' or '.join(repr('pytorch_grad_cam:' + c) for c in close)}?" if close else ""
        raise UnknownNameError(f"pytorch-grad-cam has no CAM class {class_name!r}{hint}")
    cls = getattr(pgc, class_name)

    class PytorchGradCAMMethod(AttributionMethod):
        name = f"pytorch_grad_cam:{class_name}"
        family = "cam"
        needs_grad = True
        defaults = {"layer": None, "aug_smooth": False, "eigen_smooth": False, "batch_size": 16}
        execution_params = frozenset({"batch_size"})
        description = (
            f"pytorch-grad-cam {class_name} (adapter): maps min-max scaled per image at input "
            "resolution by that library, which works on CPU copies"
        )

        def attribute(self, model, inputs, targets, *, seeds=None):
            p = self.params
            if not p.get("layer"):
                raise MethodConfigError(f"method {self.name!r} needs a target layer (param 'layer')")
            module, act = resolve_layer(model, p["layer"])
            # An activation suffix ("_bn1:relu6") becomes a hook that runs before the library's
            # own hooks on that module (hooks run in registration order), so it sees act(out).
            # Its gradients are then taken before the model's own activation, which zeroes them
            # where the activation is flat; groundbench's own CAM methods avoid that (see
            # bench.methods.base.capture_layer), so with a suffix the two can differ.
            handle = module.register_forward_hook(lambda _m, _i, out: act(out)) if act else None
            try:
                with cls(model=model, target_layers=[module]) as cam:
                    cam.batch_size = int(p["batch_size"])
                    # The library takes Python ints for targets; it copies to the CPU anyway.
                    wanted = [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
                    maps = cam(input_tensor=inputs, targets=wanted,
                               aug_smooth=p["aug_smooth"], eigen_smooth=p["eigen_smooth"])
            finally:
                if handle is not None:
                    handle.remove()
                model.zero_grad(set_to_none=True)  # the library leaves parameter gradients
            return torch.as_tensor(maps).to(inputs.device)

    PytorchGradCAMMethod.__name__ = PytorchGradCAMMethod.__qualname__ = f"PytorchGradCAM_{class_name}"
    return PytorchGradCAMMethod


METHODS.add_prefix("captum", captum_method, "any Captum attribution class, e.g. captum:IntegratedGradients (needs captum)")
METHODS.add_prefix(
    "pytorch_grad_cam", pytorch_grad_cam_method,
    "any pytorch-grad-cam CAM class, e.g. pytorch_grad_cam:GradCAM (needs grad-cam and its imports)",
)
