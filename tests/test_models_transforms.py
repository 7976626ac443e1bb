"""Preprocessing: the bundle transform covers the whole image (no crop), the ImageNet eval
transform crops the center, both normalise as stated."""

import pickle

import pytest
import torch

from bench.models.transforms import CenterCropEval, ResizeNormalize, parse_size


def _left_third_bright(h, w):
    """Value 1 in the left third of the columns, 0 elsewhere."""
    img = torch.zeros(3, h, w)
    img[:, :, : w // 3] = 1.0
    return img


def test_resize_covers_the_whole_image_and_normalises():
    t = ResizeNormalize((30, 30), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    out = t(_left_third_bright(60, 90))  # 60x90 -> 30x30, aspect not kept
    assert out.shape == (3, 30, 30)
    # the bright left third of columns stays the left third: (1 - 0.5) / 0.5 = 1, (0 - .5)/.5 = -1
    assert torch.allclose(out[:, :, :9], torch.ones(3, 30, 9))
    assert torch.allclose(out[:, :, 11:], -torch.ones(3, 30, 19))


def test_resize_normalises_per_channel():
    t = ResizeNormalize((4, 4), (0.1, 0.2, 0.3), (0.5, 0.25, 0.1))
    out = t(torch.full((3, 4, 4), 0.6))
    expected = torch.tensor([(0.6 - 0.1) / 0.5, (0.6 - 0.2) / 0.25, (0.6 - 0.3) / 0.1])
    assert torch.allclose(out[:, 0, 0], expected)
    assert t(torch.rand(2, 3, 8, 8)).shape == (2, 3, 4, 4)  # batches too


def test_center_crop_eval_drops_the_borders():
    t = CenterCropEval((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize=256, crop=224)
    img = torch.zeros(3, 256, 512)
    img[:, :, :100] = 1.0  # left border band: outside the central crop after resizing
    out = t(img)
    assert out.shape == (3, 224, 224)
    assert out.max() == 0.0
    # shorter side 128 -> 256 (x2), so 100 bright columns become 200, the crop starts at 144
    img = torch.zeros(3, 128, 256)
    img[:, :, 120:136] = 1.0  # a central band: columns 240..272 after resizing, 96..128 in crop
    out = t(img)
    assert out[0, 112, 110] == pytest.approx(1.0, abs=1e-5)
    assert out[0, 112, 20] == pytest.approx(0.0, abs=1e-5)


def test_bad_images_and_sizes_are_refused():
    t = ResizeNormalize((8, 8), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="RGB image"):
        t(torch.zeros(1, 10, 10))
    with pytest.raises(ValueError, match="float image"):
        t(torch.zeros(3, 10, 10, dtype=torch.uint8))
    assert parse_size(224) == (224, 224) and parse_size([96, 128]) == (96, 128)
    for bad in (True, 0, [1, 2, 3], "224"):
        with pytest.raises(ValueError, match="input_size"):
            parse_size(bad)


def test_transforms_pickle_for_dataloader_workers():
    t = ResizeNormalize((8, 8), (0.5,) * 3, (0.5,) * 3)
    assert pickle.loads(pickle.dumps(t)) == t
