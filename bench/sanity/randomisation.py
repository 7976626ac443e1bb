"""Model-parameter randomisation (Adebayo et al., NeurIPS 2018, sec. 3), on a copy of the model.

Given the model's layer steps top down (:mod:`bench.sanity.layer_steps`), a
:class:`ModelRandomiser` yields, step by step, the model with

- **cascading** randomisation: steps ``1..k`` re-initialised (step 1 is the output layer), so
  the last step is a fully random network;
- **independent** randomisation: step ``k`` alone re-initialised, every other layer trained.

Conventions:

- The original model is never modified. Everything happens on one working copy
  (``copy.deepcopy``); switching between configurations copies the affected tensors in place
  (the trained ones from the original, the fresh ones from a cache), so a whole cascade costs
  about two copies of the weights, not one model per step. :func:`weights_sha256` hashes a
  model's parameters and buffers; the provenance records the original's hash.
- Re-initialisation is PyTorch's own: every module in a step that holds parameters itself
  (Conv, Linear, BatchNorm, ...) gets ``reset_parameters()`` (Quantus's MPRT does the same),
  which for BatchNorm also resets the running statistics (mean 0, variance 1). A module that
  holds parameters but has no ``reset_parameters`` (a class token, a position embedding) gets
  each such parameter drawn i.i.d. from a normal with the trained tensor's own mean and
  standard deviation: its learned structure is gone, its scale is kept.
- Seeded and device independent: a module's fresh values are drawn on the CPU from a
  generator seeded with ``sha256(seed | module name)`` and then copied to the model's device.
  A layer therefore gets the same fresh weights in cascading and independent mode, whatever
  the step order, on any device; two runs with one seed are identical. The global RNG state
  is left as it was (the draw runs inside ``torch.random.fork_rng``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
from torch import nn

from bench.sanity.layer_steps import LayerStep

Mode = Literal["cascading", "independent"]
MODES: tuple[Mode, ...] = ("cascading", "independent")
INIT_RULE = (
    "each module's reset_parameters() (PyTorch default init; BatchNorm statistics reset), "
    "else N(mean, std) of the trained tensor; CPU generator seeded with sha256(seed|module)"
)


def weights_sha256(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, values), in state-dict order:
    equal hashes mean equal weights."""
    h = hashlib.sha256()
    for name, t in model.state_dict(keep_vars=False).items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        data = t.detach().cpu().contiguous().reshape(-1)
        h.update(data.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_seed(seed: int, name: str) -> int:
    """The seed of module ``name``'s fresh values: independent of step order and mode."""
    digest = hashlib.sha256(f"{int(seed)}|{name}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p for n, p in module.named_parameters(recurse=False)}
    out.update({n: b for n, b in module.named_buffers(recurse=False) if b is not None})
    return out


def fresh_values(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Re-initialised values (on the CPU) of the parameters and buffers ``module`` holds itself;
    see the module doc for the rule."""
    if callable(getattr(module, "reset_parameters", None)):
        values = _reset_copy(module, seed)
        if values is not None:
            return values
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for n, p in module.named_parameters(recurse=False):
        data = p.detach().cpu().double()
        std = float(data.std()) if data.numel() > 1 else 0.0
        draw = torch.randn(data.shape, generator=gen, dtype=torch.float64) * std + float(data.mean())
        out[n] = draw.to(p.dtype)
    for n, b in module.named_buffers(recurse=False):
        if b is not None:
            out[n] = b.detach().cpu().clone()  # buffers without a reset rule are kept
    return out


def _reset_copy(module: nn.Module, seed: int) -> dict[str, torch.Tensor] | None:
    """``reset_parameters()`` on a CPU copy of ``module`` alone (children left out), drawn from
    the seeded CPU generator; None if that method needs more than the module's own tensors."""
    alone = copy.copy(module)  # a new __dict__; the dicts below are replaced, never shared
    alone.__dict__["_modules"] = {}
    alone.__dict__["_parameters"] = {
        n: None if p is None else nn.Parameter(p.detach().cpu().clone(), p.requires_grad)
        for n, p in module._parameters.items()
    }
    alone.__dict__["_buffers"] = {n: None if b is None else b.detach().cpu().clone() for n, b in module._buffers.items()}
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        try:
            alone.reset_parameters()
        except (AttributeError, KeyError, TypeError):
            return None
    return {k: v.detach().clone() for k, v in _own_tensors(alone).items()}


@dataclass(frozen=True)
class RandomisedStep:
    """``index``: 1-based step number (1 = the output layer); ``step``: what was re-initialised
    at this step; ``randomised``: names of every step re-initialised in this configuration."""

    mode: Mode
    index: int
    step: LayerStep
    randomised: tuple[str, ...]


class ModelRandomiser:
    """Cascading and independent randomisation of ``steps`` (top down) on a copy of ``model``.

    The copy lives on the model's device, in eval mode. ``cascading()`` and ``independent()``
    yield ``(RandomisedStep, copy)``; the copy is reconfigured in place between yields, so use
    it before asking for the next step. The original ``model`` is never written."""

    def __init__(self, model: nn.Module, steps: list[LayerStep], seed: int = 0):
        if not steps:
            raise ValueError("no layer steps to randomise")
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"layer steps must have distinct names, got {names}")
        self.original = model
        self.steps = list(steps)
        self.seed = int(seed)
        self.original_sha256 = weights_sha256(model)
        self.work = copy.deepcopy(model).eval()
        self._fresh: dict[str, dict[str, torch.Tensor]] = {}
        self._current: set[int] = set()

    # -- configuration ---------------------------------------------------------------------
    def _fresh_for(self, owner: str) -> dict[str, torch.Tensor]:
        if owner not in self._fresh:
            module = self.original.get_submodule(owner)
            values = fresh_values(module, module_seed(self.seed, owner))
            target = _own_tensors(self.work.get_submodule(owner))
            self._fresh[owner] = {k: v.to(target[k].device) for k, v in values.items() if k in target}
        return self._fresh[owner]

    @torch.no_grad()
    def _apply(self, index: int, randomise: bool) -> None:
        for owner in self.steps[index].owners:
            dst = _own_tensors(self.work.get_submodule(owner))
            src = self._fresh_for(owner) if randomise else _own_tensors(self.original.get_submodule(owner))
            for key, t in dst.items():
                if key in src:
                    t.copy_(src[key])

    def configure(self, randomised: set[int]) -> nn.Module:
        """Set the working copy to: steps ``randomised`` (0-based) re-initialised, the rest
        trained. Returns the working copy."""
        bad = [i for i in randomised if not 0 <= i < len(self.steps)]
        if bad:
            raise IndexError(f"steps {bad} out of range (0..{len(self.steps) - 1})")
        for i in sorted(self._current - randomised):
            self._apply(i, randomise=False)
        for i in sorted(randomised - self._current):
            self._apply(i, randomise=True)
        self._current = set(randomised)
        return self.work

    def restore(self) -> nn.Module:
        """Every step back to its trained weights."""
        return self.configure(set())

    # -- the two tests -----------------------------------------------------------------------
    def cascading(self) -> Iterator[tuple[RandomisedStep, nn.Module]]:
        for k in range(len(self.steps)):
            model = self.configure(set(range(k + 1)))
            yield RandomisedStep("cascading", k + 1, self.steps[k], tuple(s.name for s in self.steps[: k + 1])), model

    def independent(self) -> Iterator[tuple[RandomisedStep, nn.Module]]:
        for k in range(len(self.steps)):
            model = self.configure({k})
            yield RandomisedStep("independent", k + 1, self.steps[k], (self.steps[k].name,)), model

    def run(self, mode: Mode) -> Iterator[tuple[RandomisedStep, nn.Module]]:
        if mode == "cascading":
            return self.cascading()
        if mode == "independent":
            return self.independent()
        raise ValueError(f"randomisation mode must be one of {MODES}, got {mode!r}")

    def provenance(self) -> dict[str, object]:
        """What a run records: the seed, the rule, the steps top down, the original's hash."""
        return {
            "seed": self.seed,
            "init": INIT_RULE,
            "original_weights_sha256": self.original_sha256,
            "steps": [{"step": i + 1, **s.describe()} for i, s in enumerate(self.steps)],
        }
