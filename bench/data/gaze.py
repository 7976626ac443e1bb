"""Human gaze datasets -> :class:`Sample`: OSIE, MIT1003, SALICON, CAT2000.

Every format's coordinates are converted once, here, to the Sample convention: float points,
0-based, x = column, y = row.

===========  ==============================================  ===================================
dataset      raw points                                       conversion
===========  ==============================================  ===================================
OSIE         ``fixations.mat``: per image ``img``, per         ``x = fix_x - 1, y = fix_y - 1``
             subject ``fix_x``, ``fix_y`` (1-based, MATLAB)
MIT1003      ``FIXATIONLOCS/<name>.mat`` (``fixations``) or    nonzero pixel (row r, col c) ->
             ``ALLFIXATIONMAPS/<name>_fixPts.jpg``: binary     ``x = c, y = r`` (array indices are
             fixation maps                                     already 0-based)
SALICON      2015 JSON: ``fixations`` as ``[row, col]``,       ``x = col - 1, y = row - 1``
             1-based; LSUN 2017 ``.mat``: ``gaze(k)            ``x = p[0] - 1, y = p[1] - 1``
             .fixations`` as ``[x, y]``, 1-based
CAT2000      ``FIXATIONLOCS/<cat>/<n>.mat`` (``fixLocs``):     as MIT1003
             binary fixation map
===========  ==============================================  ===================================

What a gaze :class:`Sample` carries:

- one :class:`Target` labelled ``"<top-1>"`` (the model's top prediction: the engine picks the
  class) whose ``mask`` is the fixated pixels: point (x, y) marks pixel
  ``(floor(y + 0.5), floor(x + 0.5))`` (round half up, as OSIE's ``round``); points whose pixel
  falls outside the image are dropped (from ``fixations`` too);
- ``fixations``: the kept points, Nx2 float, all observers pooled (None if the data has none);
- ``density``: HxW float in [0, 1]: the dataset's own map (MIT1003, CAT2000, SALICON ``maps/``)
  divided by 255, or a Gaussian blur of the fixated-pixel map normalised to [0, 1] (min-max),
  with the dataset's own parameters: OSIE sigma 24 px, zero padding, window 7 sigma (its
  ``computeFixationMaps.m``: ``fspecial('gaussian', ceil(7*24), 24)``, ``imfilter(..., 0)``);
  SALICON sigma 19 px, reflected borders (salicon-api ``buildFixMap``);
- per-observer fixations, where the data records who made each point (OSIE's subjects,
  SALICON's workers; MIT1003's and CAT2000's pooled fixation maps do not):
  :meth:`GazeDataset.observer_points`, the input of the human ceiling (:mod:`bench.ceiling`);
  they are not part of the Sample, which the methods and metrics see;
- ``other_fixations``: the shuffled-AUC negatives: the fixations of ``shuffle_images`` (default
  10) other images of the dataset, chosen by ``numpy.random.default_rng([seed, index])``
  (the same for every run, shard and worker), each rescaled to this image's size by pixel
  centres, ``x' = (x + 0.5) * W / W_other - 0.5``, and filtered like ``fixations``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from bench.data.annotations import DatasetFormatError, check_limit, read_json
from bench.data.images import image_size, load_gray, load_image
from bench.data.manifest import Manifest, optional_manifest
from bench.data.registry import register_dataset
from bench.data.sample import TOP1, DroppedImage, Sample, Target

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAT_POINT_KEYS = ("fixLocs", "fixations", "fixationPts")
POINTS_CACHE = 1024  # images whose points a dataset object keeps in memory
SPARSE_BLUR_POINTS = 2000  # up to this many fixated pixels, blur by separable matrix products


@lru_cache(maxsize=8)
def _blur_operator(n: int, sigma: float, mode: str, truncate: float) -> np.ndarray:
    """n x n matrix of the 1-D Gaussian filter (column j: the filtered unit impulse at j), so
    that filtering a map is ``K_rows @ map @ K_cols.T`` for any boundary mode."""
    return ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0, mode=mode, truncate=truncate)


@dataclass(frozen=True)
class Blur:
    """How a dataset turns fixated pixels into a density map (see the module docstring):
    ``scipy.ndimage.gaussian_filter(fixated, sigma, mode=mode, truncate=truncate)``, then
    min-max normalised to [0, 1]."""

    sigma: float
    mode: str  # scipy.ndimage boundary mode
    truncate: float  # kernel radius in sigmas

    def __call__(self, fixated: np.ndarray) -> np.ndarray:
        rows, cols = np.nonzero(fixated)
        h, w = fixated.shape
        if len(rows) <= SPARSE_BLUR_POINTS:
            # The same filter as a sum of separable impulse responses: a few hundred fixated
            # pixels cost two thin matrix products instead of a full-image convolution.
            ky = _blur_operator(h, self.sigma, self.mode, self.truncate)
            kx = _blur_operator(w, self.sigma, self.mode, self.truncate)
            d = ky[:, rows] @ kx[:, cols].T
        else:
            d = ndimage.gaussian_filter(
                fixated.astype(np.float64), self.sigma, mode=self.mode, truncate=self.truncate
            )
        lo, hi = d.min(), d.max()
        return ((d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)).astype(np.float32)


OSIE_BLUR = Blur(sigma=24.0, mode="constant", truncate=3.5)
SALICON_BLUR = Blur(sigma=19.0, mode="reflect", truncate=4.0)


Size = tuple[int, int]


@dataclass(frozen=True)
class ReadPoints:
    """What a per-image point file holds, converted: Nx2 (x, y) points, the (H, W) the file
    states (a fixation map's shape) or None, and per point the observer who made it (None where
    the file pools observers)."""

    points: np.ndarray
    size: Size | None = None
    observers: np.ndarray | None = None


PointReader = Callable[[], ReadPoints]


@dataclass
class GazeRecord:
    """One image and where its gaze data is. ``points`` are already converted (0-based x, y);
    ``read_points`` loads them lazily where they live in per-image files. ``observers``: per
    point, the index of the observer who made it, where the data says (else None)."""

    image_id: str
    image: Path
    points: np.ndarray | None = None
    read_points: PointReader | None = None
    density: Path | None = None
    size: Size | None = None  # (H, W) when the annotation states it
    observers: np.ndarray | None = None


def pixel_of(points: np.ndarray) -> np.ndarray:
    """Nx2 (x, y) float -> Nx2 (row, col) int: round half up."""
    return np.floor(points[:, ::-1] + 0.5).astype(np.int64)


def inside(points: np.ndarray, h: int, w: int) -> np.ndarray:
    rc = pixel_of(points)
    return (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)


def fixated_pixels(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool HxW: the pixels of in-image points."""
    out = np.zeros((h, w), dtype=bool)
    rc = pixel_of(points[inside(points, h, w)])
    out[rc[:, 0], rc[:, 1]] = True
    return out


