"""Masks and maps go into the model's input space by the preprocessing's own resize and crop
(bench.models.input_space), checked against hand-computed geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.models.input_space import InputSpace, InputSpaceError
from bench.models.transforms import CenterCropEval, ResizeNormalize

NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_upsampled_single_pixel_becomes_the_2x2_block_by_hand():
    # 4x4 -> 8x8 bilinear (half-pixel centres): output pixel 2 samples input 0.75, so the four
    # output pixels around input pixel (1, 1) have coverage 0.75 * 0.75 = 0.5625 >= 0.5; their
    # neighbours 0.25 * 0.75 = 0.1875 at most.
    space = InputSpace(ResizeNormalize((8, 8), *NORM))
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1, 1] = True
    cover = space.fields(mask[:, None].float())[0, 0]
    assert cover[2, 2].item() == pytest.approx(0.5625, abs=1e-5)
    assert cover[1, 2].item() == pytest.approx(0.1875, abs=1e-5)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:4, 2:4] = True
    assert torch.equal(space.masks(mask)[0], expected)


def test_center_crop_takes_exactly_the_cropped_window():
    # 256x512: the shorter side is already 256 (no resize), so the 224 crop starts at
    # row (256 - 224) // 2 = 16 and column (512 - 224) // 2 = 144.
    space = InputSpace(CenterCropEval(*NORM, resize=256, crop=224))
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 256, 512, generator=g) > 0.5
    out = space.masks(masks)
    assert torch.equal(out, masks[:, 16:240, 144:368])
    maps = torch.rand(2, 256, 512, generator=g)
    assert torch.allclose(space.maps(maps), maps[:, 16:240, 144:368], atol=1e-5)


def test_resize_matches_the_images_own_resize():
    # The probe recovers exactly the antialiased bilinear resize the image goes through.
    space = InputSpace(ResizeNormalize((24, 40), *NORM))
    maps = torch.randn(3, 60, 90, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(maps[:, None], size=(24, 40), mode="bilinear", align_corners=False, antialias=True)[:, 0]
    assert torch.allclose(space.maps(maps), expected, atol=1e-5)


def test_identity_preprocessing_leaves_masks_alone():
    space = InputSpace(lambda x: x)
    masks = torch.rand(2, 96, 96, generator=torch.Generator().manual_seed(2)) > 0.7
    assert torch.equal(space.masks(masks), masks)


def test_a_preprocessing_that_takes_one_image_at_a_time_works():
    def one_only(x):
        if x.ndim != 3:
            raise ValueError("one image please")
        return (x[:, ::2, ::2] - 0.5) / 0.25

    space = InputSpace(one_only)
    masks = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5
    assert torch.equal(space.masks(masks), masks[:, ::2, ::2])


@pytest.mark.parametrize(
    "fn, problem",
    [
        (lambda x: x.clamp(0.2, 0.8), "not linear"),
        (lambda x: x**2.2, "not linear"),
        (lambda x: x * torch.linspace(0.5, 1.0, x.shape[-1]), "does not stay constant"),
    ],
)
def test_a_nonlinear_preprocessing_is_refused_by_name(fn, problem):
    space = InputSpace(fn, name="python:my.model")
    with pytest.raises(InputSpaceError, match=rf"python:my.model.*{problem}"):
        space.masks(torch.zeros(1, 8, 8, dtype=torch.bool))
