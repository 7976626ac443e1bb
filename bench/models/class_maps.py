"""Class maps: which model outputs stand for a dataset class, and how a class becomes a target.

Data files (shipped with the package):

- ``imagenet_classes.txt``: the 1000 ImageNet-1k (ILSVRC-2012) classes in the standard output
  order, one ``synset<TAB>lemmas`` line per output index. Generated from the timm wheel's
  ``timm/data/_info`` files without importing timm (see :func:`imagenet_classes_from_timm_wheel`;
  the file header names the wheel and its sha256).
- ``class_maps/imagenet_to_coco.json`` and ``class_maps/imagenet_to_voc.json``: for every COCO
  (80) / Pascal VOC (20) class, the ImageNet-1k outputs that stand for it, each written as
  ``[index, synset, name]`` so that a wrong index is caught against ``imagenet_classes.txt``.
  Classes ImageNet-1k has no counterpart for (COCO ``person``, ``giraffe``, ``kite``, ...) map to
  nothing: their targets are skipped and counted, never scored against a wrong class. Each file
  states its policy and the notable choices in its ``policy`` and per-class ``note`` fields.

Class-map file format (also what a user's own ``class_map = "path/to/map.json"`` must follow)::

    {"name": "...", "rule": "max_logit", "num_outputs": 1000,
     "shared_outputs": {"<index>": ["classA", "classB"]},   # optional: intended overlaps
     "classes": {"label": [3, 7] | [[3, "n01491361", "tiger shark"], ...]
                          | {"outputs": [...], "note": "..."}}}

An output index may stand for at most one class unless ``shared_outputs`` lists it with exactly
the classes that share it.

The rule ``"max_logit"`` (:func:`max_logit`; :func:`select_targets` by label): per image, a dataset class becomes the one of
its mapped outputs with the highest logit *on that image*; the attribution method then explains
that output. ``"<top-1>"`` (gaze data) maps to every output, so the rule picks the model's top-1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from bench.models.base import ClassMap

PACKAGE_DIR = Path(__file__).resolve().parent
IMAGENET_CLASSES_FILE = PACKAGE_DIR / "imagenet_classes.txt"
CLASS_MAP_DIR = PACKAGE_DIR / "class_maps"
BUILTIN_IMAGENET_MAPS = {
    "coco": CLASS_MAP_DIR / "imagenet_to_coco.json",
    "voc": CLASS_MAP_DIR / "imagenet_to_voc.json",
}
RULES = ("max_logit",)


class ClassMapError(ValueError):
    """A class-map file or name is malformed or inconsistent."""


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    synset: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


def imagenet_classes(path: Path = IMAGENET_CLASSES_FILE) -> list[ImageNetClass]:
    """The 1000 ImageNet-1k classes, index = model output."""
    out: list[ImageNetClass] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        synset, sep, lemmas = line.partition("\t")
        if not sep or not synset.startswith("n") or not lemmas.strip():
            raise ClassMapError(f"{path}:{lineno}: expected 'synset<TAB>lemmas', got {line!r}")
        names = tuple(n.strip() for n in lemmas.split(",") if n.strip())
        out.append(ImageNetClass(len(out), synset, names))
    if len(out) != 1000:
        raise ClassMapError(f"{path}: expected 1000 ImageNet-1k classes, found {len(out)}")
    return out


# -- class-map files -----------------------------------------------------------------------------


def load_class_map(source: str | Path, *, num_outputs: int | None = None) -> ClassMap:
    """A :class:`ClassMap` from a built-in name or a JSON file.

    ``source``: ``"coco"`` / ``"voc"`` (ImageNet-1k -> COCO / VOC), ``"imagenet"`` (the 1000
    ImageNet classes by their first WordNet lemma, e.g. ``"canoe"``, plus every synset id), or a
    path to a class-map JSON file (format in the module docstring). ``num_outputs``: the model's
    number of outputs; indices are checked against it.
    """
    key = str(source)
    if key == "imagenet":
        return imagenet_identity_map(num_outputs=num_outputs)
    path = BUILTIN_IMAGENET_MAPS.get(key)
    if path is None:
        path = Path(key).expanduser()
        if not path.suffix == ".json":
            known = ", ".join(sorted([*BUILTIN_IMAGENET_MAPS, "imagenet"]))
            raise ClassMapError(
                f"unknown class map {key!r}: give one of {known} or a path to a .json class-map file"
            )
        if not path.is_file():
            raise ClassMapError(f"class-map file {path} does not exist")
    return read_class_map_file(path, num_outputs=num_outputs)


def read_class_map_file(path: Path, *, num_outputs: int | None = None) -> ClassMap:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ClassMapError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise ClassMapError(f"{path}: expected an object with a 'classes' object")
    rule = data.get("rule", "max_logit")
    if rule not in RULES:
        raise ClassMapError(f"{path}: rule {rule!r} unknown (known: {', '.join(RULES)})")
    declared = data.get("num_outputs")
    if num_outputs is not None and declared is not None and declared != num_outputs:
        raise ClassMapError(
            f"{path}: written for a model with {declared} outputs, but the model has {num_outputs}"
        )
    n = num_outputs if num_outputs is not None else declared
    imagenet = None  # loaded only if an entry names a synset to check
    outputs: dict[str, list[int]] = {}
    owner: dict[int, list[str]] = {}
    for label, value in data["classes"].items():
        entries = value.get("outputs") if isinstance(value, dict) else value
        if not isinstance(entries, list):
            raise ClassMapError(f"{path}: class {label!r}: outputs must be a list")
        indices: list[int] = []
        for entry in entries:
            if isinstance(entry, list) and entry and isinstance(entry[0], int):
                index = entry[0]
                if len(entry) >= 2:
                    imagenet = imagenet if imagenet is not None else imagenet_classes()
                    if not 0 <= index < len(imagenet) or imagenet[index].synset != entry[1]:
                        actual = imagenet[index].synset if 0 <= index < len(imagenet) else "none"
                        raise ClassMapError(
                            f"{path}: class {label!r}: output {index} is ImageNet synset "
                            f"{actual}, but the file says {entry[1]} ({entry[2:]})"
                        )
            elif isinstance(entry, int) and not isinstance(entry, bool):
                index = entry
            else:
                raise ClassMapError(f"{path}: class {label!r}: bad output entry {entry!r}")
            if index < 0 or (n is not None and index >= n):
                raise ClassMapError(f"{path}: class {label!r}: output {index} out of range [0, {n})")
            if index in indices:
                raise ClassMapError(f"{path}: class {label!r}: output {index} listed twice")
            indices.append(index)
            owner.setdefault(index, []).append(label)
        outputs[label] = indices
    shared = {int(k): sorted(v) for k, v in data.get("shared_outputs", {}).items()}
    for index, labels in owner.items():
        if len(labels) > 1 and shared.get(index) != sorted(labels):
            raise ClassMapError(
                f"{path}: output {index} stands for several classes {labels}; list it in "
                "'shared_outputs' with exactly those classes if that is intended"
            )
    return ClassMap(outputs, rule=rule, num_outputs=n, name=str(data.get("name", Path(path).stem)))


def imagenet_identity_map(*, num_outputs: int | None = None) -> ClassMap:
    """Labels that *are* ImageNet classes: each synset id and each class's first lemma -> its
    output. Only first lemmas, and only those naming one class: ``crane`` (bird 134, machine 517)
    and ``maillot`` (638, 639) are reachable by synset id only."""
    classes = imagenet_classes()
    if num_outputs is not None and num_outputs != len(classes):
        raise ClassMapError(
            f"class map 'imagenet' is for 1000 ImageNet-1k outputs; the model has {num_outputs}"
        )
    first = [c.name for c in classes]
    outputs: dict[str, list[int]] = {}
    for c in classes:
        outputs[c.synset] = [c.index]
        if first.count(c.name) == 1:
            outputs[c.name] = [c.index]
    return ClassMap(outputs, num_outputs=len(classes), name="imagenet")


def mapped_and_unmapped(class_map: ClassMap) -> tuple[list[str], list[str]]:
    """Labels the map has outputs for, and labels it lists with none (skipped and counted)."""
    mapped = sorted(k for k, v in class_map.outputs.items() if v)
    unmapped = sorted(k for k, v in class_map.outputs.items() if not v)
    return mapped, unmapped


# -- the max-logit rule ---------------------------------------------------------------------------


def max_logit(logits: torch.Tensor, candidates: Sequence[Sequence[int] | None]) -> torch.Tensor:
    """The rule ``"max_logit"``, the one place it is computed: per row n of ``logits`` (N x K),
    the output among ``candidates[n]`` (None: every output) with the highest logit; ties go to
    the lowest output index; ``-1`` where ``candidates[n]`` is empty. Computed on the logits'
    device; the host-built mask goes up with a non-blocking copy (no synchronisation). Returns
    long N."""
    allowed = torch.zeros(logits.shape, dtype=torch.bool)
    for n, cands in enumerate(candidates):
        if cands is None:
            allowed[n] = True
        elif len(cands):
            allowed[n, list(cands)] = True
    allowed = allowed.to(logits.device, non_blocking=True)
    targets = logits.detach().float().masked_fill(~allowed, float("-inf")).argmax(dim=1)
    return torch.where(allowed.any(dim=1), targets, torch.full_like(targets, -1))


def select_targets(class_map: ClassMap, logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Per image i, the output that stands for ``labels[i]``: the mapped output with the highest
    logit on image i (rule ``max_logit``, :func:`max_logit`); ``-1`` where the label maps to no
    output (skip and count it). ``logits``: BxK, ``labels``: B dataset class names
    (``"<top-1>"`` allowed). Returns long B on the logits' device."""
    if class_map.rule not in RULES:
        raise ClassMapError(f"class map rule {class_map.rule!r} unknown (known: {', '.join(RULES)})")
    if logits.ndim != 2 or logits.shape[0] != len(labels):
        raise ValueError(
            f"select_targets: need BxK logits and B labels, got {tuple(logits.shape)} and {len(labels)}"
        )
    k = logits.shape[1]
    per_label = {label: class_map.indices(label) for label in set(labels)}
    for label, idx in per_label.items():
        if idx and max(idx) >= k:
            raise ValueError(f"class {label!r} maps to output {max(idx)} but the model has {k}")
    return max_logit(logits, [per_label[label] for label in labels])