def points_from_map(fixmap: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Nx2 (x, y) of the pixels of a fixation map above ``threshold``, in row-major order."""
    rows, cols = np.nonzero(fixmap > threshold)
    return np.stack([cols, rows], axis=1).astype(np.float32)


def mat_v73_message(path: Path) -> str:
    """What to do with a MATLAB v7.3 file (HDF5 inside), which scipy.io.loadmat cannot read."""
    return (
        f"{path}: a MATLAB v7.3 (HDF5) .mat file, which cannot be read here; save it again in "
        "the v7 format, e.g. in MATLAB: s = load(FILE); save(FILE, '-struct', 's', '-v7')"
    )


def read_mat_points(path: Path) -> ReadPoints:
    """Points and (H, W) of a binary fixation-map ``.mat`` (MIT ``fixations``, CAT2000
    ``fixLocs``)."""
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError as exc:
        raise DatasetFormatError(mat_v73_message(path)) from exc
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: cannot read .mat file ({exc})") from exc
    for key in MAT_POINT_KEYS:
        if key in data:
            fixmap = np.asarray(data[key])
            if fixmap.ndim != 2:
                raise DatasetFormatError(f"{path}: {key!r} is {fixmap.shape}, expected a 2-D map")
            return ReadPoints(points_from_map(fixmap), (int(fixmap.shape[0]), int(fixmap.shape[1])))
    raise DatasetFormatError(
        f"{path}: no fixation map under any of {MAT_POINT_KEYS} (keys: "
        f"{[k for k in data if not k.startswith('__')]})"
    )


class GazeDataset(Dataset):
    """Map-style dataset of gaze :class:`Sample` s (module docstring)."""

    class_names = [TOP1]

    def __init__(
        self,
        records: list[GazeRecord],
        *,
        blur: Blur | None,
        manifest: Manifest | None,
        shuffle_images: int = 10,
        seed: int = 0,
        skipped: dict[str, int] | None = None,
        missing: dict[str, int] | None = None,
        dropped: list[DroppedImage] | None = None,
    ):
        if not records:
            raise FileNotFoundError("no gaze images found (check root and split)")
        self.records = records
        self.blur = blur
        self.shuffle_images = int(shuffle_images)
        self.seed = int(seed)
        self.skipped = skipped or {}  # images left out, by reason
        self.dropped = list(dropped or [])  # the same images, each with its reason (recorded by a run)
        self.missing = missing or {}  # images kept without some part of their gaze data
        self.manifest = manifest.to_dict() if manifest is not None else None
        # Points read from per-image files, most recently used last; bounded so that memory
        # stays flat however large the dataset (each sample reads ~shuffle_images others).
        self._points: OrderedDict[int, tuple[np.ndarray | None, Size, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def points(self, index: int) -> tuple[np.ndarray | None, Size]:
        """Converted points (None if the data has none for this image) and the image's (H, W),
        without decoding the image."""
        pts, size, _ = self._read(index)
        return pts, size

    def _read(self, index: int) -> tuple[np.ndarray | None, Size, np.ndarray | None]:
        if index in self._points:
            self._points.move_to_end(index)
            return self._points[index]
        rec = self.records[index]
        pts, size, observers = rec.points, rec.size, rec.observers
        if pts is None and rec.read_points is not None:
            read = rec.read_points()
            pts, size, observers = read.points, size or read.size, read.observers
        found = (pts, size or image_size(rec.image), observers)
        self._points[index] = found
        if len(self._points) > POINTS_CACHE:
            self._points.popitem(last=False)
        return found

    def observer_points(self, index: int) -> tuple[list[np.ndarray], Size] | None:
        """Per observer (in the order of their ids), the points whose pixel is in the image, as
        ``__getitem__`` keeps them, and the image's (H, W); None where the data does not say
        who made each point. An observer with no point in the image is left out."""
        pts, (h, w), observers = self._read(index)
        if pts is None or observers is None:
            return None
        keep = inside(pts, h, w)
        pts, observers = pts[keep].astype(np.float32), observers[keep]
        return [pts[observers == k] for k in np.unique(observers)], (h, w)

    def other_fixations(self, index: int, h: int, w: int) -> torch.Tensor | None:
        n = len(self.records)
        if n < 2 or self.shuffle_images <= 0:
            return None
        rng = np.random.default_rng([self.seed, index])
        picks = rng.choice(n - 1, size=min(self.shuffle_images, n - 1), replace=False)
        pooled = []
        for j in picks:
            j = int(j) + (1 if j >= index else 0)
            pts, (ho, wo) = self.points(j)
            if pts is None or len(pts) == 0:
                continue
            scaled = np.stack(
                [(pts[:, 0] + 0.5) * w / wo - 0.5, (pts[:, 1] + 0.5) * h / ho - 0.5], axis=1
            )
            pooled.append(scaled[inside(scaled, h, w)])
        if not pooled:
            return None
        return torch.from_numpy(np.concatenate(pooled).astype(np.float32))

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        image = load_image(rec.image)
        h, w = int(image.shape[1]), int(image.shape[2])
        pts, size = self.points(index)
        if tuple(size) != (h, w):
            raise DatasetFormatError(
                f"{rec.image}: image is {w}x{h} (WxH) but its gaze data is for {size[1]}x{size[0]}"
            )
        if pts is not None:
            pts = pts[inside(pts, h, w)].astype(np.float32)
            fixated = fixated_pixels(pts, h, w)
        else:
            fixated = np.zeros((h, w), dtype=bool)
        density = None
        if rec.density is not None:
            density = load_gray(rec.density)
            if density.shape != (h, w):
                raise DatasetFormatError(
                    f"{rec.density}: density map is {density.shape[::-1]} (WxH), image {(w, h)}"
                )
        elif self.blur is not None and pts is not None:
            density = self.blur(fixated)
        return Sample(
            image=image,
            image_id=rec.image_id,
            targets=[Target(label=TOP1, mask=torch.from_numpy(fixated))],
            fixations=torch.from_numpy(pts) if pts is not None else None,
            density=torch.from_numpy(density) if density is not None else None,
            other_fixations=self.other_fixations(index, h, w),
        )


def _first_existing(candidates: list[Path], what: str, root: Path) -> Path:
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                      for p in candidates)
    raise FileNotFoundError(f"{root}: no {what} found (looked for {tried})")


def _given(root: Path, value: str | Path | None) -> list[Path]:
    if value is None:
        return []
    path = Path(value).expanduser()
    return [path if path.is_absolute() else root / path]


def _check_split(split: str, allowed: tuple[str, ...], dataset: str) -> None:
    if split not in allowed:
        raise ValueError(f"{dataset} has split(s) {allowed}, not {split!r}")


def _limit(records: list[GazeRecord], limit: int | None) -> list[GazeRecord]:
    check_limit(limit)
    return records if limit is None else records[: int(limit)]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


# -- OSIE ----------------------------------------------------------------------------------------


def osie_records(
    root: Path, fixations_file: str | Path | None = None, stimuli: str | Path | None = None,
    drop_first_fixation: bool = False,
) -> tuple[list[GazeRecord], dict[str, int]]:
    """Records from OSIE's ``fixations.mat`` (700 entries), for the stimuli present on disk."""
    mat = _first_existing(
        _given(root, fixations_file)
        + [root / "fixations.mat", root / "data" / "eye" / "fixations.mat",
           root / "eye" / "fixations.mat"],
        "OSIE fixations.mat", root,
    )
    folder = _first_existing(
        _given(root, stimuli) + [root / "stimuli", root / "data" / "stimuli"], "stimuli folder",
        root,
    )
    try:
        entries = scipy.io.loadmat(mat, squeeze_me=True, struct_as_record=False)["fixations"]
    except KeyError as exc:
        raise DatasetFormatError(
            f"{mat}: no 'fixations' variable (not OSIE's fixations.mat)"
        ) from exc
    except NotImplementedError as exc:
        raise DatasetFormatError(mat_v73_message(mat)) from exc
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{mat}: cannot read .mat file ({exc})") from exc
    records, missing, dropped = [], 0, []
    for entry in np.atleast_1d(entries):
        try:
            name = str(entry.img)
            xs, ys, who = [], [], []
            for k, subject in enumerate(np.atleast_1d(entry.subjects)):
                fx = np.atleast_1d(np.asarray(subject.fix_x, dtype=np.float64))
                fy = np.atleast_1d(np.asarray(subject.fix_y, dtype=np.float64))
                if fx.shape != fy.shape:
                    raise ValueError(f"fix_x {fx.shape} and fix_y {fy.shape} differ")
                start = 1 if drop_first_fixation else 0
                xs.append(fx[start:])
                ys.append(fy[start:])
                who.append(np.full(len(fx[start:]), k, dtype=np.int64))
        except (AttributeError, ValueError) as exc:
            raise DatasetFormatError(f"{mat}: malformed entry ({exc})") from exc
        path = folder / name
        if not path.is_file():
            missing += 1
            dropped.append(DroppedImage(Path(name).stem, f"image file not found: {path} (listed in {mat})"))
            continue
        x1 = np.concatenate(xs) if xs else np.zeros(0)
        y1 = np.concatenate(ys) if ys else np.zeros(0)
        # 1-based MATLAB pixel coordinates -> 0-based.
        pts = np.stack([x1 - 1.0, y1 - 1.0], axis=1).astype(np.float32)
        observers = np.concatenate(who) if who else np.zeros(0, dtype=np.int64)
        records.append(GazeRecord(image_id=Path(name).stem, image=path, points=pts, observers=observers))
    return records, {"missing_image": missing}, dropped


@register_dataset("osie", layout_keys=("fixations_file", "stimuli"))
def osie(
    root: str | Path,
    split: str = "all",
    limit: int | None = None,
    manifest: str | None = "osie",
    *,
    fixations_file: str | Path | None = None,
    stimuli: str | Path | None = None,
    drop_first_fixation: bool = False,
    shuffle_images: int = 10,
    seed: int = 0,
) -> GazeDataset:
    """OSIE: the images of ``fixations.mat`` found in the stimuli folder (a subset such as
    shared/data/osie_dev loads what it has; ``dataset.skipped["missing_image"]`` counts the
    rest)."""
    _check_split(split, ("all",), "OSIE")
    root = Path(root).expanduser()
    records, skipped, dropped = osie_records(root, fixations_file, stimuli, drop_first_fixation)
    return GazeDataset(
        _limit(records, limit), blur=OSIE_BLUR, manifest=optional_manifest(manifest),
        shuffle_images=shuffle_images, seed=seed, skipped=skipped,
        dropped=dropped if limit is None else [],
    )


# -- MIT1003 -------------------------------------------------------------------------------------


def read_map_image_points(path: Path, threshold: float) -> ReadPoints:
    """Points and (H, W) of a fixation-point image (MIT1003 ``*_fixPts.jpg``)."""
    fixmap = load_gray(path)
    return ReadPoints(points_from_map(fixmap, threshold), (int(fixmap.shape[0]), int(fixmap.shape[1])))


def mit1003_records(
    root: Path, stimuli: str | Path | None = None, points_threshold: float = 0.5
) -> tuple[list[GazeRecord], dict[str, int]]:
    """Records for the official layout (ALLSTIMULI/, ALLFIXATIONMAPS/) or the benchmark layout
    (stimuli/ or ALLSTIMULI/, fixation_maps/ or FIXATIONMAPS/, FIXATIONLOCS/)."""
    folder = _first_existing(
        _given(root, stimuli) + [root / "ALLSTIMULI", root / "stimuli", root / "Stimuli"],
        "MIT1003 stimuli folder", root,
    )
    records, counts = [], {"density": 0, "points": 0}
    for path in _image_files(folder):
        stem = path.stem
        density = next(
            (p for p in (
                root / "ALLFIXATIONMAPS" / f"{stem}_fixMap.jpg",
                root / "FIXATIONMAPS" / f"{stem}.jpg",
                root / "fixation_maps" / f"{stem}.jpg",
                root / "fixation_maps" / f"{stem}.png",
            ) if p.is_file()),
            None,
        )
        read: PointReader | None = None
        if (root / "FIXATIONLOCS" / f"{stem}.mat").is_file():
            read = partial(read_mat_points, root / "FIXATIONLOCS" / f"{stem}.mat")
        elif (root / "ALLFIXATIONMAPS" / f"{stem}_fixPts.jpg").is_file():
            # JPEG-compressed binary map: a fixation is a pixel above half scale.
            read = partial(
                read_map_image_points, root / "ALLFIXATIONMAPS" / f"{stem}_fixPts.jpg",
                points_threshold,
            )
        counts["density"] += density is None
        counts["points"] += read is None
        records.append(GazeRecord(image_id=stem, image=path, read_points=read, density=density))
    return records, counts


@register_dataset("mit1003", layout_keys=("stimuli",))
def mit1003(
    root: str | Path,
    split: str = "all",
    limit: int | None = None,
    manifest: str | None = "mit1003",
    *,
    stimuli: str | Path | None = None,
    points_threshold: float = 0.5,
    shuffle_images: int = 10,
    seed: int = 0,
) -> GazeDataset:
    """MIT1003. The density is the dataset's own map. Images without fixation points (the
    benchmark layout ships density maps only for most) have ``fixations=None`` and an empty
    target mask: point-based metrics (NSS, AUC) are undefined there, map-based ones (CC, KL,
    SIM) are not. ``dataset.missing`` counts images without points / without density."""
    _check_split(split, ("all",), "MIT1003")
    root = Path(root).expanduser()
    records, counts = mit1003_records(root, stimuli, points_threshold)
    return GazeDataset(
        _limit(records, limit), blur=None, manifest=optional_manifest(manifest),
        shuffle_images=shuffle_images, seed=seed, missing=counts,
    )


# -- CAT2000 -------------------------------------------------------------------------------------


def cat2000_records(root: Path) -> list[GazeRecord]:
    base = root / "trainSet" if (root / "trainSet" / "Stimuli").is_dir() else root
    stimuli = base / "Stimuli"
    if not stimuli.is_dir():
        raise FileNotFoundError(f"{root}: no CAT2000 Stimuli/ folder (nor trainSet/Stimuli/)")
    records = []
    for category in sorted(p for p in stimuli.iterdir() if p.is_dir()):
        # Category folders may hold an Output/ subfolder of model maps: only direct files count.
        for path in _image_files(category):
            locs = base / "FIXATIONLOCS" / category.name / f"{path.stem}.mat"
            if not locs.is_file():
                raise FileNotFoundError(f"{locs}: fixation locations missing for {path}")
            density = base / "FIXATIONMAPS" / category.name / path.name
            records.append(
                GazeRecord(
                    image_id=f"{category.name}/{path.stem}",
                    image=path,
                    read_points=partial(read_mat_points, locs),
                    density=density if density.is_file() else None,
                )
            )
    return records


@register_dataset("cat2000")
def cat2000(
    root: str | Path,
    split: str = "train",
    limit: int | None = None,
    manifest: str | None = "cat2000",
    *,
    shuffle_images: int = 10,
    seed: int = 0,
) -> GazeDataset:
    """CAT2000 training set (the test set's fixations are not public). ``image_id`` is
    ``<Category>/<name>``; the shuffled-AUC negatives come from any category."""
    _check_split(split, ("train",), "CAT2000")
    records = cat2000_records(Path(root).expanduser())
    return GazeDataset(
        _limit(records, limit), blur=None, manifest=optional_manifest(manifest),
        shuffle_images=shuffle_images, seed=seed,
    )


# -- SALICON -------------------------------------------------------------------------------------


def salicon_json_records(annotation_file: Path, image_dir: Path) -> list[GazeRecord]:
    data = read_json(annotation_file)
    if "images" not in data or "annotations" not in data:
        raise DatasetFormatError(f"{annotation_file}: no 'images'/'annotations' (not SALICON)")
    points: dict[int, list] = {}
    workers: dict[int, list] = {}
    for ann in data["annotations"]:
        fixations = ann.get("fixations", [])
        points.setdefault(ann["image_id"], []).extend(fixations)
        # Who recorded each point: the worker (one annotation per worker and image in SALICON;
        # an annotation without a worker id counts as its own observer).
        who = ann.get("worker_id", f"annotation {ann.get('id')}")
        workers.setdefault(ann["image_id"], []).extend([who] * len(fixations))
    records = []
    for info in data["images"]:
        raw = np.asarray(points.get(info["id"], []), dtype=np.float64).reshape(-1, 2)
        # [row, col], 1-based -> x = col - 1, y = row - 1.
        pts = np.stack([raw[:, 1] - 1.0, raw[:, 0] - 1.0], axis=1).astype(np.float32)
        who = np.asarray([str(w) for w in workers.get(info["id"], [])])
        observers = np.unique(who, return_inverse=True)[1] if len(who) else np.zeros(0, np.int64)
        records.append(
            GazeRecord(
                image_id=Path(info["file_name"]).stem,
                image=image_dir / info["file_name"],
                points=pts,
                size=(int(info["height"]), int(info["width"])),
                observers=np.asarray(observers, dtype=np.int64).reshape(-1),
            )
        )
    return records


def read_salicon_mat_points(path: Path, kind: str) -> ReadPoints:
    """Points of a SALICON LSUN-2017 ``.mat``: every observer's ``kind`` field ([x, y],
    1-based), pooled. No size: the file's ``resolution`` order is undocumented, so the image
    header gives the size."""
    try:
        gaze = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["gaze"]
    except KeyError as exc:
        raise DatasetFormatError(f"{path}: no 'gaze' variable (not a SALICON .mat)") from exc
    except NotImplementedError as exc:
        raise DatasetFormatError(mat_v73_message(path)) from exc
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: cannot read .mat file ({exc})") from exc
    chunks, who = [], []
    for k, observer in enumerate(np.atleast_1d(gaze)):
        if not hasattr(observer, kind):
            raise DatasetFormatError(f"{path}: gaze entries have no {kind!r} field")
        raw = np.asarray(getattr(observer, kind), dtype=np.float64).reshape(-1, 2)
        # [x, y], 1-based -> 0-based.
        chunks.append(raw - 1.0)
        who.append(np.full(len(raw), k, dtype=np.int64))  # one gaze entry per observer
    pts = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 2), np.float32)
    observers = np.concatenate(who) if who else np.zeros(0, np.int64)
    return ReadPoints(pts, None, observers)


