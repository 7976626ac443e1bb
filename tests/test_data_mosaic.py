"""Grid mosaics (bench/data/mosaic.py) and the grid pointing game: tiles are the model's own
inputs of images it classifies confidently, each mosaic holds different classes, everything is
seeded and recorded, and the grid pointing score of a tile-exact map is exactly 1 (of a uniform
map exactly 1/4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from bench.data.mosaic import MosaicSource
from bench.data.registry import DATASETS, register_dataset
from bench.data.sample import Sample, Target
from bench.metrics import METRICS, TruthBatch
from bench.models.base import ClassMap, ModelBundle

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "white": (1.0, 1.0, 1.0), "grey": (0.5, 0.5, 0.5)}
NAMES = list(COLOURS)


class Swatches(Dataset):
    """Flat colour images 12x16 (one class each, cycling), every third one half-way to the next
    class's colour (the model is unsure of those), and an unreadable one where asked."""

    def __init__(self, n: int = 20, broken: int = -1):
        self.n, self.broken = n, broken
        self.class_names = NAMES

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.broken:
            raise OSError(f"swatch-{i}.png: truncated file")
        name = NAMES[i % len(NAMES)]
        rgb = torch.tensor(COLOURS[name])
        if i % 3 == 2:
            rgb = 0.5 * (rgb + torch.tensor(COLOURS[NAMES[(i + 1) % len(NAMES)]]))
        image = rgb[:, None, None].expand(3, 12, 16).clone()
        mask = torch.ones(12, 16, dtype=torch.bool)
        return Sample(image=image, image_id=f"swatch-{i}", targets=[Target(name, mask)])


if "test-swatches" not in DATASETS._items:
    register_dataset("test-swatches")(lambda n=20, broken=-1: Swatches(n, broken))


