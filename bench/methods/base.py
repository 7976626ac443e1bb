"""The one interface every attribution method shares, and the hook lifecycle of the CAM family.

A method is a callable ``(model, inputs BxCxHxW, targets B) -> maps Bxhxw`` (any resolution; the
engine resizes to the image). Inputs are the model's preprocessed batch; targets hold one class
index per image, and different images may have different targets. Maps stay on the inputs'
device: no method copies to the CPU.

Conventions every method keeps (tests pin them):

- The model is in eval mode, so images in a batch are independent: a batch gives the same maps
  as its images one by one, whatever their targets.
- The score of an image is its target's logit (the model output), unless a method's parameters
  say otherwise.
- A stochastic method draws its randomness from the image's own seed (``seeds[i]``), never from
  the position in the batch or from global RNG state; ``seeds=None`` means seed 0 for every
  image.
- Work that grows with a method's parameters (IG steps, SmoothGrad samples, Score-CAM channels,
  RISE masks, occlusion windows) runs in chunks of at most ``internal_batch_size`` model inputs,
  so no setting can exhaust memory by itself.
"""

from __future__ import annotations

import abc
import difflib
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.methods.tokens import find_token_grid, tokens_to_grid
from bench.registry import Registry, UnknownNameError, check_params

FAMILIES = ("cam", "gradient", "perturbation", "transformer", "baseline")


class MethodConfigError(ValueError):
    """A method was given a parameter it does not have, or of the wrong type."""


