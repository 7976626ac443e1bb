"""Metrics: plain batched tensor functions, each also registered with its metadata.

Every function takes ``maps`` float BxHxW and ground truth on the same device and returns one
value per sample (``iou_curve``: BxT). The conventions each one follows (ties, tolerance,
constant / NaN maps, empty masks, normalisation) are in its docstring and pinned by tests.
"""

from bench.metrics.base import METRICS, MapStats, MetricInfo, ModelAccess, TruthBatch, register_metric
from bench.metrics.faithfulness import average_drop, deletion, increase_in_confidence, insertion
from bench.metrics.gaze import auc_judd, cc, kl_div, nss, shuffled_auc, sim
from bench.metrics.information import information_gain, log_likelihood, map_density
from bench.metrics.leakage import context_pointing_rate, density_ratio, leakage
from bench.metrics.overlap import (
    best_iou,
    coverage,
    instance_recall,
    iou_curve,
    rank_accuracy,
    top_k_intersection,
)
from bench.metrics.pointing import energy_pointing_game, mass_accuracy, pointing_game
from bench.metrics import grid  # noqa: E402,F401  (registers grid_pointing)
from bench.metrics.extent import extent

__all__ = [
    "METRICS",
    "MetricInfo",
    "TruthBatch",
    "MapStats",
    "ModelAccess",
    "register_metric",
    "pointing_game",
    "energy_pointing_game",
    "mass_accuracy",
    "rank_accuracy",
    "top_k_intersection",
    "iou_curve",
    "best_iou",
    "coverage",
    "instance_recall",
    "extent",
    "leakage",
    "deletion",
    "insertion",
    "average_drop",
    "increase_in_confidence",
    "context_pointing_rate",
    "density_ratio",
    "nss",
    "auc_judd",
    "shuffled_auc",
    "cc",
    "kl_div",
    "sim",
    "log_likelihood",
    "information_gain",
    "map_density",
]
