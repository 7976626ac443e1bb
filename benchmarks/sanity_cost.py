"""What the sanity checks cost: model passes per image per randomisation step, counted, and the
time of a step against the time of the method's own maps.

    python benchmarks/sanity_cost.py [--model harbor:contextual] [--images 8] [--repeats 2]
        [--methods gradcam,gradient,integrated_gradients:steps=16,rise:n_masks=250] [--threads N]

Not a test: it prints a table and asserts nothing. Passes are counted by hooks on the model
(a forward hook adds the batch size per forward; a hook on the logits adds it per backward that
reaches them), on the trained model for one call of the method ("map") and on the working copy
over a whole cascade ("step" = the cascade's count / steps). ``ratio`` is the wall time of one
randomisation step (reconfiguring the copy, the method on it, the similarity measures) over the
wall time of the method's own maps on the trained model: what a step adds beyond the passes is
the difference from 1. Inputs: harbor test scenes for harbor models, else seeded random images
through the model's preprocessing.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.methods import create_method
from bench.models import load_model
from bench.sanity.checks import randomisation_similarities, random_target_maps
from bench.sanity.layer_steps import list_layer_steps
from bench.sanity.random_target import random_other_outputs
from bench.sanity.randomisation import ModelRandomiser
from bench.sanity.similarity import MEASURES


class PassCounter:
    """Counts images through forward passes of a module and backward passes that reach its
    output."""

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    def attach(self, module: torch.nn.Module):
        def hook(_m, _inp, out):
            if isinstance(out, torch.Tensor):
                self.forward += out.shape[0]
                if out.requires_grad:
                    out.register_hook(self._backward)

        return module.register_forward_hook(hook)

    def _backward(self, grad: torch.Tensor) -> None:
        self.backward += grad.shape[0]

    def reset(self) -> None:
        self.forward = self.backward = 0


def _inputs(bundle, spec: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if spec.startswith("harbor:"):
        from bench.data.synthetic import HarborScenes

        data = HarborScenes(split="test", n=4 * n, seed=1, size=96)
        samples = [s for s in (data[i] for i in range(len(data))) if s.targets][:n]
        x = torch.stack([bundle.preprocess(s.image) for s in samples])
        t = torch.tensor([bundle.class_map.indices(s.targets[0].label)[0] for s in samples])
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.stack([bundle.preprocess(torch.rand(3, 480, 640, generator=g)) for _ in range(n)])
        with torch.no_grad():
            t = bundle.module(x.contiguous(memory_format=torch.channels_last)).argmax(1)
    return x.contiguous(memory_format=torch.channels_last), t


def _method(text: str):
    """``name`` or ``name:key=value:key=value`` (ints and floats parsed)."""
    name, *pairs = text.split(":")
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        params[key] = value
    return create_method(name, **params)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="harbor:contextual")
    ap.add_argument(
        "--methods",
        default="gradcam,gradient,integrated_gradients:steps=16,smoothgrad:n_samples=8,rise:n_masks=250,center",
    )
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = load_model(args.model, progress=False)
    model = bundle.module
    inputs, targets = _inputs(bundle, args.model, args.images)
    steps = list_layer_steps(model, inputs[:1])
    n = inputs.shape[0]
    print(f"model {args.model}: {len(steps)} layer steps, top down: {', '.join(s.name for s in steps)}")
    print(f"{n} images, batch {n}, {torch.get_num_threads()} threads, torch {torch.__version__}, measures: {', '.join(MEASURES)}\n")
    randomiser = ModelRandomiser(model, steps, seed=0)  # copies the model before any hook is on it
    counter = PassCounter()
    handles = [counter.attach(model), counter.attach(randomiser.work)]
    header = f"{'method':<28}{'map fwd/img':>12}{'map bwd/img':>12}{'step fwd/img':>13}{'step bwd/img':>13}{'map s':>9}{'step s':>9}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    others = random_other_outputs(targets, [[int(t)] for t in targets], int(model(inputs[:1]).shape[1]), list(range(n)))
    for text in args.methods.split(","):
        method = _method(text).with_model_defaults(bundle.target_layer)
        name = method.label
        seeds = list(range(n))
        counter.reset()
        original = method(model, inputs, targets, seeds=seeds).detach()
        map_fwd, map_bwd = counter.forward / n, counter.backward / n
        t_map = _best(lambda: method(model, inputs, targets, seeds=seeds), args.repeats)
        counter.reset()
        randomisation_similarities(randomiser, ["cascading"], [(name, method)], inputs, targets, {name: seeds}, {name: original}, list(MEASURES))
        step_fwd, step_bwd = counter.forward / n / len(steps), counter.backward / n / len(steps)
        t_cascade = _best(
            lambda: randomisation_similarities(randomiser, ["cascading"], [(name, method)], inputs, targets, {name: seeds}, {name: original}, list(MEASURES)),
            args.repeats,
        )
        counter.reset()
        random_target_maps(method, model, inputs, others, seeds)
        assert counter.forward / n == map_fwd, "a random target costs what the target's map costs"
        t_step = t_cascade / len(steps)
        print(
            f"{method.label:<28}{map_fwd:>12.1f}{map_bwd:>12.1f}{step_fwd:>13.1f}{step_bwd:>13.1f}"
            f"{t_map:>9.3f}{t_step:>9.3f}{t_step / t_map if t_map else float('nan'):>8.2f}"
        )
    for h in handles:
        h.remove()
    print(
        f"\nper image and method: cascading = {len(steps)} steps x the step's passes; independent the same again; "
        "random target = one map's passes; class sensitivity = none (it re-scores the run's maps)"
    )


if __name__ == "__main__":
    main()
