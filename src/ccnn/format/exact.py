"""The decoder's restoring network, exact in numpy.

Weights are integers times a power-of-two step and activations are integers on a fixed-point
grid, so every transposed convolution is a sum of integer products held exactly in float64
(the sums are checked to stay below 2**52). Sums of exact integers do not depend on the order
of summation, so the decoded pixels are the same for any thread count, BLAS or machine, and
the same as the encoder's own check of them.

A stride-s transposed convolution is computed as s x s ordinary convolutions, one per output
phase (the output samples at rows = py mod s and columns = px mod s), each of which sums only
the kernel taps that land on its phase: nothing is computed for the samples the layer's
padding crops away, and each output sample is written once, so the element-wise steps that
follow run once over each value, in cache-sized blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import FormatError
from .spec import DecoderSpec, LayerSpec, QuantizedTensor

#: Fixed-point fraction bits of the decoder's activations (values in image units of 0..1).
ACTIVATION_FRACTION_BITS = 12
_EXACT_LIMIT = float(2**52)


def _phase_taps(layer: LayerSpec) -> list[list[tuple[int, int]]]:
    """For each output phase p = 0..s-1 (along one axis): its (kernel tap, input shift) pairs.

    Output sample ``s*i + p`` of the cropped layer is sample ``s*i + p + before`` of the full
    transposed convolution, which input ``j`` reaches through tap ``k`` when ``s*j + k`` equals
    it: with ``q, r = divmod(p + before, s)``, the taps ``k = r + s*m`` (m >= 0, k < kernel)
    from input ``j = i + q - m``, the shift ``q - m``.
    """
    before, _ = layer.padding
    phases = []
    for phase in range(layer.stride):
        q, r = divmod(phase + before, layer.stride)
        phases.append([(k, q - (k - r) // layer.stride) for k in range(r, layer.kernel, layer.stride)])
    return phases


def input_margin(layer: LayerSpec) -> int:
    """Zeros needed around a layer's input so that every shifted view of it stays inside."""
    shifts = [shift for phase in _phase_taps(layer) for _, shift in phase]
    return max([0] + [abs(shift) for shift in shifts])


#: Values a strip of :func:`phase_convolution` holds at once (2 MB of float64: it stays in cache).
_STRIP = 1 << 18

#: What :func:`phase_convolution` hands its consumer: phase (py, px), the first row of the
#: strip, and the values (C', rows, w) of that phase there (a scratch array, reused afterwards).
Emit = Callable[[int, int, int, np.ndarray], None]


#: Each output phase's taps: (py, px) -> [(ky, kx, row shift, column shift), ...].
PhaseTaps = dict[tuple[int, int], list[tuple[int, int, int, int]]]


def phase_convolution(
    padded: np.ndarray, margin: int, weight: np.ndarray, layer: LayerSpec, emit: Emit
) -> None:
    """The transposed convolution of a zero-padded input, phase by phase, a strip of rows at a time.

    ``padded`` is the input (C, h, w) with at least :func:`input_margin` zeros on every side
    (``margin`` of them), float64 holding integers; ``weight`` is (C, C', k, k), as torch stores
    a transposed convolution's weight. ``emit(py, px, top, values)`` receives, for rows ``top``
    to ``top + rows - 1`` of phase (py, px), ``values[:, i, j]`` = output sample
    ``(s*(top + i) + py, s*j + px)`` of the layer: the full transposed convolution cropped by
    the layer's padding, zero where the kernel is narrower than the stride. Every output
    sample is emitted once, while its strip is still in cache.

    With no more input than output channels, a phase's strip is one matrix product of its T
    taps (C', T*C) with the T shifted views of the input stacked (T*C, rows*w); with more, one
    matrix product of every tap (k*k*C', C) with the strip's input rows gives every tap's
    products, and each phase adds the shifted views of its own taps' products, which is less
    to write when C' is small (the last layer's three channels).
    """
    phases = _phase_taps(layer)
    # each phase's taps: (ky, kx, row shift, column shift)
    taps: PhaseTaps = {
        (py, px): [(ky, kx, dy, dx) for ky, dy in taps_y for kx, dx in taps_x]
        for py, taps_y in enumerate(phases)
        for px, taps_x in enumerate(phases)
    }
    if padded.shape[0] <= layer.channels:
        _stacked_tap_strips(padded, margin, weight, layer, taps, emit)
    else:
        _every_tap_strips(padded, margin, weight, layer, taps, emit)


