"""Image decoding: every Pillow mode a dataset may hold becomes RGB float 3xHxW in [0, 1];
broken files raise an error naming the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.data.images import ImageDecodeError, image_size, load_image


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_jpeg_and_png(tmp_path):
    arr = np.zeros((4, 6, 3), np.uint8)
    arr[1, 2] = (255, 128, 0)
    x = load_image(save(Image.fromarray(arr), tmp_path / "a.png"))
    assert x.shape == (3, 4, 6) and x.dtype.is_floating_point
    assert x[:, 1, 2].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    assert image_size(tmp_path / "a.png") == (4, 6)
    y = load_image(save(Image.fromarray(arr), tmp_path / "a.jpg", quality=95))
    assert y.shape == (3, 4, 6) and 0 <= float(y.min()) and float(y.max()) <= 1


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "RGBA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(np.tile(np.arange(0, 256, 32, dtype=np.uint8), (4, 1)))  # 4x8 ramp
    if mode == "I;16":
        img = Image.fromarray((np.arange(8, dtype=np.uint16) * 8191)[None].repeat(4, 0))
        assert img.mode == "I;16"
    elif mode == "CMYK":
        img = base.convert("RGB").convert("CMYK")
    else:
        img = base.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    x = load_image(save(img, tmp_path / f"img{suffix}"))
    assert x.shape == (3, 4, 8)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    if mode == "I;16":
        # 16-bit full scale stays 1.0 (8191 * 7 = 57337 -> 57337 / 65535).
        assert float(x[0, 0, 7]) == pytest.approx(57337 / 65535, abs=1e-6)
        assert float(x[0, 0, 1]) == pytest.approx(8191 / 65535, abs=1e-6)
    if mode in ("L", "P", "LA"):
        assert float(x[0, 0, 7]) == pytest.approx(224 / 255, abs=1e-6)
        assert (x[0] == x[1]).all() and (x[1] == x[2]).all()


def test_alpha_is_dropped_not_composited(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0  # fully transparent red
    x = load_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "t.png"))
    np.testing.assert_allclose(x[0].numpy(), 200 / 255, rtol=1e-6)


def test_truncated_file_is_named(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, format="JPEG"
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:600])
    with pytest.raises(ImageDecodeError, match="cut.jpg.*truncated or corrupt"):
        load_image(path)


def test_garbage_and_missing_files_are_named(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match="junk.jpg: not a readable image"):
        load_image(path)
    with pytest.raises(ImageDecodeError, match="nope.png: image file not found"):
        load_image(tmp_path / "nope.png")
