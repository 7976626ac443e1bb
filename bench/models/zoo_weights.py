"""Pretrained weights of ``torchvision:NAME`` and ``timm:NAME`` on a machine that may be offline.

The zoos download weights on first use (torchvision through ``torch.hub`` into
``$TORCH_HOME/hub/checkpoints``, timm from the Hugging Face Hub into ``$HF_HOME``). Offline, the
libraries fail slowly and unhelpfully (a long ``URLError`` traceback; the Hub client retries for
about a minute). So before a library is asked to download, :func:`ensure_weights` looks in the
local cache and, when the file is not there, checks that the weights' host answers at all (one
TCP connection, a few seconds at most). When it does not (or ``HF_HUB_OFFLINE`` /
``GROUNDBENCH_OFFLINE`` says not to try), the load stops with one message naming the model and
the ways that work offline: ``pretrained = false``, a ``file:`` weights spec with ``arch``, or
the weights placed in the library's local cache.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# Environment variables that mean "never touch the network" (HF_HUB_OFFLINE is the Hub's own).
OFFLINE_ENV = ("GROUNDBENCH_OFFLINE", "HF_HUB_OFFLINE")
PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither in the local cache nor downloadable from here."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a zoo model's pretrained weights come from: ``url`` (to download) and ``cached``
    (the local file the library would read instead, when it exists)."""

    spec: str
    url: str
    cache_hint: str  # where the library looks, for the message
    cached: Path | None = None


def offline_requested() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def offline_message(spec: str, reason: str, cache_hint: str) -> str:
    return (
        f"model {spec!r}: pretrained weights are not available ({reason}). Offline, use one of: "
        f"pretrained = false (random weights); a weights file, spec = \"file:PATH.pt\" with "
        f"arch = \"{spec}\"; or the weights file placed in the local cache ({cache_hint})."
    )


def ensure_weights(source: WeightsSource) -> None:
    """Return when the library can get the weights (cached, or the host answers); otherwise
    raise :class:`WeightsUnavailableError` at once."""
    if source.cached is not None and source.cached.is_file():
        return
    if offline_requested():
        reason = f"not in the local cache, and {'/'.join(OFFLINE_ENV)} forbids downloading"
    elif host_reachable(source.url):
        return
    else:
        host = urlparse(source.url).hostname or source.url
        reason = f"not in the local cache, and {host} cannot be reached from this machine"
    raise WeightsUnavailableError(offline_message(source.spec, reason, source.cache_hint))


def torch_hub_checkpoint(url: str) -> Path:
    """The file ``torch.hub.load_state_dict_from_url`` reads before downloading ``url``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def torchvision_source(spec: str, weights_enum_member) -> WeightsSource:
    """torchvision weights: ``member.url`` through torch.hub's checkpoint cache."""
    url = str(weights_enum_member.url)
    cached = torch_hub_checkpoint(url)
    return WeightsSource(spec, url, f"{cached}", cached)


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def timm_source(spec: str, pretrained_cfg) -> WeightsSource | None:
    """timm weights from a model's pretrained config: the Hugging Face Hub repo (``hf_hub_id``)
    when it has one, else its ``url`` (torch.hub cache); None when timm would load a local file
    or has no pretrained weights to fetch."""
    cfg = pretrained_cfg.to_dict() if hasattr(pretrained_cfg, "to_dict") else dict(pretrained_cfg or {})
    if cfg.get("file") or cfg.get("state_dict"):
        return None
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        cached = None
        try:
            from huggingface_hub import try_to_load_from_cache
            from huggingface_hub.constants import HF_HUB_CACHE

            for name in HF_WEIGHT_FILES:
                hit = try_to_load_from_cache(hub_id, name)
                if isinstance(hit, str):
                    cached = Path(hit)
                    break
            hint = f"{HF_HUB_CACHE}, repository {hub_id}; then set HF_HUB_OFFLINE=1"
        except ImportError:
            hint = f"the Hugging Face cache, repository {hub_id}"
        return WeightsSource(spec, f"https://huggingface.co/{hub_id}", hint, cached)
    if cfg.get("url"):
        cached = torch_hub_checkpoint(cfg["url"])
        return WeightsSource(spec, cfg["url"], f"{cached}", cached)
    return None