def _stacked_tap_strips(
    padded: np.ndarray, margin: int, weight: np.ndarray, layer: LayerSpec, taps: PhaseTaps, emit: Emit
) -> None:
    """Per phase and strip, one matrix product of the phase's taps with the shifted views stacked."""
    channels, padded_h, padded_w = padded.shape
    height, width = padded_h - 2 * margin, padded_w - 2 * margin
    out_channels = layer.channels
    most = max(len(phase_taps) for phase_taps in taps.values())
    strip = max(1, _STRIP // (max(most * channels, out_channels) * width))
    stacked = np.empty(most * channels * min(strip, height) * width)
    values = np.empty(out_channels * min(strip, height) * width)
    for (py, px), phase_taps in taps.items():
        # (C', T * C): the weights of this phase's taps
        matrix = np.zeros((out_channels, len(phase_taps), channels))
        for t, (ky, kx, _, _) in enumerate(phase_taps):
            matrix[:, t] = weight[:, :, ky, kx].T
        matrix = matrix.reshape(out_channels, len(phase_taps) * channels)
        for top in range(0, height, strip):
            rows = min(strip, height - top)
            out = values[: out_channels * rows * width].reshape(out_channels, rows, width)
            if not phase_taps:
                out[...] = 0.0  # a kernel narrower than the stride leaves this phase at zero
            else:
                block = stacked[: len(phase_taps) * channels * rows * width]
                block = block.reshape(len(phase_taps), channels, rows, width)
                for t, (_, _, dy, dx) in enumerate(phase_taps):
                    first = margin + dy + top
                    block[t] = padded[:, first : first + rows, margin + dx : margin + dx + width]
                np.matmul(
                    matrix,
                    block.reshape(len(phase_taps) * channels, rows * width),
                    out=out.reshape(out_channels, rows * width),
                )
            emit(py, px, top, out)


def _every_tap_strips(
    padded: np.ndarray, margin: int, weight: np.ndarray, layer: LayerSpec, taps: PhaseTaps, emit: Emit
) -> None:
    """Per strip, one matrix product of every tap; each phase then adds its taps' shifted views."""
    channels, padded_h, padded_w = padded.shape
    height, width = padded_h - 2 * margin, padded_w - 2 * margin
    out_channels, kernel = layer.channels, layer.kernel
    matrix = weight.transpose(2, 3, 1, 0).reshape(kernel * kernel * out_channels, channels)
    strip = max(1, _STRIP // (matrix.shape[0] * padded_w))
    buffer = np.empty(matrix.shape[0] * (min(strip, height) + 2 * margin) * padded_w)
    values = np.empty(out_channels * min(strip, height) * width)
    for top in range(0, height, strip):
        rows = min(strip, height - top)
        source = padded[:, top : top + rows + 2 * margin].reshape(channels, -1)
        products = buffer[: matrix.shape[0] * source.shape[1]].reshape(matrix.shape[0], source.shape[1])
        np.matmul(matrix, source, out=products)
        products = products.reshape(kernel, kernel, out_channels, rows + 2 * margin, padded_w)
        out = values[: out_channels * rows * width].reshape(out_channels, rows, width)
        for (py, px), phase_taps in taps.items():
            if not phase_taps:
                out[...] = 0.0  # a kernel narrower than the stride leaves this phase at zero
            for t, (ky, kx, dy, dx) in enumerate(phase_taps):
                first = margin + dy
                view = products[ky, kx, :, first : first + rows, margin + dx : margin + dx + width]
                if t == 0:
                    np.copyto(out, view)
                else:
                    out += view
            emit(py, px, top, out)


def transposed_convolution(x: np.ndarray, weight: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """(C, h, w) -> (C', h*s, w*s): the transposed convolution aligned with a stride-s layer.

    ``weight`` is (C, C', k, k), as torch stores a transposed convolution's weight. The full
    output of size (h-1)*s + k is cropped by the layer's padding to exactly h*s (zero-padded
    at the end when the kernel is narrower than the stride).
    """
    channels, height, width = x.shape
    margin = input_margin(layer)
    padded = np.zeros((channels, height + 2 * margin, width + 2 * margin))
    padded[:, margin : margin + height, margin : margin + width] = x
    stride = layer.stride
    out = np.empty((layer.channels, height * stride, width * stride))

    def store(py: int, px: int, top: int, values: np.ndarray) -> None:
        out[:, stride * top + py : stride * (top + values.shape[1]) : stride, px::stride] = values

    phase_convolution(padded, margin, weight, layer, store)
    return out


def _is_power_of_two(value: float) -> bool:
    return value > 0.0 and math.frexp(value)[0] == 0.5


class _Finish:
    """The element-wise steps after a layer's sums, on the strips :func:`phase_convolution` emits.

    ``values`` (C', rows, w) of phase (py, px) become: values * scale (unless the scale is
    folded into the weights) + bias, Leaky ReLU if ``activation``; then either, between layers,
    times the grid (unless folded) and rounded into ``target`` (the next layer's input, with
    ``offset`` zeros around it), or, at the last layer, times 255, clipped and rounded into
    ``target`` (the pixels as C x H x W).
    """

    def __init__(
        self,
        target: np.ndarray,
        offset: int,
        stride: int,
        scale: float | None,
        bias: np.ndarray,
        slope: float | None,
        grid: float | None,
        base: np.ndarray | None = None,
    ) -> None:
        self.target, self.offset, self.stride = target, offset, stride
        self.base = base
        self.scale, self.bias, self.slope, self.grid = scale, bias[:, None, None], slope, grid
        self.spare = np.empty(0)

    def __call__(self, py: int, px: int, top: int, values: np.ndarray) -> None:
        if self.scale is not None:
            values *= self.scale
        values += self.bias
        if self.slope is not None:
            if 0.0 <= self.slope <= 1.0:
                # max(v, slope*v): for 0 <= slope <= 1 the numbers of where(v > 0, v, slope*v)
                if self.spare.size < values.size:
                    self.spare = np.empty(values.size)
                scaled = np.multiply(values, self.slope, out=self.spare[: values.size].reshape(values.shape))
                np.maximum(values, scaled, out=values)
            else:
                np.copyto(values, values * self.slope, where=~(values > 0))
        stride, offset = self.stride, self.offset
        first = offset + stride * top + py
        rows = slice(first, first + stride * (values.shape[1] - 1) + 1, stride)
        cols = slice(offset + px, self.target.shape[2] - offset, stride)
        if self.grid is None:  # the last layer: pixels
            values *= 255.0
            if self.base is not None:  # a clip's predicted frame: the residual added to the base
                values += self.base[:, rows, cols]
            # clip(round(v)) as rint(clip(v)), stored as uint8: the bounds are integers, and
            # np.round of float64 is np.rint
            np.clip(values, 0, 255, out=values)
            np.rint(values, out=self.target[:, rows, cols], casting="unsafe")
        else:
            if self.grid != 1.0:
                values *= self.grid
            np.round(values, out=self.target[:, rows, cols])


def restore_exact(
    spec: DecoderSpec, params: list[QuantizedTensor], latent: np.ndarray, base: np.ndarray | None = None
) -> np.ndarray:
    """Decode an integer latent (L, h, w) with quantized parameters into uint8 pixels (H, W, C).

    ``base`` (uint8 H x W x C, the latent's full size), when given, is added to the last
    layer's value times 255 before clipping and rounding: a clip's frame coded as a residual
    against a prediction (:mod:`ccnn.format.video`).

    Per layer: value = sum * (input step * weight step) + bias, Leaky ReLU, then, between
    layers, value * 2**12 rounded (the next layer's integers); the last layer's value times 255,
    rounded and clipped, is the pixel. The element-wise steps run on each strip that
    :func:`phase_convolution` emits, while it is in cache, and write straight into the next
    layer's zero-padded input (or the pixels).

    Where the layer's scale (and, between layers, the grid's 2**12) is a power of two, which is
    always but for a byte latent's 1/255, it is folded into the weights and the bias: a power
    of two commutes with every rounding of these float64 operations (nothing here overflows or
    becomes subnormal) and keeps the products and their sums exact integers times it, so the
    numbers are those of scaling after the sum.
    """
    in_step = spec.latent_mode.step
    layers = len(spec.layers)
    grid = 2.0**ACTIVATION_FRACTION_BITS
    channels, height, width = latent.shape
    margin = input_margin(spec.layers[0])
    x = np.zeros((channels, height + 2 * margin, width + 2 * margin))
    x[:, margin : margin + height, margin : margin + width] = latent
    largest = float(np.abs(latent).max()) if latent.size else 0.0  # of |x|, or a bound on it
    exact_largest = True
    pixels = np.empty(0, dtype=np.uint8)
    for i, layer in enumerate(spec.layers):
        weight_q, bias_q = params[2 * i], params[2 * i + 1]
        weight = weight_q.ints.astype(np.float64)
        per_output = float(np.abs(weight).sum(axis=(0, 2, 3)).max())
        if largest * per_output >= _EXACT_LIMIT and not exact_largest:
            largest = float(np.abs(x).max())  # the bound was not good enough: the real maximum
        if largest * per_output >= _EXACT_LIMIT:
            raise FormatError("decoder weights are out of the range the decoder computes exactly")
        last = i == layers - 1
        scale = in_step * 2.0**-weight_q.exponent
        after = 1.0 if last else grid  # the factor applied after the activation
        bias = bias_q.values()
        folded = _is_power_of_two(scale * after)
        if folded:
            weight *= scale * after
            bias = bias * after
        height, width = height * layer.stride, width * layer.stride
        if last:
            pixels = np.empty((height, width, layer.channels), dtype=np.uint8)
            target, offset = pixels.transpose(2, 0, 1), 0  # (C, H, W) view of the pixels
        else:
            # a bound on the next input's magnitude: |sum| <= largest * per_output, then the
            # scale, the bias, an activation that only shrinks (slope <= 1) and the rounding
            # (each float64 step off by at most one part in 2**52; 1e-9 covers them)
            largest = (largest * per_output * scale + float(np.abs(bias_q.values()).max(initial=0.0))) * grid
            largest = largest * max(1.0, abs(spec.slope)) * (1.0 + 1e-9) + 1.0
            exact_largest = False
            offset = input_margin(spec.layers[i + 1])
            target = np.zeros((layer.channels, height + 2 * offset, width + 2 * offset))
        finish = _Finish(
            target,
            offset,
            layer.stride,
            scale=None if folded else scale,
            bias=bias,
            slope=spec.slope if not last or spec.output_activation else None,
            grid=None if last else (1.0 if folded else grid),
            base=base.transpose(2, 0, 1).astype(np.float64) if last and base is not None else None,
        )
        phase_convolution(x, margin, weight, layer, finish)
        x, margin = target, offset
        in_step = 1.0 / grid
    return pixels
