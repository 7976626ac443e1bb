"""Other libraries' methods as groundbench methods, resolved by name prefix in ``METHODS``:

- ``captum:NAME``: any Captum attribution class (``captum.attr.NAME``: input attributions such
  as ``IntegratedGradients``, ``Occlusion``, ``Lime``; layer attributions such as
  ``LayerGradCam`` with ``layer``). Parameters are the keyword arguments of its ``attribute``
  (and simple ones of its constructor), with Captum's defaults; lists become tuples (TOML has no
  tuples). How Captum's output becomes a map, in this order (:func:`captum_to_map`):

  1. channels: a 4-D output B x C x h x w is reduced over C by ``reduce`` (``abs_sum``, the
     default for input attributions: |a| summed over RGB; ``sum``, the default for layer
     attributions: LayerGradCam's single channel as it is; also ``abs_max``, ``l2``);
  2. sign: ``sign = "keep"`` (default: Captum's values, signed; LayerGradCam has no ReLU unless
     its own ``relu_attributions = true``), ``"relu"`` (the positive part) or ``"abs"``;
  3. size: the engine resizes the map to the image bilinearly, like every method's.

- ``pytorch_grad_cam:NAME``: any pytorch-grad-cam CAM class (``GradCAM``, ``ScoreCAM``, ...).
  That library returns maps min-max scaled per image and resized to the input with OpenCV, and
  it copies activations to the CPU: use these adapters to compare with it, not on the hot path.
  **AblationCAM's sign** (grad-cam 1.5.7, and its subclasses): the library weighs channel k by
  ``(y - y_k) / y``, the drop in the target's score y when k is ablated divided by y, so where y
  is negative every weight flips sign and the map (after its ReLU) shows the channels whose
  ablation *raises* the score. The adapter divides by ``|y|`` instead (``fix_score_sign = true``,
  the default; the map is unchanged where y > 0); ``fix_score_sign = false`` gives the
  library's own map, labelled as such in the rows.

**Progress bars.** pytorch-grad-cam 1.5.7 draws a tqdm bar per image in ScoreCAM and the
AblationCAM family and has no option to turn it off; inside ``library_progress(False)`` (the
engine's ``progress=False``, the CLI's ``--no-progress`` / ``--quiet``) the adapter runs the
library with those bars disabled. Captum's bars (``show_progress``) are never turned on.

Both libraries are optional: naming an adapter without its package installed (or, for
pytorch-grad-cam, importable: it imports torchvision, OpenCV, ttach and scikit-learn) raises a
clear error. :data:`ADAPTER_PACKAGES` names each family's package (``groundbench methods``
says whether it imports here).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

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
SIGNS = ("keep", "relu", "abs")

# Whether the libraries behind the adapters may draw their own progress bars: set for a block
# by library_progress (a context variable, so nothing outlives the block that set it).
_LIBRARY_BARS: ContextVar[bool] = ContextVar("groundbench_library_progress", default=True)


@contextmanager
def library_progress(enabled: bool) -> Iterator[None]:
    """Inside this block the adapters let their library draw its progress bars only if
    ``enabled`` (pytorch-grad-cam's ScoreCAM / AblationCAM bar per image). The setting is a
    context variable: restored when the block ends, and not seen by other threads."""
    token = _LIBRARY_BARS.set(bool(enabled))
    try:
        yield
    finally:
        _LIBRARY_BARS.reset(token)


def library_bars_enabled() -> bool:
    """The setting of the innermost :func:`library_progress` block (True outside any)."""
    return _LIBRARY_BARS.get()


# Prefix -> (import name, distribution, pip line) of the package an adapter family needs.
ADAPTER_PACKAGES = {
    "captum": ("captum", "captum", "pip install 'groundbench[captum]'"),
    "pytorch_grad_cam": ("pytorch_grad_cam", "grad-cam", "pip install 'groundbench[gradcam]'"),
}


def captum_to_map(out: torch.Tensor, reduce: str, sign: str) -> torch.Tensor:
    """Captum's output -> B x h x w map: reduce a 4-D output over channels by ``reduce``
    (:func:`bench.methods.base.reduce_channels`), then apply ``sign`` (keep, relu, abs)."""
    m = reduce_channels(out, reduce) if out.ndim == 4 else out
    if sign == "relu":
        return m.clamp_min(0)
    if sign == "abs":
        return m.abs()
    if sign != "keep":
        raise MethodConfigError(f"unknown sign rule {sign!r} (use one of {SIGNS})")
    return m


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
    defaults["sign"] = "keep"
    if "feature_mask" in attr_sig.parameters:
        defaults["feature_grid"] = 0

    class CaptumMethod(AttributionMethod):
        name = f"captum:{class_name}"
        needs_grad = family != "perturbation"
        stochastic = class_name in _CAPTUM_STOCHASTIC
        choices = {"reduce": REDUCTIONS, "sign": SIGNS}
        execution_params = frozenset({"internal_batch_size", "perturbations_per_eval", "nt_samples_batch_size"})
        description = (
            f"Captum {class_name} (captum {captum.__version__}); map: channels reduced by "
            f"'reduce' ({defaults['reduce']}), then 'sign' (keep | relu | abs)" + ("; 'feature_grid' = side of square feature cells" if "feature_grid" in defaults else "")
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
            return captum_to_map(out.detach(), p["reduce"], p["sign"])

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
    divides_by_score = issubclass(cls, pgc.AblationCAM)
    fixed = _score_sign_fixed(cls) if divides_by_score else cls

    class PytorchGradCAMMethod(AttributionMethod):
        name = f"pytorch_grad_cam:{class_name}"
        family = "cam"
        needs_grad = True
        defaults = {"layer": None, "aug_smooth": False, "eigen_smooth": False, "batch_size": 16}
        execution_params = frozenset({"batch_size"})
        description = (
            f"pytorch-grad-cam {class_name} (adapter): maps min-max scaled per image at input "
            "resolution by that library, which works on CPU copies"
            + ("; weights divided by |target score|, not the score (fix_score_sign)" if divides_by_score else "")
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
            use = fixed if p.get("fix_score_sign", False) else cls
            try:
                with _tqdm_silenced(use, not library_bars_enabled()), use(model=model, target_layers=[module]) as cam:
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

    if divides_by_score:
        PytorchGradCAMMethod.defaults = {**PytorchGradCAMMethod.defaults, "fix_score_sign": True}
    PytorchGradCAMMethod.__name__ = PytorchGradCAMMethod.__qualname__ = f"PytorchGradCAM_{class_name}"
    return PytorchGradCAMMethod


@contextmanager
def _tqdm_silenced(cls: type, silence: bool) -> Iterator[None]:
    """With ``silence``, for the block, every module defining a class of ``cls``'s hierarchy
    that calls tqdm through a module-level name (pytorch-grad-cam 1.5.7: ``import tqdm`` then
    ``tqdm.tqdm(...)`` in score_cam, ablation_cam, ablation_cam_multilayer; or ``from tqdm
    import tqdm``) sees a tqdm with ``disable=True``; the names are put back when the block
    ends. Such a library offers no option for its bars, and patching only the modules the
    method's own classes live in leaves every other tqdm (groundbench's bars) as it was."""
    if not silence:
        yield
        return
    import tqdm as tqdm_package

    quiet_bar = functools.partial(tqdm_package.tqdm, disable=True)
    quiet_package = _QuietTqdm(tqdm_package, quiet_bar)
    swapped: list[tuple[Any, Any]] = []
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        current = getattr(module, "tqdm", None) if module is not None else None
        if current is tqdm_package:
            replacement = quiet_package
        elif isinstance(current, type) and issubclass(current, tqdm_package.tqdm):
            replacement = functools.partial(current, disable=True)
        else:
            continue
        swapped.append((module, current))
        module.tqdm = replacement
    try:
        yield
    finally:
        for module, original in reversed(swapped):
            module.tqdm = original


class _QuietTqdm:
    """The tqdm package as a module that did ``import tqdm`` sees it, with ``tqdm.tqdm``
    (and ``tqdm.trange``) drawing no bar; every other name is the package's own."""

    def __init__(self, package: Any, quiet_bar: Any):
        self._package = package
        self.tqdm = quiet_bar
        self.trange = lambda *args, **kwargs: quiet_bar(range(*args), **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._package, name)


def _score_sign_fixed(cls):
    """``cls`` (AblationCAM or a subclass) with channel weights ``(y - y_k) / |y|``: the library
    computes ``(y - y_k) / y``, whose sign flips with the target score y. The library's weights
    are multiplied by sign(y), with y the target's score on the forward pass the library has
    just made (``self.outputs``)."""
    import numpy as np

    class ScoreSignFixed(cls):
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            weights = super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
            with torch.no_grad():
                scores = np.float32([float(t(o)) for t, o in zip(targets, self.outputs)])
            return weights * np.sign(scores)[:, None]

    ScoreSignFixed.__name__ = ScoreSignFixed.__qualname__ = f"{cls.__name__}ScoreSignFixed"
    return ScoreSignFixed


METHODS.add_prefix("captum", captum_method, "any Captum attribution class, e.g. captum:IntegratedGradients (needs captum)")
METHODS.add_prefix(
    "pytorch_grad_cam", pytorch_grad_cam_method,
    "any pytorch-grad-cam CAM class, e.g. pytorch_grad_cam:GradCAM (needs grad-cam and its imports)",
)
