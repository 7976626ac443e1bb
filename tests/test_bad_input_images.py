"""Image files as loaders meet them: unusual modes are converted to RGB float [0, 1], bad files
raise :class:`ImageDecodeError` naming the file and the problem (``bench/data/images.py``).

What a *run* does with such a file (skip the sample, record why, keep every other row) is in
``test_bad_input_loaders.py``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.images import ImageDecodeError, load_image

RGB = (np.random.default_rng(0).random((6, 9, 3)) * 255).astype(np.uint8)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` 8-bit gray pixels: what a decompression bomb
    looks like to a decoder that trusts the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def as_hwc255(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.float32 and t.ndim == 3 and t.shape[0] == 3
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    return t.numpy().transpose(1, 2, 0) * 255.0


def test_rgb_png_is_exact(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    np.testing.assert_allclose(as_hwc255(load_image(tmp_path / "a.png")), RGB, atol=1e-3)


def test_cmyk_is_converted_to_rgb(tmp_path):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "a.tif")  # lossless CMYK
    assert Image.open(tmp_path / "a.tif").mode == "CMYK"
    np.testing.assert_allclose(as_hwc255(load_image(tmp_path / "a.tif")), RGB, atol=1e-3)
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "a.jpg", quality=100)  # CMYK JPEG
    np.testing.assert_allclose(as_hwc255(load_image(tmp_path / "a.jpg")), RGB, atol=4)


def test_sixteen_bit_keeps_its_full_range(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    t = load_image(tmp_path / "g16.png")
    want = values.astype(np.float64) / 65535.0  # not clipped at 255 as a plain convert("RGB") would
    for c in range(3):
        np.testing.assert_allclose(t[c].numpy(), want, atol=1e-6)


def test_rgba_drops_alpha_without_compositing(tmp_path):
    alpha = np.full(RGB.shape[:2], 0, dtype=np.uint8)  # fully transparent: colour still kept
    Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(as_hwc255(load_image(tmp_path / "a.png")), RGB, atol=1e-3)


def test_palette_gives_the_palette_colours(tmp_path):
    colours = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], dtype=np.uint8)
    index = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(colours.reshape(-1).tolist())
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_allclose(as_hwc255(load_image(tmp_path / "p.png")), colours[index], atol=1e-3)


def test_grayscale_gives_three_equal_channels(tmp_path):
    gray = RGB[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    got = as_hwc255(load_image(tmp_path / "g.png"))
    for c in range(3):
        np.testing.assert_allclose(got[..., c], gray, atol=1e-3)


def test_truncated_file_is_named(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.png: .*truncated"):
        load_image(tmp_path / "cut.png")


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageDecodeError, match=r"noise\.jpg: not a readable image"):
        load_image(tmp_path / "noise.jpg")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageDecodeError, match=r"nowhere\.png: image file not found"):
        load_image(tmp_path / "nowhere.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels, 100 bytes
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: .*decompression.bomb"):
        load_image(path)


def test_floating_point_mode_is_unsupported_with_a_reason(tmp_path):
    Image.fromarray(np.ones((3, 3), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageDecodeError, match=r"f\.tif: floating-point images .* convert the file"):
        load_image(tmp_path / "f.tif")
