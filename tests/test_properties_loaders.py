"""Property tests of the input side: image decoding, the COCO loader, and the engine's batching.

The contract each checks: input is turned into a well-formed Sample (image float 3xHxW in
[0, 1], masks bool HxW) or refused with the errors a run records and skips (``OSError``,
``ValueError``, each naming the file); never any other exception, which would stop a long run.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.batching import PreparedSamples, fixation_map, target_problem
from bench.data.coco import CocoInstances, box_mask
from bench.data.images import ImageDecodeError, load_image
from bench.data.sample import Sample, Target

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}


def well_formed(t: torch.Tensor, h: int | None = None, w: int | None = None) -> None:
    assert t.dtype == torch.float32 and t.ndim == 3 and t.shape[0] == 3
    assert torch.isfinite(t).all() and float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    if h is not None:
        assert tuple(t.shape[1:]) == (h, w)


def _image(mode: str, h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        return Image.fromarray((rng.random((h, w)) * 65535).astype(np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((h, w)).astype(np.float32))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return rgb.convert(mode)


def _encode(img: Image.Image, fmt: str) -> bytes | None:
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return None  # this format cannot store this mode
    return buf.getvalue()


@SETTINGS
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(sorted(FORMATS)), h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 9))
def test_any_mode_in_any_format_decodes_to_rgb_or_is_refused_by_name(tmp_path, mode, fmt, h, w, seed):
    data = _encode(_image(mode, h, w, seed), fmt)
    assume(data is not None)
    path = tmp_path / f"img{FORMATS[fmt]}"
    path.write_bytes(data)
    try:
        t = load_image(path)
    except ImageDecodeError as exc:
        assert str(exc).startswith(str(path))
        assert Image.open(path).mode == "F"  # the one documented refusal
        return
    well_formed(t, h, w)


@pytest.mark.filterwarnings("ignore:Truncated File Read")  # Pillow warns, then raises
@SETTINGS
@given(fmt=st.sampled_from(["PNG", "JPEG", "TIFF", "BMP", "GIF"]), cut=st.floats(0, 0.999), seed=st.integers(0, 9))
def test_a_file_cut_anywhere_decodes_or_is_refused_by_name(tmp_path, fmt, cut, seed):
    data = _encode(_image("RGB", 20, 17, seed), fmt)
    path = tmp_path / f"cut{FORMATS[fmt]}"
    path.write_bytes(data[: int(cut * len(data))])
    try:
        well_formed(load_image(path))
    except ImageDecodeError as exc:
        assert str(exc).startswith(str(path))


@SETTINGS
@given(blob=st.binary(max_size=400), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".bin"]))
def test_random_bytes_decode_or_are_refused_by_name(tmp_path, blob, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(blob)
    try:
        well_formed(load_image(path))
    except ImageDecodeError as exc:
        assert str(exc).startswith(str(path))


# -- the COCO loader ----------------------------------------------------------------------------

H, W = 12, 16
# Far-out coordinates (|x| >= 1e8) crash pycocotools' polygon rasteriser outright (a segfault,
# not an exception): test_bad_input_loaders.py checks the loader refuses them in a subprocess.
coords = st.one_of(
    st.floats(-30, 40, allow_nan=False),
    st.sampled_from([0.0, float(W), float(H), -1e4, 1e4]),
)
bbox = st.lists(coords, min_size=4, max_size=4)
polygon = st.lists(coords, min_size=0, max_size=10)
segmentation = st.one_of(
    st.lists(polygon, max_size=3),
    st.just([]),
    st.builds(lambda n: {"size": [H, W], "counts": [n, H * W - n]}, st.integers(0, H * W)),
)
annotation = st.fixed_dictionaries({
    "category_id": st.sampled_from([1, 2]),
    "bbox": bbox,
    "segmentation": segmentation,
    "iscrowd": st.sampled_from([0, 0, 1]),
})


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco-prop")
    (root / "annotations").mkdir()
    (root / "imgs").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8) + 90).save(root / "imgs" / "a.png")
    return root


@SETTINGS
@given(anns=st.lists(annotation, min_size=1, max_size=4))
def test_coco_annotations_give_well_formed_targets_or_a_recorded_error(coco_root, anns):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [{**a, "id": i + 1, "image_id": 1, "area": 1.0} for i, a in enumerate(anns)],
        "categories": [{"id": 1, "name": "boat"}, {"id": 2, "name": "car"}],
    }
    (coco_root / "annotations" / "instances_prop.json").write_text(json.dumps(data))
    ds = CocoInstances(coco_root, "prop", images="imgs")
    try:
        sample = ds[0]
    except (OSError, ValueError):
        return  # recorded as "sample not loaded" by the engine
    well_formed(sample.image, H, W)
    for t in sample.targets:
        assert t.mask.dtype == torch.bool and tuple(t.mask.shape) == (H, W)
        assert t.boxes.shape[1:] == (4,)
        if t.instances is not None:
            assert t.instances.dtype == torch.bool and tuple(t.instances.shape[1:]) == (H, W)
    prepared = PreparedSamples(ds, lambda x: x, [0])[0]
    assert prepared.error is None
    for t in prepared.targets:
        problem = target_problem(t, prepared)
        assert problem is None or problem.startswith(f"target {t.label!r}")
        assert (problem is None) == bool(t.mask.any())


@SETTINGS
@given(box=bbox, h=st.integers(1, 20), w=st.integers(1, 20))
def test_box_mask_is_the_clipped_pixel_cover_of_the_box(box, h, w):
    x0, y0, x1, y1 = box
    m = box_mask(np.array([[x0, y0, x1, y1]]), h, w)
    assert m.shape == (h, w) and m.dtype == bool
    rows = [r for r in range(h) if r + 1 > y0 and r < y1]  # pixel r covers [r, r+1)
    cols = [c for c in range(w) if c + 1 > x0 and c < x1]
    want = np.zeros((h, w), bool)
    if rows and cols:
        want[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    np.testing.assert_array_equal(m, want)


# -- batching -------------------------------------------------------------------------------------

points = st.lists(
    st.tuples(st.floats(allow_nan=True, allow_infinity=True, width=32), st.floats(allow_nan=True, allow_infinity=True, width=32)),
    max_size=12,
)


@SETTINGS
@given(pts=points, h=st.integers(1, 12), w=st.integers(1, 12))
def test_fixation_map_marks_exactly_the_rounded_points_inside(pts, h, w):
    tensor = torch.tensor(pts, dtype=torch.float32).reshape(-1, 2)
    got = fixation_map(tensor, (h, w))
    want = np.zeros((h, w), bool)
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        c, r = math.floor(float(np.float32(x)) + 0.5), math.floor(float(np.float32(y)) + 0.5)
        if 0 <= c < w and 0 <= r < h:
            want[r, c] = True
    np.testing.assert_array_equal(got.numpy(), want)


class _Broken(torch.utils.data.Dataset):
    def __init__(self, sample_or_error):
        self.item = sample_or_error

    def __len__(self):
        return 1

    def __getitem__(self, i):
        if isinstance(self.item, Exception):
            raise self.item
        return self.item


@SETTINGS
@given(
    h=st.integers(1, 8), w=st.integers(1, 8), mh=st.integers(1, 8), mw=st.integers(1, 8),
    channels=st.sampled_from([1, 3, 4]), box=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
)
def test_prepared_samples_accept_or_record_never_crash(h, w, mh, mw, channels, box):
    mask = torch.zeros(mh, mw, dtype=torch.bool)
    mask[0, 0] = True
    sample = Sample(torch.rand(channels, h, w), "s", [Target("boat", mask, boxes=torch.tensor([box]))])
    p = PreparedSamples(_Broken(sample), lambda x: x, [0])[0]
    if channels != 3 or (mh, mw) != (h, w):
        assert p.error is not None and p.error.startswith("ValueError: s: ")
        return
    assert p.error is None and p.digest is not None
    problem = target_problem(p.targets[0], p)
    # Boxes are float32 tensors: a finite double beyond float32's range becomes inf.
    assert (problem is None) == bool(torch.isfinite(torch.tensor(box, dtype=torch.float32)).all())


@pytest.mark.parametrize("error", [OSError("x.png: gone"), ValueError("bad annotation"), ImageDecodeError("y.png: truncated")])
def test_loader_errors_are_recorded_with_their_type_and_message(error):
    p = PreparedSamples(_Broken(error), lambda x: x, [0])[0]
    assert p.error == f"{type(error).__name__}: {error}" and p.input is None


def test_other_loader_exceptions_are_bugs_and_propagate():
    with pytest.raises(KeyError):
        PreparedSamples(_Broken(KeyError("oops")), lambda x: x, [0])[0]


def test_a_sample_that_fails_to_load_keeps_the_dataset_image_id():
    class Named(_Broken):
        def image_id(self, index):
            return f"img-{index:03d}"

    assert PreparedSamples(Named(OSError("gone")), lambda x: x, [0])[0].image_id == "img-000"
    assert PreparedSamples(_Broken(OSError("gone")), lambda x: x, [0])[0].image_id == "#0"
