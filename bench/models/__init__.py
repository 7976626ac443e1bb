"""Model adapters: spec string -> (module in eval mode, preprocessing, target layer, class map)."""

from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle, load_model

__all__ = ["MODEL_ADAPTERS", "ClassMap", "ModelBundle", "load_model"]
