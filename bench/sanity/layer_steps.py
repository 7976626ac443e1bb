"""Which blocks of a model a parameter-randomisation test re-initialises, one step at a time.

Adebayo et al. (NeurIPS 2018) randomise Inception v3 block by block from the logits down
(``Logits``, ``Mixed_7c``, ..., ``Conv2d_1a_3x3``). :func:`list_layer_steps` finds such blocks
in any ``nn.Module`` from its module tree and one forward pass, so that a model needs no table
of its own:

1. One forward pass of an example input records the order in which the parameters of each
   module that holds some are first used (by any torch operation, so a class token or a weight
   read through ``F.linear`` counts where it is used), and each module's output shape.
2. The model starts as one unit per parameterised child of the root, in execution order.
3. A normalisation layer (BatchNorm, GroupNorm, LayerNorm, InstanceNorm) that directly follows
   a single convolution or linear layer joins it: ``conv + BN`` is one layer, as in the paper
   and in every "conv block" of the field.
4. While the number of steps stays at or below ``max_steps``, the unit with the most
   parameters is split into its parameterised children (after step 3); if that would be too
   many steps, into *stages*, runs of consecutive children with the same output shape (the
   resolution and width of a CNN stage). A unit that neither split fits stays whole.

Steps are returned top down: ``steps[0]`` holds the output layer, the order of cascading
randomisation. What this gives the built-in models (pinned by tests):

- ``harbor:*`` (6 steps): ``fc``, then the five conv + BN layers of ``features``;
- ``effnet-lite0`` (10 steps): ``_fc``, ``_conv_head+_bn1``, its 7 stages of MBConv blocks
  (``_blocks.15``, ``_blocks.11-14``, ...), ``_conv_stem+_bn0``;
- ``mobilenet_v2`` (10 steps): ``classifier``, ``features.18``, ``features.17``,
  ``features.14-16``, ..., ``features.1``, ``features.0`` (the last features block, the 7
  resolution/width stages of inverted residual blocks, the stem).

:func:`named_layer_steps` takes the steps from a list of module names instead. A model whose
layers cannot be listed (no parameters, no forward hooks, a forward that fails on the example
input or uses none of the parameters) raises :class:`UnlistableModelError` saying why. A
parameterised module the forward pass never uses is in no step: re-initialising it could not
change a map.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    nn.LayerNorm,
)


class UnlistableModelError(ValueError):
    """The model's parameterised layers cannot be listed, so it cannot be randomised."""


@dataclass(frozen=True)
class LayerStep:
    """One randomisation step: the modules re-initialised together.

    ``name``: a readable label (``"fc"``, ``"_conv_head+_bn1"``, ``"features.14-16"``);
    ``modules``: the qualified names of the submodules whose whole subtrees are re-initialised
    (``""`` is the root); ``owners``: the modules in those subtrees that hold parameters
    directly (what re-initialisation touches); ``n_params``: parameters in the step;
    ``own_only``: the step is the root's own parameters (not its children's)."""

    name: str
    modules: tuple[str, ...]
    owners: tuple[str, ...]
    n_params: int
    own_only: bool = False

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "modules": list(self.modules), "n_params": self.n_params}


@dataclass
class _Unit:
    label: str
    modules: list[str]
    owners: list[str]
    first_use: int
    n_params: int
    shape: tuple[int, ...] | None
    path: str | None  # the module a split descends into; None: atomic
    leaf: bool = False  # a single module that owns parameters itself (conv, linear, norm)
    is_norm: bool = False
    own_only: bool = False
    children: list["_Unit"] = field(default_factory=list)


@dataclass
class _Trace:
    order: dict[str, int]  # owner name -> rank of the first use of its parameters
    shapes: dict[str, tuple[int, ...] | None]  # module name -> output shape of its first call


def _owns_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


