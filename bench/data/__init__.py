"""Datasets: loaders that turn files into the Sample contract, one file per format family."""

from bench.data.sample import Sample, Target

__all__ = ["Sample", "Target"]