class ColourNet(nn.Module):
    """Logits = sharpened closeness of the mean colour to each class colour: confident on pure
    colours, unsure on mixed ones."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("centres", torch.tensor([COLOURS[n] for n in NAMES]))

    def forward(self, x):
        mean = (self.features(x).mean(dim=(2, 3)) + 1) / 2  # inputs are 2 * image - 1
        return -40.0 * torch.cdist(mean, self.centres) ** 2


def _bundle() -> ModelBundle:
    return ModelBundle(
        spec="colours", module=ColourNet().eval(), preprocess=lambda im: im * 2.0 - 1.0, target_layer="features",
        class_map=ClassMap({n: [k] for k, n in enumerate(NAMES)}),
    )


def _source(**kw) -> MosaicSource:
    params = {"sources": [{"name": "test-swatches", "n": 20}], "n": 12, "grid": 2, "threshold": 0.9, "seed": 4}
    params.update(kw)
    return MosaicSource(**params)


def test_mosaics_are_model_inputs_of_confident_images_of_different_classes():
    bundle = _bundle()
    bound = _source().for_model(bundle)
    rec = bound.provenance
    assert len(bound) == 12 and rec["threshold"] == 0.9 and rec["seed"] == 4 and rec["grid"] == 2
    assert rec["tile_size"] == [12, 16]
    # Dim swatches (every third) are not confident: never a tile.
    used = {tid for m in rec["mosaics"] for _, tid in m["tiles"]}
    assert used and all(int(t.split("-")[1]) % 3 != 2 for t in used)
    assert set(rec["candidates_per_class"]) == set(NAMES)
    source = Swatches()
    for i in range(len(bound)):
        s = bound[i]
        m = rec["mosaics"][i]
        assert len(set(m["classes"])) == 4 and all(c >= 0.9 for c in m["confidences"])
        assert s.image.shape == (3, 24, 32) and s.size == (24, 32)
        (t,) = s.targets
        assert t.label == m["classes"][m["target_tile"]]
        r, c = divmod(m["target_tile"], 2)
        expected = torch.zeros(24, 32, dtype=torch.bool)
        expected[r * 12 : (r + 1) * 12, c * 16 : (c + 1) * 16] = True
        assert torch.equal(t.mask, expected) and torch.equal(t.instances[0], expected)
        assert t.boxes.tolist() == [[c * 16, r * 12, (c + 1) * 16, (r + 1) * 12]]
        for k, (_, tid) in enumerate(m["tiles"]):
            rr, cc = divmod(k, 2)
            tile = s.image[:, rr * 12 : (rr + 1) * 12, cc * 16 : (cc + 1) * 16]
            assert torch.equal(tile, bundle.preprocess(source[int(tid.split("-")[1])].image))
    assert torch.equal(bound.preprocess(s.image), s.image)


def test_mosaics_are_seeded_and_independent_of_each_other():
    a, b = _source().for_model(_bundle()), _source().for_model(_bundle())
    assert a.provenance == b.provenance
    assert all(torch.equal(a[i].image, b[i].image) and a[i].image_id == b[i].image_id for i in range(12))
    longer = _source(n=30).for_model(_bundle())
    assert longer.provenance["mosaics"][:12] == a.provenance["mosaics"]
    other = _source(seed=5).for_model(_bundle())
    assert other.provenance["mosaics"] != a.provenance["mosaics"]
    orders = {tuple(m["classes"]) for m in a.provenance["mosaics"]}
    assert len(orders) > 3  # tile order varies


def test_grid_pointing_of_a_tile_map_is_one_and_of_a_uniform_map_one_quarter():
    bound = _source().for_model(_bundle())
    samples = [bound[i] for i in range(len(bound))]
    truth = TruthBatch(masks=torch.stack([s.targets[0].mask for s in samples]))
    score = METRICS.get("grid_pointing").score
    on_tile = truth.masks.float()
    assert score(on_tile, truth).tolist() == [1.0] * len(samples)
    assert score(torch.ones_like(on_tile), truth).tolist() == [0.25] * len(samples)
    assert score(torch.full_like(on_tile, 0.5), truth).tolist() == [0.25] * len(samples)
    # Any other constant: 1/4 up to float32 rounding of the sums.
    assert score(torch.full_like(on_tile, 3.7), truth).tolist() == pytest.approx([0.25] * len(samples), abs=1e-7)
    # It is mass accuracy on the tile, not a second implementation: a registered alias.
    assert METRICS.get("grid_pointing").alias_of == "energy_pointing_game"
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(on_tile.shape, generator=gen)
    assert torch.equal(score(maps, truth), METRICS.get("mass_accuracy").score(maps, truth))
    # And the pointing game against the tile: the argmax must sit in the tile.
    pg = METRICS.get("pointing_game").score(on_tile, truth, tolerance=1.0)
    assert pg.tolist() == [1.0] * len(samples)


def test_unreadable_sources_are_recorded_and_too_few_classes_is_a_clear_error():
    bound = _source(sources=[{"name": "test-swatches", "n": 20, "broken": 6}]).for_model(_bundle())
    (bad,) = bound.provenance["not_loaded"]
    assert bad["index"] == 6 and "truncated" in bad["error"]
    assert all(tid != "swatch-6" for m in bound.provenance["mosaics"] for _, tid in m["tiles"])
    # Three swatches: red, green, and a mixed one the model is unsure of.
    with pytest.raises(ValueError, match=r"only 2 classes confidently \(threshold 0.9\) in test-swatches\(n=3\)"):
        _source(sources=[{"name": "test-swatches", "n": 3}]).for_model(_bundle())
    with pytest.raises(ValueError, match="needs 9 different classes"):
        _source(grid=3).for_model(_bundle())


def test_unbound_mosaics_and_bad_parameters():
    src = _source()
    assert len(src) == 12
    with pytest.raises(ValueError, match="exist only for a model"):
        src[0]
    with pytest.raises(ValueError, match="grid"):
        _source(grid=1)
    with pytest.raises(ValueError, match="threshold"):
        _source(threshold=2.0)
    with pytest.raises(ValueError, match="sources"):
        _source(sources=[])
    with pytest.raises(ValueError, match="mosaic"):
        _source(sources=[{"name": "mosaic"}])