def salicon_mat_records(fixation_dir: Path, image_dir: Path, map_dir: Path | None,
                        kind: str) -> list[GazeRecord]:
    records = []
    for mat in sorted(fixation_dir.glob("*.mat")):
        density = map_dir / f"{mat.stem}.png" if map_dir is not None else None
        records.append(
            GazeRecord(
                image_id=mat.stem,
                image=image_dir / f"{mat.stem}.jpg",
                read_points=partial(read_salicon_mat_points, mat, kind),
                density=density if density is not None and density.is_file() else None,
            )
        )
    return records


@register_dataset("salicon", layout_keys=("annotations", "images"))
def salicon(
    root: str | Path,
    split: str = "val",
    limit: int | None = None,
    manifest: str | None = "salicon",
    *,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    points: str = "fixations",
    shuffle_images: int = 10,
    seed: int = 0,
) -> GazeDataset:
    """SALICON, from the LSUN 2017 ``.mat`` files (``fixations/<split>/``) or a 2015 JSON
    (``annotations/fixations_<split>.json`` or ``..._<split>2014.json``, or ``annotations=``).
    ``points`` picks the ``.mat`` field: ``"fixations"`` (inferred fixations) or ``"location"``
    (raw mouse samples); the 2015 JSON has only its ``fixations`` (mouse) points. The density is
    ``maps/<split>/<name>.png`` when present, else computed (SALICON blur)."""
    if points not in ("fixations", "location"):
        raise ValueError(f"points must be 'fixations' or 'location', got {points!r}")
    root = Path(root).expanduser()
    image_dir = _first_existing(
        _given(root, images)
        + [root / "images" / split, root / "images" / f"{split}2014", root / f"{split}2014",
           root / split],
        f"SALICON image folder for split {split!r}", root,
    )
    mat_dir = root / "fixations" / split
    if annotations is None and mat_dir.is_dir():
        map_dir = root / "maps" / split
        records = salicon_mat_records(mat_dir, image_dir, map_dir if map_dir.is_dir() else None,
                                      points)
    else:
        ann = _first_existing(
            _given(root, annotations)
            + [root / "annotations" / f"fixations_{split}.json",
               root / "annotations" / f"fixations_{split}2014.json",
               root / f"fixations_{split}2014.json", root / f"fixations_{split}.json"],
            f"SALICON fixations for split {split!r} (fixations/{split}/*.mat or a JSON)", root,
        )
        records = salicon_json_records(ann, image_dir)
    return GazeDataset(
        _limit(records, limit), blur=SALICON_BLUR, manifest=optional_manifest(manifest),
        shuffle_images=shuffle_images, seed=seed,
    )

