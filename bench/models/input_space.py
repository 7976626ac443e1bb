"""Masks and maps at the original image resolution, taken into a model's input space.

An intervention removes a region *in the model's input* (after resizing, cropping and
normalising), and a faithfulness curve deletes pixels of the input in the order of a map, so
both need the object and context masks and the maps where the model input is: transformed by
exactly the resize and crop that made the input from the image.

:class:`InputSpace` reads that geometry off the bundle's own ``preprocess`` rather than from a
second description of it, so it cannot drift from what the model really sees. It assumes what
every preprocessing in groundbench is (:class:`bench.models.transforms.ResizeNormalize`,
:class:`~bench.models.transforms.CenterCropEval`, the harbor nets' identity): a *linear*
geometric map ``G`` (resize, antialias, crop, flip: each output pixel a fixed weighted sum of
input pixels, weights summing to 1) followed by a per-channel affine normalisation
``(x - mean) / std``. Then for a field ``f`` put in channel ``c`` of a 3-channel image,

    preprocess(f)_c = a_c * G(f) + b_c,   b = preprocess(0), a = preprocess(1) - preprocess(0),

so ``G(f) = (preprocess(f)_c - b_c) / a_c``. Three fields go through one call (one per
channel). The assumption is checked on first use for each image size: ``a`` and ``b`` must be
constant over the input (no vignette), ``a`` nonzero, and ``preprocess(0.5)`` and
``preprocess(0.1)`` on the line through ``preprocess(0)`` and ``preprocess(1)`` (linear: no
gamma, no clamping); otherwise :class:`InputSpaceError` names the model's preprocessing and
the check that failed.

Masks: ``G`` of a bool mask is its coverage of each input pixel (antialiased resizing gives
fractions at the border); a pixel belongs to the mask in input space when its coverage is
``>= 0.5`` (a pixel more than half covered). Maps: ``G`` of the map, no threshold (the values
are the bilinear/antialiased resample of the map, exactly as the image's pixels are).
"""

from __future__ import annotations

from typing import Callable

import torch


class InputSpaceError(ValueError):
    """The preprocessing is not a linear resize/crop followed by a per-channel affine map."""


# Tolerance of the linearity checks, relative to the normalisation's scale |a|: float32
# resizing of a constant image is exact to a few ulps; a gamma or a clamp misses by >1e-2.
_CHECK_TOL = 1e-4


class InputSpace:
    """The geometry of one model's ``preprocess``, applied to masks and maps (module docstring).

    ``preprocess`` takes a 3xHxW float image (or a Bx3xHxW batch; a callable that refuses
    batches is called image by image) and returns the model input. Calls run on the device of
    the fields given; a preprocessing that refuses that device is called on the CPU and its
    output moved back.
    """

    def __init__(self, preprocess: Callable[[torch.Tensor], torch.Tensor], name: str = "the model"):
        self.preprocess = preprocess
        self.name = name
        self._affine: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._batched: bool | None = None

    # -- the probe -----------------------------------------------------------------------

    def _call(self, images: torch.Tensor) -> torch.Tensor:
        """preprocess over a Bx3xHxW batch, batched when the callable allows it."""
        if self._batched is not False:
            try:
                out = self.preprocess(images)
                if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[0] == images.shape[0]:
                    self._batched = True
                    return out
            except (ValueError, RuntimeError, TypeError, IndexError):
                if self._batched:
                    raise
            self._batched = False
        return torch.stack([self.preprocess(img) for img in images])

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        try:
            return self._call(images)
        except (RuntimeError, TypeError) as exc:
            if images.device.type == "cpu":
                raise InputSpaceError(f"{self.name}: its preprocessing failed on a probe image ({exc})") from exc
            return self._call(images.cpu()).to(images.device)

    def affine(self, size: tuple[int, int], device: torch.device, dtype: torch.dtype = torch.float32):
        """(a, b): 3x1x1 each, ``preprocess(f)_c = a_c * G(f) + b_c`` for images of ``size``."""
        key = (tuple(size), str(device), dtype)
        if key not in self._affine:
            h, w = size
            probes = torch.stack(
                [torch.full((3, h, w), v, device=device, dtype=dtype) for v in (0.0, 1.0, 0.5, 0.1)]
            )
            zero, one, half, tenth = self._run(probes).to(dtype)
            a, b = one - zero, zero
            a_c = a.flatten(1).mean(dim=1)[:, None, None]
            b_c = b.flatten(1).mean(dim=1)[:, None, None]
            scale = a_c.abs().clamp(min=1e-12)
            problem = None
            if bool((a_c.abs() < 1e-8).any()):
                problem = "preprocess(1) equals preprocess(0) in some channel (no signal passes)"
            elif float(((a - a_c).abs() / scale).max()) > _CHECK_TOL or float(((b - b_c).abs() / scale).max()) > _CHECK_TOL:
                problem = "a constant image does not stay constant (not a resize/crop + per-channel normalisation)"
            elif max(
                float(((half - (zero + 0.5 * a)).abs() / scale).max()),
                float(((tenth - (zero + 0.1 * a)).abs() / scale).max()),
            ) > _CHECK_TOL:
                problem = "preprocess(0.5) or preprocess(0.1) is off the line through preprocess(0) and preprocess(1) (not linear)"
            if problem:
                raise InputSpaceError(
                    f"{self.name}: cannot take masks into its input space: {problem}; "
                    "interventions and faithfulness metrics need a preprocessing that is a "
                    "resize/crop followed by (x - mean) / std"
                )
            self._affine[key] = (a_c, b_c)
        return self._affine[key]

    # -- fields, masks, maps -------------------------------------------------------------

    def fields(self, fields: torch.Tensor) -> torch.Tensor:
        """``G`` applied to float fields BxKxHxW (any K) -> BxKxhxw, in the fields' dtype
        (float32 at least)."""
        if fields.ndim != 4:
            raise ValueError(f"fields must be BxKxHxW, got shape {tuple(fields.shape)}")
        dtype = fields.dtype if fields.dtype in (torch.float32, torch.float64) else torch.float32
        fields = fields.to(dtype)
        b, k, h, w = fields.shape
        a, off = self.affine((h, w), fields.device, dtype)
        pad = (-k) % 3
        if pad:
            fields = torch.cat([fields, fields.new_zeros((b, pad, h, w))], dim=1)
        # Three fields per probe image: (B * K/3) x 3 x H x W through one call.
        packed = fields.reshape(b * (k + pad) // 3, 3, h, w)
        out = (self._run(packed).to(dtype) - off) / a
        return out.reshape(b, k + pad, *out.shape[-2:])[:, :k]

    def masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Bool masks BxHxW (or BxKxHxW) -> bool masks in input space: coverage ``>= 0.5``."""
        squeeze = masks.ndim == 3
        fields = masks[:, None] if squeeze else masks
        out = self.fields(fields.float()) >= 0.5
        return out[:, 0] if squeeze else out

    def maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Float maps BxHxW at the original image resolution -> Bxhxw in input space."""
        return self.fields(maps[:, None])[:, 0]
