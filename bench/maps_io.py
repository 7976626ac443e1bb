"""Where saved attribution maps live: ``maps/<model>/<method>/<image_id>__<target>.npy``, each a
float32 array at the image's original resolution (H x W)."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,\[\]+-]")


def safe_name(text: str) -> str:
    """A file-name-safe form of a model spec, method label, image id or class name; characters
    outside a conservative set become '_' plus their code point, so distinct names stay distinct."""
    return _UNSAFE.sub(lambda m: f"_{ord(m.group()):x}_", text)


def map_path(root: Path, model: str, method: str, image_id: str, target: str) -> Path:
    return Path(root) / safe_name(model) / safe_name(method) / f"{safe_name(image_id)}__{safe_name(target)}.npy"
