"""The restoring layer's two ways of cropping the transposed convolution agree exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ccnn.encoder.model import restore_layer
from ccnn.format.spec import LayerSpec


@pytest.mark.parametrize(("kernel", "stride"), [(4, 2), (3, 2), (5, 1), (4, 1), (2, 4), (10, 4), (35, 8)])
def test_restore_layer_is_the_cropped_transposed_convolution(kernel: int, stride: int) -> None:
    """Whether it crops with the convolution's padding (symmetric cases) or by slicing, the
    layer maps h x w to h*s x w*s and keeps the same samples of the full transposed
    convolution: integer inputs and weights in float64, so equal means bit for bit."""
    generator = torch.Generator().manual_seed(kernel * 10 + stride)
    spec = LayerSpec(3, kernel, stride)
    x = torch.randint(-50, 50, (1, 5, 7, 9), generator=generator).double()
    weight = torch.randint(-20, 20, (5, 3, kernel, kernel), generator=generator).double()
    full = F.conv_transpose2d(x, weight, stride=stride)
    before, _ = spec.padding
    height, width = 7 * stride, 9 * stride
    short_w, short_h = width + before - full.shape[-1], height + before - full.shape[-2]
    full = F.pad(full, (0, max(short_w, 0), 0, max(short_h, 0)))
    expected = full[..., before : before + height, before : before + width]
    assert torch.equal(restore_layer(x, weight, spec), expected)
