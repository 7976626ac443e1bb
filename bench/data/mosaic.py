"""Grid mosaics for the grid pointing game (Böhle et al., "Convolutional Dynamic Alignment
Networks", CVPR 2021; Rao et al., "Towards Better Understanding Attribution Methods", CVPR 2022).

A mosaic is a g x g grid (g = 2 by default) of images of g^2 *different* classes, each of which
the model classifies confidently on its own; one tile is the target. Where the evidence for the
target is, is then known by construction: in its tile. A map that puts its mass elsewhere is
wrong about the model, whatever shortcut the model takes inside a tile.

Mosaics are built in the model's input space, after preprocessing: each tile is the model input
of one source image (resized, normalised, exactly what the model classified), and the tiles are
laid side by side, so no resize or crop of the mosaic cuts a tile. That makes the samples
depend on the model, so this dataset is *bound* to each model by the engine (the one hook
:func:`bench.engine.run_config` has for it): ``dataset.for_model(bundle, device)`` returns a
:class:`BoundMosaics` whose samples are mosaics of model inputs and whose ``preprocess`` is the
identity. Its ``image`` is therefore the model input, not a [0, 1] image (the one exception to
the Sample contract, stated here); its size is the input size times g, and the target's mask is
the target tile's square (also its only instance and its box).

Which source images (recorded in the run's provenance under ``model_datasets``, per model):

1. every sample of the ``sources`` (dataset tables, as a config's ``[dataset]``) that loads and
   has a target the model's class map represents (a sample that fails to load is listed under
   ``not_loaded`` and left out, never fatal);
2. classified on the run's device, in batches; a sample is *confident* for class c when the
   model's top-1 output stands for c and the softmax mass of c's outputs is at least
   ``threshold``; each confident sample is one candidate tile of class c;
3. mosaic i draws, from a generator seeded with (``seed``, i): g^2 distinct classes among those
   with a candidate (uniformly), one candidate per class (uniformly), in that order row by row
   (the tile order), and the target tile (uniformly). So mosaic i does not depend on any other
   mosaic, and shards and resumed runs see identical mosaics. Each mosaic's tiles (source and
   image id), classes and target tile are recorded.

Fewer than g^2 confident classes is an error naming the sources, the threshold and the counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.registry import load_dataset, register_dataset
from bench.data.sample import Sample, Target

DEFAULT_SOURCES = [{"name": "harbor", "split": "test", "n": 220, "seed": 1}]
_CLASSIFY_BATCH = 32


def identity(x: torch.Tensor) -> torch.Tensor:
    """The bound mosaics' preprocessing: their images already are model inputs."""
    return x


def _source_name(table: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in table.items() if k != "name")
    return f"{table['name']}({params})"


@dataclasses.dataclass(frozen=True)
class Candidate:
    source: int  # position in ``sources``
    index: int  # sample index in that source
    image_id: str
    label: str
    confidence: float


