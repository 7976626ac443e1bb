"""Model adapters: spec string -> (module in eval mode, preprocessing, target layer, class map).

Importing the package registers every built-in adapter (each module registers itself with
:data:`bench.models.base.MODEL_ADAPTERS`), as timm's model modules do: the registry never
imports its own registrants.
"""

from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle, load_model
from bench.models import crowd, custom, effnet, harbor, harbor_vit, hub, mobilenet  # noqa: E402,F401  (registrants)

__all__ = ["MODEL_ADAPTERS", "ClassMap", "ModelBundle", "load_model"]