class AttributionMethod(abc.ABC):
    """Base class: subclasses set the metadata and implement :meth:`attribute`.

    ``defaults`` declares every parameter the method takes and its default; the parameters that
    define a run (layer, steps, samples, ...) are exactly these, so they go into the provenance
    and the leaderboard label. ``execution_params`` are the ones that change how the work is
    scheduled but not the maps (``internal_batch_size``): they are recorded in the provenance
    but left out of the label, so changing them does not split a leaderboard row. ``choices``
    lists the allowed values of string parameters. ``needs_grad``: the method runs a backward
    pass (the one gradient flag). ``stochastic``: it draws from each image's seed.

    A subclass states only the ``defaults`` and ``choices`` that differ from its parent's: they
    are merged with the parent's at class creation (the parent's keys first, in their order).
    Parameters are checked when the method is made (names, types and choices by
    :func:`bench.registry.check_params`, the one validator; each method's ranges in
    :meth:`validate`), and against a loaded model before a run scores anything
    (:meth:`check_model`: layer names, sizes that depend on the input), so a setting that would
    fail on every row never gets that far.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    needs_grad: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    execution_params: ClassVar[frozenset[str]] = frozenset({"internal_batch_size"})
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("defaults", "choices"):
            inherited = getattr(super(cls, cls), attr, {})
            cls_own = cls.__dict__.get(attr, {})
            setattr(cls, attr, {**inherited, **cls_own})

    def __init__(self, **params: Any):
        check_params(f"method {self.name!r}", params, self.defaults, choices=self.choices, error=MethodConfigError)
        self.user_params = dict(params)
        self.params = {**self.defaults, **params}
        if self.params.get("internal_batch_size") is not None:  # None: the library's own default
            self.require("internal_batch_size", self.params["internal_batch_size"] >= 1, ">= 1")
        self.validate()

    def validate(self) -> None:
        """Check parameter ranges (raise :class:`MethodConfigError`); called on construction.
        Subclasses whose parameters have ranges override it."""

    def require(self, key: str, ok: bool, rule: str) -> None:
        """Raise :class:`MethodConfigError` naming ``key``, its value and the ``rule`` it breaks
        unless ``ok``."""
        if not ok:
            raise MethodConfigError(f"method {self.name!r} parameter {key!r} must be {rule}, got {self.params[key]!r}")

    def check_model(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        """Check the parameters against the model they will run on, whose inputs have
        ``input_shape`` (C x H x W): a named ``layer`` must exist (with a did-you-mean).
        Raises :class:`MethodConfigError`. Subclasses add their own model-dependent checks."""
        layer = self.params.get("layer")
        if "layer" in self.defaults and isinstance(layer, str) and layer:
            try:
                resolve_layer(model, layer)
            except ValueError as exc:
                raise MethodConfigError(f"method {self.name!r} parameter 'layer': {exc}") from exc

    # -- identity -------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Name plus the parameters the user set, so two settings of one method are two rows."""
        shown = {k: v for k, v in self.user_params.items() if k not in self.execution_params}
        if not shown:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(shown.items()))
        return f"{self.name}[{inner}]"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "family": self.family,
            "needs_grad": self.needs_grad,
            "stochastic": self.stochastic,
            "params": dict(self.params),
        }

    def with_model_defaults(self, target_layer: str | None) -> "AttributionMethod":
        """Fill parameters the model adapter knows (the default target layer) if unset."""
        if "layer" in self.defaults and self.params.get("layer") is None and target_layer:
            bound = type(self)(**self.user_params)
            bound.params["layer"] = target_layer
            return bound
        return self

    # -- computation ----------------------------------------------------------------------
    @abc.abstractmethod
    def attribute(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        seeds: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Return maps Bxhxw for ``targets`` (long B). ``seeds`` gives one seed per image for
        stochastic methods, so a batch gives the same maps as the same images one by one."""

    def __call__(self, model, inputs, targets, *, seeds=None) -> torch.Tensor:
        if inputs.ndim != 4:
            raise ValueError(f"{self.name}: inputs must be BxCxHxW, got shape {tuple(inputs.shape)}")
        targets = torch.as_tensor(targets, device=inputs.device).long().reshape(-1)
        if targets.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"{self.name}: {inputs.shape[0]} images but {targets.shape[0]} targets; "
                "give exactly one target index per image"
            )
        if self.stochastic and seeds is not None and len(seeds) != inputs.shape[0]:
            raise ValueError(f"{self.name}: need one seed per image, got {len(seeds)}")
        return self.attribute(model, inputs, targets, seeds=seeds)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- registry ----------------------------------------------------------------------------------

PrefixResolver = Callable[[str], type[AttributionMethod]]


class MethodRegistry(Registry[type[AttributionMethod]]):
    """The method registry: names, plug-ins (entry-point group ``groundbench.methods``), and
    prefixed names that adapt another library's classes on demand (``captum:NAME``,
    ``pytorch_grad_cam:NAME``). A prefix resolver builds the method class the first time its
    name is asked for; it raises a clear error when the library is not installed."""

    def __init__(self) -> None:
        super().__init__("method", "groundbench.methods")
        self._prefixes: dict[str, tuple[PrefixResolver, str]] = {}
        self._adapted: dict[str, type[AttributionMethod]] = {}

    def add_prefix(self, prefix: str, resolver: PrefixResolver, description: str) -> None:
        if prefix in self._prefixes:
            raise ValueError(f"method prefix {prefix!r} is registered twice")
        self._prefixes[prefix] = (resolver, description)

    def prefixes(self) -> dict[str, str]:
        """Prefix -> one line saying what ``PREFIX:NAME`` adapts."""
        return {p: d for p, (_, d) in sorted(self._prefixes.items())}

    def get(self, name: str) -> type[AttributionMethod]:
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes and name not in self._items:
            if name not in self._adapted:
                if not rest:
                    raise UnknownNameError(f"method {name!r}: give a class name after {prefix!r}")
                self._adapted[name] = self._prefixes[prefix][0](rest)
            return self._adapted[name]
        cls = super().get(name)
        if not (isinstance(cls, type) and issubclass(cls, AttributionMethod)):
            raise TypeError(
                f"method {name!r} is {cls!r}, not an AttributionMethod subclass "
                f"(entry-point group {self.entry_point_group!r} must name such a class)"
            )
        if cls.family not in FAMILIES:
            raise TypeError(f"method {name!r} has family {cls.family!r}, not one of {FAMILIES}")
        return cls


METHODS = MethodRegistry()


def register_method(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: register under ``cls.name``."""
    if not cls.name or cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}: set name and a family from {FAMILIES}")
    if not cls.description:
        raise ValueError(f"{cls.__name__}: set a one-line description")
    METHODS.add(cls.name, cls)
    return cls


def create_method(name: str, **params: Any) -> AttributionMethod:
    return METHODS.get(name)(**params)


# -- shared helpers ----------------------------------------------------------------------------


