"""Reading attribution maps saved by any tool: the file formats, the shapes, batch files and
their index. ``groundbench score`` (:mod:`bench.saved_maps`) and the report's overlays read maps
only through here.

A method folder (``MAPS_DIR/<model>/<method>/``) may hold, in any mix:

- **one map per file**, named ``<image_id>__<target>.EXT`` (names as :func:`bench.maps_io.safe_name`
  writes them), of shape H x W, or 1 x H x W / H x W x 1 (as Quantus and pytorch-grad-cam
  return them);
- **batch files** ``NAME.EXT`` holding N maps, N x H x W or N x 1 x H x W, with a row index:
  either a file beside it, ``NAME.index.csv`` (a header line ``image_id,target``, then one line
  per row in order; an optional ``row`` column names the array row) or ``NAME.index.json`` (a
  list of ``[image_id, target]`` pairs, or of ``{"image_id", "target"[, "row"]}`` objects), or
  inside the file itself: an ``.npz`` with arrays ``maps``, ``image_ids`` and ``targets``, or a
  ``.pt`` dict with those keys. Index ids are the dataset's own (not safe_name-encoded).

Formats (``EXT``): ``.npy`` (``allow_pickle=False``), ``.npz`` (its one array, or the one named
``map`` / ``maps``), ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``: a tensor, or a dict
with one tensor or a ``map`` / ``maps`` key), and grayscale ``.png`` of 8 bits (values / 255) or
16 bits (values / 65535): a PNG holds quantised values, so its map is the saved map up to that
step. A colour PNG (a colour-mapped picture) cannot be read back as values and is refused.

Every file of the folder is accounted for: a file that is not read as maps (another format, a
batch file without index, a row or file that names no (image, target) of the dataset, a second
map for a pair already given) is reported by :func:`scan_folder` as unused, with the reason,
and the caller records it (``skipped.jsonl``) and prints the count.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAP_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".png")
INDEX_SUFFIXES = (".index.csv", ".index.json")
ARRAY_KEYS = ("map", "maps")
PAIR_SEPARATOR = "__"
_ENCODED = re.compile(r"_([0-9a-f]{1,6})_")


class MapFileError(ValueError):
    """A map file cannot be read as maps; the message names the file and the problem."""


def decode_name(text: str) -> str:
    """Invert :func:`bench.maps_io.safe_name` where it is unambiguous: ``_<hex>_`` becomes its
    character only where safe_name would have encoded that character."""
    from bench.maps_io import safe_name

    def one(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if safe_name(ch) != ch else m.group(0)

    return _ENCODED.sub(one, text)


# -- formats -----------------------------------------------------------------------------------


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("LA", "La"):
                im = im.getchannel("L")
                mode = "L"
            if mode == "P" and _grey_palette(im):
                im = im.convert("L")
                mode = "L"
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise MapFileError(f"{path}: not a readable PNG ({exc})") from exc
    if mode in ("L", "1"):
        scale = 255.0 if mode == "L" else 1.0
    elif mode.startswith("I;16") or mode == "I":
        # Pillow opens 16-bit grayscale PNGs as I;16 (or I): values 0..65535.
        scale = 65535.0
    else:
        raise MapFileError(
            f"{path}: a {mode} PNG holds colours, not map values (a colour-mapped picture cannot be "
            "read back); save the map as an 8- or 16-bit grayscale PNG, or as .npy"
        )
    return arr.astype(np.float32) / np.float32(scale)


def _grey_palette(im) -> bool:
    palette = im.getpalette() or []
    triples = [palette[i:i + 3] for i in range(0, len(palette), 3)]
    return bool(triples) and all(r == g == b for r, g, b in triples)


def _pick(items: dict[str, Any], path: Path) -> Any:
    """The one array of a container, or the one named ``map`` / ``maps``."""
    for key in ARRAY_KEYS:
        if key in items:
            return items[key]
    arrays = {k: v for k, v in items.items() if hasattr(v, "shape")}
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise MapFileError(f"{path}: holds arrays {sorted(items)}; name the map 'map' (one) or 'maps' (a batch)")


def _torch(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types; name the file
        raise MapFileError(
            f"{path}: cannot read with torch.load(weights_only=True) (save a tensor, or a dict of tensors and lists): {exc}"
        ) from exc


def _as_float(value: Any, path: Path) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().float().numpy()
    arr = np.asarray(value)
    if np.issubdtype(arr.dtype, np.complexfloating) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise MapFileError(f"{path}: expected a numeric H x W map, got shape {arr.shape} dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _empty(arr: np.ndarray, path: Path) -> None:
    if arr.size == 0:
        raise MapFileError(f"{path}: the map is empty ({' x '.join(map(str, arr.shape))})")


def read_file(path: Path) -> np.ndarray:
    """The array a map file holds (its maps, any shape), as float32."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _png(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise MapFileError(f"{path}: not a readable .npy array ({exc})") from exc
        if not isinstance(arr, np.ndarray):
            raise MapFileError(f"{path}: not a single .npy array (an .npz archive named .npy?)")
        return _as_float(arr, path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return _as_float(_pick({k: z[k] for k in z.files}, path), path)
        except (OSError, ValueError) as exc:
            if isinstance(exc, MapFileError):
                raise
            raise MapFileError(f"{path}: not a readable .npz archive ({exc})") from exc
    if suffix in (".pt", ".pth"):
        obj = _torch(path)
        if isinstance(obj, dict):
            obj = _pick(obj, path)
        return _as_float(obj, path)
    raise MapFileError(f"{path}: not a map file format ({', '.join(MAP_SUFFIXES)})")


def as_single(arr: np.ndarray, path: Path) -> np.ndarray:
    """One map, H x W, from H x W, 1 x H x W or H x W x 1."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        hint = "; a file of several maps needs an index (see `groundbench score --help`)" if arr.ndim in (3, 4) else ""
        raise MapFileError(f"{path}: expected a numeric H x W map, got shape {arr.shape} (1 x H x W and H x W x 1 are read too{hint})")
    _empty(arr, path)
    return arr


def as_batch(arr: np.ndarray, path: Path) -> np.ndarray:
    """N maps, N x H x W, from N x H x W or N x 1 x H x W."""
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise MapFileError(f"{path}: expected a batch of maps (N x H x W or N x 1 x H x W), got shape {arr.shape}")
    _empty(arr, path)
    return arr


# -- a folder ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapEntry:
    """Where the map of one (image, target) is: a file, and for a batch file its row."""

    image_id: str
    target: str
    path: Path
    row: int | None = None


@dataclass(frozen=True)
class Unused:
    """A file (or a batch file's row) of a method folder that gives no map, and why."""

    path: Path
    reason: str
    image_id: str | None = None
    target: str | None = None


def _index_file(path: Path) -> Path | None:
    base = path.with_suffix("")
    for suffix in INDEX_SUFFIXES:
        candidate = base.parent / (base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def _read_index(index: Path) -> list[tuple[str, str, int]]:
    """(image_id, target, row) per line of an index file."""
    try:
        if index.name.endswith(".json"):
            items = json.loads(index.read_text())
            out = []
            for n, item in enumerate(items):
                if isinstance(item, dict):
                    out.append((str(item["image_id"]), str(item["target"]), int(item.get("row", n))))
                else:
                    image_id, target = item
                    out.append((str(image_id), str(target), n))
            return out
        with open(index, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image_id", "target"} <= set(reader.fieldnames):
                raise MapFileError(f"{index}: the first line must name the columns image_id,target[,row]")
            return [(r["image_id"], r["target"], int(r["row"]) if r.get("row") not in (None, "") else n) for n, r in enumerate(reader)]
    except MapFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MapFileError(f"{index}: not a readable index ({type(exc).__name__}: {exc})") from exc


def _embedded_index(path: Path) -> list[tuple[str, str, int]] | None:
    """The index inside a self-describing .npz / .pt batch (``image_ids`` and ``targets``)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if not {"image_ids", "targets"} <= set(z.files):
                    return None
                ids, targets = z["image_ids"].tolist(), z["targets"].tolist()
        except (OSError, ValueError) as exc:
            raise MapFileError(f"{path}: not a readable .npz archive ({exc})") from exc
    elif suffix in (".pt", ".pth"):
        obj = _torch(path)
        if not isinstance(obj, dict) or not {"image_ids", "targets"} <= set(obj):
            return None
        ids, targets = list(obj["image_ids"]), list(obj["targets"])
    else:
        return None
    if len(ids) != len(targets):
        raise MapFileError(f"{path}: {len(ids)} image_ids but {len(targets)} targets")
    return [(str(i), str(t), n) for n, (i, t) in enumerate(zip(ids, targets))]


def scan_folder(folder: Path) -> tuple[dict[tuple[str, str], MapEntry], list[Unused]]:
    """Every map a method folder gives, by (image_id, target), and the files that give none.
    Reads only names and indexes (a batch file with its index inside is opened for it); the
    maps themselves are read by :class:`MapReader`."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    indexes = {p for p in files if p.name.endswith(INDEX_SUFFIXES)}
    entries: dict[tuple[str, str], MapEntry] = {}
    unused: list[Unused] = []
    used_indexes: set[Path] = set()

    def add(entry: MapEntry) -> None:
        key = (entry.image_id, entry.target)
        if key in entries:
            first = entries[key]
            where = f"{first.path.name}" + (f" row {first.row}" if first.row is not None else "")
            unused.append(Unused(entry.path, f"a second map for ({entry.image_id}, {entry.target}); {where} is used", *key))
        else:
            entries[key] = entry

    for path in files:
        if path in indexes:
            continue
        if path.suffix.lower() not in MAP_SUFFIXES:
            unused.append(Unused(path, f"not a map file format ({', '.join(MAP_SUFFIXES)})"))
            continue
        index = _index_file(path)
        if index is not None:
            used_indexes.add(index)
            try:
                rows = _read_index(index)
            except MapFileError as exc:
                unused.append(Unused(path, str(exc)))
                continue
            for image_id, target, row in rows:
                add(MapEntry(image_id, target, path, row))
            continue
        if PAIR_SEPARATOR in path.stem:
            image, _, target = path.stem.partition(PAIR_SEPARATOR)
            add(MapEntry(decode_name(image), decode_name(target), path))
            continue
        try:
            embedded = _embedded_index(path)
        except MapFileError as exc:
            unused.append(Unused(path, str(exc)))
            continue
        if embedded is None:
            unused.append(Unused(
                path,
                "neither <image_id>__<target>.EXT (one map) nor a batch with an index "
                "(NAME.index.csv / NAME.index.json beside it, or image_ids and targets inside)",
            ))
            continue
        for image_id, target, row in embedded:
            add(MapEntry(image_id, target, path, row))
    for index in sorted(indexes - used_indexes):
        unused.append(Unused(index, "an index without its batch file (NAME.npy, .npz, .pt or .pth)"))
    return entries, unused


class MapReader:
    """Reads maps of :class:`MapEntry` s as H x W float32 arrays, keeping the last batch file
    open (``.npy`` batches are memory-mapped, so a row costs only its own bytes)."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._batch: np.ndarray | None = None

    def read(self, entry: MapEntry) -> np.ndarray:
        if entry.row is None:
            return as_single(read_file(entry.path), entry.path)
        if self._path != entry.path:
            self._batch, self._path = None, None
            if entry.path.suffix.lower() == ".npy":
                try:
                    arr = np.load(entry.path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as exc:
                    raise MapFileError(f"{entry.path}: not a readable .npy array ({exc})") from exc
                if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
                    raise MapFileError(f"{entry.path}: expected numeric maps, got dtype {arr.dtype}")
            else:
                arr = read_file(entry.path)
            self._batch, self._path = as_batch(arr, entry.path), entry.path
        batch = self._batch
        if not 0 <= entry.row < batch.shape[0]:
            raise MapFileError(f"{entry.path}: the index names row {entry.row}, the file has {batch.shape[0]} maps")
        return np.array(batch[entry.row], dtype=np.float32)
