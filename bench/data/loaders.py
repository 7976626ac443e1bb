"""Imports every built-in loader module so that each registers itself."""

from bench.data import coco, gaze, panoptic, synthetic, voc  # noqa: F401
