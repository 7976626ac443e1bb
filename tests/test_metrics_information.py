"""Information gain and log-likelihood (bench/metrics/information.py): the density rule and the
scores pinned by hand-computed cases, the centre prior's gain over itself exactly 0, and
agreement with pysaliency's own implementation on the same maps.

pysaliency's log-likelihood code lives in ``pysaliency/models.py``, which imports its dataset and
model modules. The package ``__init__`` is not run (it imports ``pkg_resources``, gone from
setuptools >= 81, and a dozen optional modules); the package object is created from its spec and
the modules import under it. They need ``boltons`` and ``deprecation`` (small pure-Python
packages, in the test extras) and ``numba``, which only decorates helpers that fill fixation
maps and is never called on the compared path: where numba is absent the test puts an identity
``numba.jit`` in its place for the import. Everything is taken out of ``sys.modules`` again after
the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods import create_method
from bench.metrics import METRICS, TruthBatch, information_gain, log_likelihood, map_density
from bench.metrics.information import density_times_n

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOL = 1e-9


def _m(values, h=1):
    return torch.tensor(values, dtype=torch.float64).reshape(1, h, -1)


def _f(values, h=1):
    return torch.tensor(values, dtype=torch.bool).reshape(1, h, -1)


# ---------------------------------------------------------------- the density rule, by hand


def test_density_rule_by_hand():
    # [0, 0, 1, 3]: q = [0, 0, 1/4, 3/4], qN = [0, 0, 1, 3]; eps = 0.2: pN = 0.2 + 0.8 qN
    pn = density_times_n(_m([0, 0, 1, 3]), uniform_mix=0.2)[0]
    assert pn.tolist() == pytest.approx([0.2, 0.2, 1.0, 2.6], abs=1e-15)
    # a negative minimum is subtracted first: [-1, 0, 1, 2] -> [0, 1, 2, 3], sum 6
    pn = density_times_n(_m([-1, 0, 1, 2]), uniform_mix=0.2)[0]
    assert pn.tolist() == pytest.approx([0.2 + 0.8 * k * 4 / 6 for k in range(4)], abs=1e-15)
    # a positive floor is kept (only a negative minimum is shifted): [1, 3] -> q = [1/4, 3/4]
    pn = density_times_n(_m([1, 3]), uniform_mix=0.2)[0]
    assert pn.tolist() == pytest.approx([0.2 + 0.8 * 0.5, 0.2 + 0.8 * 1.5], abs=1e-15)
    # constant and all-zero maps are the uniform density, exactly
    assert density_times_n(_m([7, 7, 7]), uniform_mix=0.3)[0].tolist() == [1.0, 1.0, 1.0]
    assert density_times_n(_m([0, 0, 0]))[0].tolist() == [1.0, 1.0, 1.0]
    d = map_density(torch.rand(3, 5, 7, dtype=torch.float64))
    assert torch.allclose(d.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="uniform_mix"):
        density_times_n(_m([0, 1]), uniform_mix=0.0)
    with pytest.raises(ValueError, match="uniform_mix"):
        density_times_n(_m([0, 1]), uniform_mix=1.5)


def test_log_likelihood_by_hand():
    m = _m([0, 0, 1, 3])
    # fixations on pixels 2 and 3: mean(log2 1, log2 2.6)
    assert log_likelihood(m, _f([0, 0, 1, 1]), uniform_mix=0.2).item() == pytest.approx(math.log2(2.6) / 2)
    # a fixation where the map is 0 costs log2(eps)
    assert log_likelihood(m, _f([1, 0, 0, 0]), uniform_mix=0.2).item() == pytest.approx(math.log2(0.2))
    assert log_likelihood(m, _f([1, 0, 0, 0])).item() == pytest.approx(math.log2(0.01))  # default eps
    # the uniform prediction scores exactly 0
    assert log_likelihood(_m([5, 5, 5, 5]), _f([1, 0, 1, 0])).item() == 0.0
    assert log_likelihood(_m([0, 0, 0, 0]), _f([1, 0, 1, 0])).item() == 0.0
    # undefined: no fixated pixel, a NaN or Inf in the map
    assert math.isnan(log_likelihood(m, _f([0, 0, 0, 0])).item())
    assert math.isnan(log_likelihood(_m([0, math.nan, 1, 2]), _f([1, 0, 0, 0])).item())
    assert math.isnan(log_likelihood(_m([0, math.inf, 1, 2]), _f([1, 0, 0, 0])).item())


def test_information_gain_by_hand():
    # 1 x 2 image: the centre prior at pixel centres u = 0, v = -1/4 and +1/4: equal values, so
    # its density is uniform and the gain equals the log-likelihood.
    m = _m([1, 3])
    f = _f([0, 1])
    assert information_gain(m, f, uniform_mix=0.2).item() == pytest.approx(math.log2(0.2 + 0.8 * 1.5))
    # 1 x 3: the prior b = [g, 1, g], g = exp(-(1/3)^2 / (2 sigma^2)); map = one-hot centre
    sigma, eps = 0.25, 0.1
    g = math.exp(-((1 / 3) ** 2) / (2 * sigma**2))
    b = np.array([g, 1.0, g])
    bn = eps + (1 - eps) * 3 * b / b.sum()
    pn_centre = eps + (1 - eps) * 3
    gain = information_gain(_m([0, 1, 0]), _f([0, 1, 0]), sigma=sigma, uniform_mix=eps).item()
    assert gain == pytest.approx(math.log2(pn_centre) - math.log2(bn[1]), abs=1e-6)  # float32 prior
    loss = information_gain(_m([0, 1, 0]), _f([1, 0, 0]), sigma=sigma, uniform_mix=eps).item()
    assert loss == pytest.approx(math.log2(eps) - math.log2(bn[0]), abs=1e-6)
    assert math.isnan(information_gain(m, _f([0, 0])).item())
    with pytest.raises(ValueError, match="sigma"):
        information_gain(m, f, sigma=0.0)


def test_a_config_with_parameters_out_of_range_fails_before_anything_runs():
    from bench.config import Component
    from bench.scoring import ScoringError, metric_columns

    for name, params, what in (
        ("information_gain", {"uniform_mix": 0.0}, "uniform_mix"),
        ("log_likelihood", {"uniform_mix": 2}, "uniform_mix"),
        ("information_gain", {"sigma": -0.1}, "sigma"),
        ("information_gain", {"sigma": float("inf")}, "sigma"),
    ):
        with pytest.raises(ScoringError, match=f"metric '{name}'.*{what}"):
            metric_columns([Component(name, params)])
    cols = metric_columns([Component("information_gain", {"sigma": 0.3}), Component("log_likelihood")])
    assert cols[0].describe()["params"] == {"sigma": 0.3, "uniform_mix": 0.01}
    assert cols[1].describe()["requires"] == ["fixations"]


def test_center_prior_information_gain_over_itself_is_exactly_zero():
    # The `center` method's map at the image's resolution is the baseline, bit for bit.
    center = create_method("center")
    for h, w in ((600, 800), (37, 53)):
        maps = center(None, torch.zeros(3, 3, h, w), torch.zeros(3))
        fix = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h)) < 0.01
        gain = information_gain(maps, fix)
        assert gain.tolist() == [0.0, 0.0, 0.0]
        # ... also through the registry, with a non-default sigma on both sides
        c2 = create_method("center", sigma=0.4)(None, torch.zeros(1, 3, h, w), torch.zeros(1))
        score = METRICS.get("information_gain").score(c2, TruthBatch(masks=fix[:1], fixations=fix[:1]), sigma=0.4)
        assert score.tolist() == [0.0]


def test_information_gain_is_log_likelihood_minus_the_centre_priors():
    rng = torch.Generator().manual_seed(3)
    maps = torch.rand(4, 30, 40, generator=rng, dtype=torch.float64) ** 3
    fix = torch.rand(4, 30, 40, generator=rng) < 0.05
    centre = create_method("center")(None, torch.zeros(4, 3, 30, 40), torch.zeros(4))
    expected = log_likelihood(maps, fix) - log_likelihood(centre, fix)
    assert torch.allclose(information_gain(maps, fix), expected, atol=1e-12)
    # the uniform map's gain is minus the centre prior's log-likelihood
    flat = torch.ones(4, 30, 40)
    assert torch.allclose(information_gain(flat, fix), -log_likelihood(centre, fix), atol=1e-12)


# ---------------------------------------------------------------- pysaliency


@pytest.fixture(scope="module")
def pysal():
    spec = importlib.util.find_spec("pysaliency")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pysaliency is not installed (pip install --no-deps pysaliency==0.2.22)")
    for dep in ("boltons", "deprecation"):
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"pysaliency's models module needs {dep!r} (in the test extras)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "pysaliency", importlib.util.module_from_spec(spec))
        if importlib.util.find_spec("numba") is None:
            numba = types.ModuleType("numba")
            numba.jit = lambda *a, **k: (lambda fn: fn)
            mp.setitem(sys.modules, "numba", numba)
        if not hasattr(np, "trapz"):
            mp.setattr(np, "trapz", np.trapezoid, raising=False)
        try:
            yield types.SimpleNamespace(
                models=importlib.import_module("pysaliency.models"),
                datasets=importlib.import_module("pysaliency.datasets"),
                metrics=importlib.import_module("pysaliency.metrics"),
            )
        finally:
            for name in [n for n in sys.modules if n.startswith("pysaliency.")]:
                del sys.modules[name]


def _pysaliency_models(pysal, maps: np.ndarray, images: np.ndarray, eps: float, sigma: float):
    """pysaliency Models whose log densities are pysaliency's own ``convert_saliency_map_to_density``
    of our maps and of our centre prior, with ``minimum_value`` set to our ``eps``
    (m = eps S / ((1 - eps) N), the module docstring's equivalence)."""
    from bench.density import center_prior

    hashes = [pysal.datasets.get_image_hash(im) for im in images]

    def convert(smap):
        smap = np.asarray(smap, dtype=np.float64)
        shifted = smap - min(smap.min(), 0.0)
        m = eps * shifted.sum() / ((1 - eps) * smap.size)
        return np.log(pysal.metrics.convert_saliency_map_to_density(smap, minimum_value=m))

    class MapModel(pysal.models.Model):
        def __init__(self, table):
            super().__init__(caching=False)
            self.table = table

        def _log_density(self, stimulus):
            return self.table[pysal.datasets.get_image_hash(stimulus)]

    h, w = maps.shape[1:]
    prior = center_prior(h, w, sigma).double().numpy()
    model = MapModel({k: convert(m) for k, m in zip(hashes, maps)})
    baseline = MapModel({k: convert(prior) for k in hashes})
    return model, baseline


def _fixations(pysal, fix: np.ndarray):
    ns, ys, xs = np.nonzero(fix)
    # integer pixel coordinates: pysaliency's int() and our round-half-up give the same pixel
    return pysal.datasets.Fixations.create_without_history(xs.astype(float), ys.astype(float), ns)


def _compare(pysal, maps: np.ndarray, fix: np.ndarray, images: np.ndarray, eps: float, sigma: float = 0.25):
    model, baseline = _pysaliency_models(pysal, maps, images, eps, sigma)
    stimuli = pysal.datasets.Stimuli(list(images))
    fixations = _fixations(pysal, fix)
    n = maps.shape[1] * maps.shape[2]
    tm, tf = torch.from_numpy(maps), torch.from_numpy(fix)
    ours_ll = log_likelihood(tm, tf, uniform_mix=eps).numpy()
    ours_ig = information_gain(tm, tf, sigma=sigma, uniform_mix=eps).numpy()

    # per fixation: pysaliency's log_likelihoods (nats, absolute) and information_gains
    ll_each = model.log_likelihoods(stimuli, fixations)
    ig_each = model.information_gains(stimuli, fixations, baseline_model=baseline)
    for b in range(len(maps)):
        sel = fixations.n == b
        assert ours_ll[b] == pytest.approx((ll_each[sel].mean() + np.log(n)) / np.log(2), abs=TOL)
        assert ours_ig[b] == pytest.approx(ig_each[sel].mean(), abs=TOL)
    # the leaderboard's mean over rows is pysaliency's average='image'
    assert ours_ig.mean() == pytest.approx(
        model.information_gain(stimuli, fixations, baseline_model=baseline, average="image"), abs=TOL
    )
    uniform_gain = model.information_gain(stimuli, fixations, average="image")  # UniformModel baseline
    assert ours_ll.mean() == pytest.approx(uniform_gain, abs=TOL)
    assert ours_ll.mean() == pytest.approx((model.log_likelihood(stimuli, fixations, average="image") + np.log(n)) / np.log(2), abs=TOL)
    # pysaliency's default pools fixations: our rows weighted by their fixation counts
    counts = fix.reshape(len(fix), -1).sum(axis=1)
    assert (ours_ig * counts).sum() / counts.sum() == pytest.approx(
        model.information_gain(stimuli, fixations, baseline_model=baseline), abs=TOL
    )


def test_information_gain_and_log_likelihood_match_pysaliency_on_random_maps(pysal):
    rng = np.random.default_rng(0)
    b, h, w = 5, 24, 32
    maps = rng.random((b, h, w)) ** 3
    maps[1] -= 0.4  # signed: shifted by its minimum, as pysaliency's conversion
    maps[2] = np.maximum(rng.normal(size=(h, w)), 0.0)  # ReLU'd: zeros, where eps matters
    maps[3] = 2.0  # constant: uniform
    fix = rng.random((b, h, w)) < 0.05
    images = rng.integers(0, 255, size=(b, h, w, 3)).astype(np.uint8)
    for eps in (0.01, 0.3):
        _compare(pysal, maps, fix, images, eps)
    _compare(pysal, maps, fix, images, 0.01, sigma=0.4)


def test_information_gain_matches_pysaliency_on_real_osie_fixations(pysal):
    import scipy.io as sio
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    root = DATA / "osie_dev"
    if not root.exists():
        pytest.skip(f"real sample data not found at {root} (shared/ beside the checkout)")
    entries = sio.loadmat(root / "fixations.mat", squeeze_me=True, struct_as_record=False)["fixations"][:3]
    maps, fixes, images = [], [], []
    for entry in entries:
        image = np.asarray(Image.open(root / "stimuli" / entry.img).convert("RGB"))
        gray = image.mean(axis=2)
        fix = np.zeros(gray.shape, dtype=bool)
        for subject in np.atleast_1d(entry.subjects):
            x = np.floor(np.atleast_1d(subject.fix_x) - 1 + 0.5).astype(int)
            y = np.floor(np.atleast_1d(subject.fix_y) - 1 + 0.5).astype(int)
            ok = (x >= 0) & (x < gray.shape[1]) & (y >= 0) & (y < gray.shape[0])
            fix[y[ok], x[ok]] = True
        # a real, continuous prediction: blurred local contrast, ReLU'd above its median
        contrast = gaussian_filter(np.abs(gray - gaussian_filter(gray, 8)), 6)
        maps.append(np.maximum(contrast - np.median(contrast), 0.0))
        fixes.append(fix)
        images.append(image)
    _compare(pysal, np.stack(maps), np.stack(fixes), np.stack(images), 0.01)


def test_repeated_pixels_count_once_here_and_every_time_in_pysaliency(pysal):
    # Two fixations on one pixel: pysaliency scores both, the bool fixation map holds one.
    rng = np.random.default_rng(1)
    smap = rng.random((1, 6, 8))
    images = rng.integers(0, 255, size=(1, 6, 8, 3)).astype(np.uint8)
    model, _ = _pysaliency_models(pysal, smap, images, 0.01, 0.25)
    stimuli = pysal.datasets.Stimuli(list(images))
    fixations = pysal.datasets.Fixations.create_without_history(
        np.array([2.0, 2.0, 5.0]), np.array([1.0, 1.0, 4.0]), np.array([0, 0, 0])
    )
    each = model.log_likelihoods(stimuli, fixations) / np.log(2) + np.log2(48)
    fix = np.zeros((1, 6, 8), dtype=bool)
    fix[0, 1, 2] = fix[0, 4, 5] = True
    ours = log_likelihood(torch.from_numpy(smap), torch.from_numpy(fix)).item()
    assert ours == pytest.approx((each[0] + each[2]) / 2, abs=TOL)
    assert ours != pytest.approx(each.mean(), abs=1e-3)