def check_prefix_tokens(method: str, value: Any) -> None:
    """``prefix_tokens`` is None (the model's own count) or a whole number of tokens, 0 or more."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise MethodConfigError(f"method {method!r} parameter 'prefix_tokens' must be an integer >= 0, got {value!r}")


def image_seeds(seeds: Sequence[int] | None, batch: int) -> list[int]:
    """One seed per image; ``None`` gives every image seed 0, so an image's map never depends on
    where it sits in a batch."""
    return [0] * batch if seeds is None else [int(s) for s in seeds]


def chunks(total: int, size: int) -> Iterator[slice]:
    """Slices covering ``range(total)`` in pieces of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image score of its own target class (B). Images are independent in eval mode, so the
    gradient of the sum gives each image its own gradient."""
    if logits.ndim != 2:
        raise ValueError(f"model must return BxK logits, got shape {tuple(logits.shape)}")
    return logits.gather(1, targets[:, None]).squeeze(1)


REDUCTIONS = ("abs_max", "abs_sum", "sum", "l2")


def reduce_channels(attr: torch.Tensor, rule: str) -> torch.Tensor:
    """BxCxHxW attributions -> BxHxW map, one value per pixel:

    - ``abs_max``: max over channels of |a| (Simonyan et al. 2014's saliency map);
    - ``abs_sum``: sum over channels of |a|;
    - ``sum``: signed sum over channels (keeps IG's completeness: the map sums to the
      attribution total);
    - ``l2``: Euclidean norm over channels.
    """
    if rule == "abs_max":
        return attr.abs().amax(dim=1)
    if rule == "abs_sum":
        return attr.abs().sum(dim=1)
    if rule == "sum":
        return attr.sum(dim=1)
    if rule == "l2":
        return attr.pow(2).sum(dim=1).sqrt()
    raise MethodConfigError(f"unknown channel reduction {rule!r} (use one of {REDUCTIONS})")


# -- target layers and hooks -----------------------------------------------------------------

_IDEMPOTENT = {"relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0.0, 6.0)}
# Names of the torch functions (functional, tensor-method or in-place forms) that apply a
# clamping activation; the first of these the model applies to a hooked output is caught.
_ACTIVATION_OPS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "clamp_", "clip", "clip_",
    "clamp_min", "clamp_min_", "threshold", "threshold_",
})


def resolve_layer(model: nn.Module, spec: str) -> tuple[nn.Module, Any]:
    """``"features.18"`` names a submodule; ``"_bn1:relu6"`` names a submodule whose output the
    model passes through an idempotent activation (relu or relu6) that is not a module of its
    own: functional, or a module shared with other layers (EfficientNet-Lite's ``_swish``).
    See :func:`capture_layer` for how such a layer is captured."""
    name, _, act = spec.partition(":")
    try:
        module = model.get_submodule(name)
    except AttributeError as exc:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"model has no layer {name!r}{hint}") from exc
    if act and act not in _IDEMPOTENT:
        raise ValueError(f"layer activation {act!r} unsupported (use one of {sorted(_IDEMPOTENT)})")
    return module, _IDEMPOTENT.get(act)


class LayerCapture:
    """Holds the activation a forward hook saw; gradients are taken with autograd.grad."""

    def __init__(self) -> None:
        self.activation: torch.Tensor | None = None
        self.calls = 0
        self.handed: torch.Tensor | None = None  # the tensor the hook gave back to the model


class _CatchActivation(TorchFunctionMode):
    """Catches the first clamping activation the model applies to the hooked layer's output,
    so the captured tensor is that activation's own output."""

    def __init__(self, cap: LayerCapture):
        super().__init__()
        self.cap = cap
        self.done = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        cap = self.cap
        if (
            not self.done
            and cap.handed is not None
            and args
            and args[0] is cap.handed
            and getattr(func, "__name__", "") in _ACTIVATION_OPS
            and isinstance(out, torch.Tensor)
            and out.shape == cap.handed.shape
        ):
            self.done = True
            cap.activation = out
            return out.clone()
        return out


@contextmanager
def capture_layer(model: nn.Module, spec: str) -> Iterator[LayerCapture]:
    """Capture a layer's output during a forward pass; the hook is always removed.

    With an activation suffix (``"_bn1:relu6"``) the hook applies the activation itself (so the
    captured values never depend on what the model does next; relu6(relu6(x)) = relu6(x) keeps
    the model's output unchanged), and while the context is open the first relu/relu6/clamp
    the model then applies to that tensor is caught and its output becomes the captured
    activation. Gradients are therefore taken with respect to the activation's output, exactly
    as for a module of its own: were they taken at the hook, the model's second activation
    would zero them wherever the activation is flat (0, or 6 for relu6). If the model applies
    no such op, the hook's output is the capture.

    A module that runs more than once per forward (a shared activation module, such as
    EfficientNet-Lite's ``_swish`` used by stem and head) is refused: its captured output would
    silently be the last call's."""
    module, act = resolve_layer(model, spec)
    cap = LayerCapture()

    def hook(_mod, _inp, out):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"layer {spec!r} returns {type(out).__name__}, not a tensor")
        cap.calls += 1
        if cap.calls > 1:
            raise ValueError(
                f"layer {spec!r} runs more than once per forward pass (a shared module); "
                "name a module that runs once, e.g. the layer before the shared activation "
                "with an ':relu' or ':relu6' suffix"
            )
        if act is not None:
            out = act(out)
        cap.activation = out
        # A clone goes on so that an in-place op later in the model cannot modify what we keep.
        cap.handed = out.clone()
        return cap.handed

    handle = module.register_forward_hook(hook)
    try:
        if act is None:
            yield cap
        else:
            with _CatchActivation(cap):
                yield cap
    finally:
        handle.remove()
        cap.handed = None


class CAMMethod(AttributionMethod):
    """The CAM family's lifecycle in one place: hook the layer, run forward (and backward when
    the method needs gradients), hand activations and gradients to :meth:`combine`, rectify.

    Subclasses only say how channels are weighed or combined. Maps are at the target layer's
    resolution (the engine resizes them to the image).

    Transformer layers: a layer whose output is a token sequence B x T x C (a ViT block) is
    turned into B x C x h x w on the patch grid before :meth:`combine` sees it, activations and
    gradients alike, with the prefix tokens (class, distillation, registers) dropped (see
    :mod:`bench.methods.tokens`). ``reshape="auto"`` (default) does so when the model gives its
    grid (timm's ``patch_embed.grid_size``), ``reshape="tokens"`` also when it does not (grid
    from the input's aspect ratio); ``prefix_tokens`` overrides the model's own count.
    """

    family = "cam"
    needs_grad = True
    defaults: ClassVar[dict[str, Any]] = {"layer": None, "relu": True, "reshape": "auto", "prefix_tokens": None}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"reshape": ("auto", "tokens")}

    def validate(self) -> None:
        check_prefix_tokens(self.name, self.params.get("prefix_tokens"))

    def attribute(self, model, inputs, targets, *, seeds=None):
        layer = self.params.get("layer")
        if not layer:
            raise MethodConfigError(f"method {self.name!r} needs a target layer (param 'layer')")
        x = inputs.detach().requires_grad_(self.needs_grad)
        with capture_layer(model, layer) as cap, torch.set_grad_enabled(self.needs_grad):
            logits = model(x)
            acts = cap.activation
            if acts is None:
                raise RuntimeError(f"layer {layer!r} was not reached in the forward pass")
            if acts.ndim == 4 and self.params.get("reshape") == "tokens":
                raise ValueError(
                    f"layer {layer!r} output is a feature map {tuple(acts.shape)}, but reshape = "
                    "'tokens' says it is a token sequence B x T x C; drop reshape or name a token layer"
                )
            if acts.ndim not in (3, 4):
                raise ValueError(
                    f"layer {layer!r} output must be BxCxhxw (a feature map) or BxTxC (transformer "
                    f"tokens), got {tuple(acts.shape)}"
                )
            grads = None
            if self.needs_grad:
                (grads,) = torch.autograd.grad(target_scores(logits, targets).sum(), acts)
        if acts.ndim == 3:
            grid = find_token_grid(
                model, acts.shape[1], tuple(inputs.shape[-2:]), self.params.get("prefix_tokens"),
                need_model=self.params.get("reshape", "auto") == "auto",
            )
            acts = tokens_to_grid(acts, grid)
            grads = None if grads is None else tokens_to_grid(grads, grid)
        cam = self.combine(model, x.detach(), targets, acts.detach(), grads, logits.detach())
        if self.params.get("relu", True):
            cam = torch.relu(cam)
        return cam

    @abc.abstractmethod
    def combine(self, model, inputs, targets, acts, grads, logits) -> torch.Tensor:
        """The map Bxhxw from the layer's activations (and gradients, when ``needs_grad``):
        the one thing each CAM method defines."""