class _FirstUse(TorchFunctionMode):
    """Records the order in which parameters are first read by a torch operation: a module's
    weights when it runs, a class token when it is concatenated, a weight used through
    ``F.linear`` by its parent."""

    def __init__(self, owner_of: dict[int, str]):
        super().__init__()
        self.owner_of = owner_of
        self.order: dict[str, int] = {}

    def _see(self, obj: object) -> None:
        if isinstance(obj, torch.Tensor):
            owner = self.owner_of.get(id(obj))
            if owner is not None and owner not in self.order:
                self.order[owner] = len(self.order)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                self._see(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                self._see(item)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self._see(args)
        self._see(kwargs or {})
        return func(*args, **(kwargs or {}))


def _trace(model: nn.Module, example: torch.Tensor) -> _Trace:
    """One forward pass: the order in which each parameter-holding module's parameters are first
    used, and the shape of each module's first output."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    handles = []
    try:
        for name, module in model.named_modules():

            def post(_m, _inp, out, name=name):
                if name not in shapes:
                    shapes[name] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None

            handles.append(module.register_forward_hook(post))
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        for h in handles:
            h.remove()
        raise UnlistableModelError(
            f"{type(model).__name__}: cannot hook its modules to see the shapes of its layers ({exc}); "
            "a scripted or traced model cannot be randomised layer by layer: pass the eager nn.Module"
        ) from exc
    owner_of = {id(p): n for n, m in model.named_modules() for p in m.parameters(recurse=False)}
    watch = _FirstUse(owner_of)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), watch:
            model(example)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign model's forward is reported as such
        raise UnlistableModelError(
            f"{type(model).__name__}: its forward pass failed on an example input of shape "
            f"{tuple(example.shape)} ({type(exc).__name__}: {exc}), so the order of its layers is unknown"
        ) from exc
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return _Trace(watch.order, shapes)


def _child(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _n_params(model: nn.Module, owners: list[str]) -> int:
    seen: set[int] = set()
    total = 0
    for o in owners:
        for p in model.get_submodule(o).parameters(recurse=False):
            if id(p) not in seen:  # tied weights count once
                seen.add(id(p))
                total += p.numel()
    return total


def _unit_for(model: nn.Module, name: str, trace: _Trace) -> _Unit | None:
    """The unit of submodule ``name`` (its whole subtree), or None if none of it runs."""
    module = model.get_submodule(name)
    owners = [_child(name, n) if n else name for n, m in module.named_modules() if _owns_params(m)]
    called = [trace.order[o] for o in owners if o in trace.order]
    if not called:
        return None
    has_kids = any(_owns_params(m) for n, m in module.named_modules() if n)
    return _Unit(
        label=name,
        modules=[name],
        owners=owners,
        first_use=min(called),
        n_params=_n_params(model, owners),
        shape=trace.shapes.get(name),
        path=name if has_kids else None,
        leaf=not has_kids,
        is_norm=isinstance(module, NORM_TYPES),
    )


def _own_unit(model: nn.Module, name: str, trace: _Trace) -> _Unit | None:
    """The parameters ``name`` holds itself (a class token, a position embedding), apart from
    its children's, when it holds any."""
    if not _owns_params(model.get_submodule(name)) or name not in trace.order:
        return None
    return _Unit(
        label=f"{name or '(root)'}:own",
        modules=[name],
        owners=[name],
        first_use=trace.order[name],
        n_params=_n_params(model, [name]),
        shape=None,
        path=None,
        own_only=True,
    )


def _children(model: nn.Module, unit: _Unit, trace: _Trace) -> list[_Unit]:
    """The parameterised children of ``unit.path`` in execution order, norms merged (step 3)."""
    assert unit.path is not None
    name = unit.path
    kids = [u for n, _ in model.get_submodule(name).named_children() if (u := _unit_for(model, _child(name, n), trace))]
    own = _own_unit(model, name, trace)
    if own is not None:
        kids.append(own)
    kids.sort(key=lambda u: u.first_use)
    merged: list[_Unit] = []
    for u in kids:
        prev = merged[-1] if merged else None
        if u.is_norm and prev is not None and prev.leaf and not prev.is_norm and len(prev.modules) == 1:
            merged[-1] = _Unit(
                label=f"{prev.label}+{_short(u.label, prev.label)}",
                modules=prev.modules + u.modules,
                owners=prev.owners + u.owners,
                first_use=prev.first_use,
                n_params=prev.n_params + u.n_params,
                shape=u.shape,
                path=None,
            )
        else:
            merged.append(u)
    return merged


def _short(name: str, sibling: str) -> str:
    """``features.1`` beside ``features.0`` reads as ``features.0+1``; other names stay whole."""
    a, _, last = name.rpartition(".")
    b, _, _ = sibling.rpartition(".")
    return last if a == b and a else name


def _stages(kids: list[_Unit]) -> list[_Unit]:
    """Runs of consecutive children with the same (known) output shape, as one unit each."""
    runs: list[list[_Unit]] = []
    for u in kids:
        if runs and u.shape is not None and runs[-1][-1].shape == u.shape and not u.own_only and not runs[-1][-1].own_only:
            runs[-1].append(u)
        else:
            runs.append([u])
    out = []
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        out.append(
            _Unit(
                label=_range_label([u.label for u in run]),
                modules=[m for u in run for m in u.modules],
                owners=[o for u in run for o in u.owners],
                first_use=run[0].first_use,
                n_params=sum(u.n_params for u in run),
                shape=run[-1].shape,
                path=None,
            )
        )
    return out


def _range_label(labels: list[str]) -> str:
    """``["_blocks.3", "_blocks.4", "_blocks.5"]`` -> ``"_blocks.3-5"``; otherwise first..last."""
    parents = {lab.rpartition(".")[0] for lab in labels}
    lasts = [lab.rpartition(".")[2] for lab in labels]
    if len(parents) == 1 and all(x.isdigit() for x in lasts):
        parent = parents.pop()
        return f"{parent}.{lasts[0]}-{lasts[-1]}" if parent else f"{lasts[0]}-{lasts[-1]}"
    return f"{labels[0]}..{labels[-1]}"


def list_layer_steps(model: nn.Module, example: torch.Tensor, max_steps: int = 10) -> list[LayerStep]:
    """The model's randomisation steps, top down (``[0]`` is the output layer); at most
    ``max_steps`` of them. ``example``: one model input (1 x C x H x W, on the model's device),
    for the forward pass that gives the layers' order and shapes. See the module doc."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if not any(True for _ in model.parameters()):
        raise UnlistableModelError(f"{type(model).__name__} has no parameters: there is nothing to randomise")
    trace = _trace(model, example)
    if not trace.order:
        raise UnlistableModelError(
            f"{type(model).__name__}: a forward pass used none of its parameters, so the order of "
            "its layers is unknown and randomising them would change nothing"
        )
    root = _Unit("(root)", [""], [], 0, 0, None, path="")
    units = _children(model, root, trace)
    stuck: set[str] = set()
    while True:
        for unit in sorted((u for u in units if u.path is not None and u.label not in stuck), key=lambda u: (-u.n_params, u.first_use)):
            pos = units.index(unit)
            kids = _children(model, unit, trace)
            if len(kids) == 1:
                # A wrapper (``classifier`` around its one Linear): look inside it under its
                # own name; the step is the same.
                kid = kids[0]
                kid.label, kid.modules, kid.shape = unit.label, unit.modules, unit.shape
                units[pos] = kid
                if kid.path is None:
                    stuck.add(kid.label)
                break
            rest = len(units) - 1
            if rest + len(kids) <= max_steps:
                units[pos : pos + 1] = kids
                break
            stages = _stages(kids)
            if 2 <= len(stages) and rest + len(stages) <= max_steps:
                units[pos : pos + 1] = stages
                break
            stuck.add(unit.label)
        else:
            break
    if len(units) > max_steps:
        units = _chunk(units, max_steps)
    return [
        LayerStep(u.label, tuple(u.modules), tuple(u.owners), u.n_params, own_only=u.own_only)
        for u in reversed(units)
    ]


def _chunk(units: list[_Unit], max_steps: int) -> list[_Unit]:
    """More top-level units than steps allowed: consecutive units joined into ``max_steps``
    nearly equal runs."""
    out = []
    bounds = torch.linspace(0, len(units), max_steps + 1).round().long().tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        run = units[a:b]
        if len(run) == 1:
            out.append(run[0])
            continue
        out.append(
            _Unit(
                label=f"{run[0].label}..{run[-1].label}",
                modules=[m for u in run for m in u.modules],
                owners=[o for u in run for o in u.owners],
                first_use=run[0].first_use,
                n_params=sum(u.n_params for u in run),
                shape=run[-1].shape,
                path=None,
                own_only=False,
            )
        )
    return out


def named_layer_steps(model: nn.Module, steps: list[str | list[str]]) -> list[LayerStep]:
    """Steps named by hand, top down: each entry is a module name (``"fc"``) or a list of names
    re-initialised together (``["_conv_head", "_bn1"]``). Every name must be a submodule that
    holds parameters."""
    known = [n for n, _ in model.named_modules() if n]
    out = []
    for entry in steps:
        names = [entry] if isinstance(entry, str) else list(entry)
        if not names:
            raise ValueError("a randomisation step names no module")
        owners: list[str] = []
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError as exc:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"randomisation step {name!r}: the model has no such module{hint}") from exc
            found = [_child(name, n) if n else name for n, m in module.named_modules() if _owns_params(m)]
            if not found:
                raise ValueError(f"randomisation step {name!r}: {type(module).__name__} holds no parameters")
            owners += found
        out.append(LayerStep("+".join(names), tuple(names), tuple(owners), _n_params(model, owners)))
    return out