class MosaicSource(Dataset):
    """The unbound dataset: sources and settings. Its length is ``n``; its samples exist only
    for a model (:meth:`for_model`), so reading one unbound is an error."""

    def __init__(self, sources: list, n: int, grid: int, threshold: float, seed: int):
        if not isinstance(sources, list) or not sources:
            raise ValueError("mosaic: 'sources' must be a non-empty list of dataset tables, e.g. [{name = \"harbor\", split = \"test\"}]")
        self.tables = []
        for k, table in enumerate(sources):
            if not isinstance(table, dict) or not isinstance(table.get("name"), str):
                raise ValueError(f"mosaic: sources[{k}] must be a table with a dataset 'name', got {table!r}")
            if table["name"] == "mosaic":
                raise ValueError("mosaic: a source cannot itself be a mosaic")
            self.tables.append(dict(table))
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
            raise ValueError(f"mosaic: 'grid' must be an integer >= 2, got {grid!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"mosaic: 'threshold' must lie in [0, 1], got {threshold!r}")
        if int(n) < 1:
            raise ValueError(f"mosaic: 'n' must be >= 1, got {n!r}")
        self.sources = [load_dataset(t["name"], **{k: v for k, v in t.items() if k != "name"}) for t in self.tables]
        self.n, self.grid, self.threshold, self.seed = int(n), int(grid), float(threshold), int(seed)
        self.class_names = sorted({c for s in self.sources for c in getattr(s, "class_names", [])})
        self.manifest = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Sample:
        raise ValueError(
            "mosaic samples are built in a model's input space and exist only for a model; "
            "a run binds them per model (MosaicSource.for_model)"
        )

    # -- binding ------------------------------------------------------------------------------

    def candidates(self, bundle, device: torch.device) -> tuple[list[Candidate], list[torch.Tensor], list[dict[str, Any]]]:
        """Confident candidate tiles (with their model inputs) and the samples that did not
        load, in source order (see the module doc)."""
        found: list[Candidate] = []
        tiles: list[torch.Tensor] = []
        not_loaded: list[dict[str, Any]] = []
        pending: list[tuple[int, int, str, list[str], torch.Tensor]] = []
        module = bundle.module.to(device).eval()

        def flush() -> None:
            if not pending:
                return
            x = torch.stack([p[4] for p in pending]).to(device).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                probs = module(x).float().softmax(dim=1)
            top = probs.argmax(dim=1)
            for (src, idx, image_id, labels, tile), p, t in zip(pending, probs, top):
                best, best_p = None, -1.0
                for label in labels:
                    outs = bundle.class_map.indices(label)
                    mass = float(p[outs].sum())
                    if int(t) in outs and mass > best_p:
                        best, best_p = label, mass
                if best is not None and best_p >= self.threshold:
                    found.append(Candidate(src, idx, image_id, best, best_p))
                    tiles.append(tile)
            pending.clear()

        for src, ds in enumerate(self.sources):
            for idx in range(len(ds)):
                try:
                    sample = ds[idx]
                    tile = bundle.preprocess(sample.image)
                except (OSError, ValueError) as exc:
                    not_loaded.append({"source": src, "index": idx, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                labels = [t.label for t in sample.targets if bundle.class_map.indices(t.label)]
                if not labels:
                    continue
                if tiles and tuple(tile.shape) != tuple(tiles[0].shape) or pending and tuple(tile.shape) != tuple(pending[0][4].shape):
                    raise ValueError(
                        f"mosaic: {bundle.spec}'s preprocessing gives inputs of different sizes "
                        f"({tuple(tile.shape)} for {sample.image_id!r}); mosaics need a fixed input size"
                    )
                pending.append((src, idx, str(sample.image_id), sorted(set(labels)), tile.detach().cpu()))
                if len(pending) == _CLASSIFY_BATCH:
                    flush()
        flush()
        return found, tiles, not_loaded

    def for_model(self, bundle, device: torch.device | str = "cpu") -> "BoundMosaics":
        device = torch.device(device)
        found, tiles, not_loaded = self.candidates(bundle, device)
        pool: dict[str, list[int]] = {}
        for k, c in enumerate(found):
            pool.setdefault(c.label, []).append(k)
        need = self.grid**2
        if len(pool) < need:
            counts = {c: len(v) for c, v in sorted(pool.items())} or "none"
            raise ValueError(
                f"mosaic: {bundle.spec} classifies images of only {len(pool)} classes confidently "
                f"(threshold {self.threshold}) in {', '.join(map(_source_name, self.tables))}: {counts}; "
                f"a {self.grid}x{self.grid} mosaic needs {need} different classes. Lower the threshold, "
                "add sources or use a smaller grid"
            )
        classes = sorted(pool)
        layout = []
        for i in range(self.n):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i]))
            chosen = [classes[j] for j in rng.choice(len(classes), size=need, replace=False)]
            picks = [pool[c][int(rng.integers(len(pool[c])))] for c in chosen]
            layout.append((picks, int(rng.integers(need))))
        record = {
            "sources": self.tables,
            "grid": self.grid,
            "threshold": self.threshold,
            "seed": self.seed,
            "tile_size": list(tiles[0].shape[-2:]),
            "confidence": "top-1 output stands for the class and the softmax mass of the class's outputs >= threshold",
            "candidates_per_class": {c: len(pool[c]) for c in classes},
            "not_loaded": not_loaded,
            "mosaics": [
                {
                    "index": i,
                    "tiles": [[self.tables[found[k].source]["name"], found[k].image_id] for k in picks],
                    "classes": [found[k].label for k in picks],
                    "confidences": [round(found[k].confidence, 6) for k in picks],
                    "target_tile": target,
                }
                for i, (picks, target) in enumerate(layout)
            ],
        }
        return BoundMosaics(self.grid, found, tiles, layout, record, self.class_names)


class BoundMosaics(Dataset):
    """The mosaics of one model: samples in its input space, ``preprocess`` the identity,
    ``provenance`` what they were built from (see the module doc)."""

    preprocess = staticmethod(identity)

    def __init__(self, grid: int, found: list[Candidate], tiles: list[torch.Tensor], layout, record: dict[str, Any], class_names: list[str]):
        self.grid, self.found, self.tiles, self.layout = grid, found, tiles, layout
        self.provenance = record
        self.class_names = class_names
        self.manifest = None

    def __len__(self) -> int:
        return len(self.layout)

    def tile_mask(self, tile: int) -> torch.Tensor:
        """Bool mask of tile ``tile`` (row-major) on the mosaic."""
        g = self.grid
        h, w = self.tiles[0].shape[-2:]
        mask = torch.zeros((g * h, g * w), dtype=torch.bool)
        r, c = divmod(tile, g)
        mask[r * h : (r + 1) * h, c * w : (c + 1) * w] = True
        return mask

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.layout):
            raise IndexError(index)
        picks, target = self.layout[index]
        g = self.grid
        rows = [torch.cat([self.tiles[picks[r * g + c]] for c in range(g)], dim=-1) for r in range(g)]
        image = torch.cat(rows, dim=-2)
        mask = self.tile_mask(target)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
        label = self.found[picks[target]].label
        key = "|".join(f"{self.found[k].source}:{self.found[k].image_id}" for k in picks) + f"|{target}"
        image_id = f"mosaic-{index:05d}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        return Sample(image=image, image_id=image_id, targets=[Target(label, mask, mask[None].clone(), box)])


@register_dataset("mosaic")
def mosaic_dataset(sources: list = DEFAULT_SOURCES, n: int = 100, grid: int = 2, threshold: float = 0.9, seed: int = 0) -> MosaicSource:
    return MosaicSource(sources=[dict(t) for t in sources], n=n, grid=grid, threshold=threshold, seed=seed)
