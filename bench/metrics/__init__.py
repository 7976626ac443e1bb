"""Metrics: plain batched tensor functions, each also registered with its metadata."""

from bench.metrics.base import METRICS, MetricInfo, TruthBatch, register_metric
from bench.metrics.leakage import leakage
from bench.metrics.pointing import energy_pointing_game, pointing_game

__all__ = [
    "METRICS",
    "MetricInfo",
    "TruthBatch",
    "register_metric",
    "pointing_game",
    "energy_pointing_game",
    "leakage",
]
