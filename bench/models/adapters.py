"""Imports every built-in model adapter module so that each registers itself."""

from bench.models import harbor  # noqa: F401
from bench.models import effnet  # noqa: F401
from bench.models import mobilenet  # noqa: F401
from bench.models import hub  # noqa: F401
from bench.models import custom  # noqa: F401