# -- generating imagenet_classes.txt ---------------------------------------------------------------

_TIMM_SYNSETS = "timm/data/_info/imagenet_synsets.txt"
_TIMM_LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"


def imagenet_classes_from_timm_wheel(wheel: Path) -> str:
    """The text of ``imagenet_classes.txt``, read from a timm wheel (a zip) without importing
    timm: ``pip download --no-deps timm`` gives the wheel."""
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for member in (_TIMM_SYNSETS, _TIMM_LEMMAS):
            if member not in names:
                raise ClassMapError(f"{wheel}: no {member} inside (is this a timm wheel?)")
        synsets = zf.read(_TIMM_SYNSETS).decode("utf-8").split()
        lemmas = dict(
            line.split("\t", 1)
            for line in zf.read(_TIMM_LEMMAS).decode("utf-8").splitlines()
            if "\t" in line
        )
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise ClassMapError(f"{wheel}: {_TIMM_SYNSETS} does not hold 1000 distinct synsets")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    header = [
        "# ImageNet-1k (ILSVRC-2012) classes in the standard model-output order: the k-th",
        "# non-comment line (k = 0..999) is output k: WordNet synset id, a tab, its WordNet lemmas.",
        f"# Source: the timm wheel {wheel.name} (sha256 {digest}),",
        f"#   files {_TIMM_SYNSETS} and {_TIMM_LEMMAS}.",
        "# License: timm is Apache-2.0 (https://github.com/huggingface/pytorch-image-models); the",
        "#   synset ids and lemmas come from Princeton WordNet 3.0 (WordNet License, permissive).",
        "# Regenerate: pip download --no-deps timm && "
        "python -m bench.models.class_maps --from-timm-wheel timm-*.whl",
    ]
    body = [f"{s}\t{lemmas[s].strip()}" for s in synsets]
    return "\n".join(header + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.models.class_maps",
        description="Regenerate bench/models/imagenet_classes.txt from a timm wheel.",
    )
    parser.add_argument("--from-timm-wheel", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=IMAGENET_CLASSES_FILE)
    args = parser.parse_args(argv)
    args.out.write_text(imagenet_classes_from_timm_wheel(args.from_timm_wheel), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
