"""Datasets: loaders that turn files into the Sample contract, one file per format family.

Importing the package registers every built-in loader (each module registers itself with
:data:`bench.data.registry.DATASETS`), as timm's model modules do: the registry never imports its
own registrants.
"""

from bench.data.sample import TOP1, Sample, Target
from bench.data import coco, crowd, gaze, mosaic, panoptic, synthetic, voc  # noqa: E402,F401  (registrants)

__all__ = ["TOP1", "Sample", "Target"]
