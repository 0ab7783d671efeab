"""The decoder's restoring network, exact in numpy.

Weights are integers times a power-of-two step and activations are integers on a fixed-point
grid, so every transposed convolution is a sum of integer products held exactly in float64
(the sums are checked to stay below 2**52). Sums of exact integers do not depend on the order
of summation, so the decoded pixels are the same for any thread count, BLAS or machine, and
the same as the encoder's own check of them.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .spec import DecoderSpec, LayerSpec, QuantizedTensor

#: Fixed-point fraction bits of the decoder's activations (values in image units of 0..1).
ACTIVATION_FRACTION_BITS = 12
_EXACT_LIMIT = float(2**52)


def transposed_convolution(x: np.ndarray, weight: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """(C, h, w) -> (C', h*s, w*s): the transposed convolution aligned with a stride-s layer.

    ``weight`` is (C, C', k, k), as torch stores a transposed convolution's weight. The full
    output of size (h-1)*s + k is cropped by the layer's padding to exactly h*s (zero-padded
    at the end when the kernel is narrower than the stride). Each kernel tap is one matrix
    product added into a strided view of the output.
    """
    channels, height, width = x.shape
    out_channels, kernel, stride = layer.channels, layer.kernel, layer.stride
    before, _ = layer.padding
    full_h = max((height - 1) * stride + kernel, before + height * stride)
    full_w = max((width - 1) * stride + kernel, before + width * stride)
    full = np.zeros((out_channels, full_h, full_w), dtype=np.float64)
    # every tap at once: (C' * k * k, C) @ (C, h * w)
    taps = weight.transpose(1, 2, 3, 0).reshape(out_channels * kernel * kernel, channels)
    products = taps @ x.reshape(channels, height * width)
    products = products.reshape(out_channels, kernel, kernel, height, width)
    rows_end, cols_end = (height - 1) * stride + 1, (width - 1) * stride + 1
    for ky in range(kernel):
        for kx in range(kernel):
            full[:, ky : ky + rows_end : stride, kx : kx + cols_end : stride] += products[:, ky, kx]
    return full[:, before : before + height * stride, before : before + width * stride]


def restore_exact(spec: DecoderSpec, params: list[QuantizedTensor], latent: np.ndarray) -> np.ndarray:
    """Decode an integer latent (L, h, w) with quantized parameters into uint8 pixels (H, W, C)."""
    x = latent.astype(np.float64)
    in_step = spec.latent_mode.step
    layers = len(spec.layers)
    grid = 2.0**ACTIVATION_FRACTION_BITS
    for i, layer in enumerate(spec.layers):
        weight_q, bias_q = params[2 * i], params[2 * i + 1]
        weight = weight_q.ints.astype(np.float64)
        per_output = np.abs(weight).sum(axis=(0, 2, 3)).max()
        if float(np.abs(x).max()) * per_output >= _EXACT_LIMIT:
            raise FormatError("decoder weights are out of the range the decoder computes exactly")
        value = transposed_convolution(x, weight, layer) * (in_step * 2.0**-weight_q.exponent)
        value += bias_q.values()[:, None, None]
        if i < layers - 1 or spec.output_activation:
            value = np.where(value > 0, value, value * spec.slope)
        if i < layers - 1:
            x = np.round(value * grid)
            in_step = 1.0 / grid
        else:
            x = value
    pixels = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))
