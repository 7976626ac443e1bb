"""Sanity checks of attribution methods (Adebayo et al., "Sanity checks for saliency maps",
NeurIPS 2018): does a map depend on the model and on the class at all?

- :mod:`bench.sanity.layer_steps`: which blocks of a model are re-initialised, step by step;
- :mod:`bench.sanity.randomisation`: cascading and independent re-initialisation on a copy;
- :mod:`bench.sanity.similarity`: Spearman rank correlation and SSIM between two maps;
- :mod:`bench.sanity.random_target`: the random other class of the random-logit test;
- :mod:`bench.sanity.class_sensitivity`: class A's map scored against class B's mask;
- :mod:`bench.sanity.checks`: the checks on one batch of a run.
"""

from bench.sanity.layer_steps import LayerStep, UnlistableModelError, list_layer_steps, named_layer_steps
from bench.sanity.randomisation import MODES, ModelRandomiser, weights_sha256
from bench.sanity.similarity import MEASURES, compare

__all__ = [
    "LayerStep",
    "MEASURES",
    "MODES",
    "ModelRandomiser",
    "UnlistableModelError",
    "compare",
    "list_layer_steps",
    "named_layer_steps",
    "weights_sha256",
]
