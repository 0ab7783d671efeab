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
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .spec import DecoderSpec, LayerSpec, QuantizedTensor

#: Fixed-point fraction bits of the decoder's activations (values in image units of 0..1).
ACTIVATION_FRACTION_BITS = 12
_EXACT_LIMIT = float(2**52)
#: Below this bound on a layer's sums (in units of its integers), float32 holds them exactly
#: too, and its matrix products take about half the time of float64's: the first layer of
#: every network ccnn makes, whose input is the small integers of the latent.
SINGLE_LIMIT = float(2**24)


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


def row_reach(layer: LayerSpec) -> tuple[int, int]:
    """(lowest, highest) input-row shift of the layer's taps: phase row i reads rows i+low .. i+high.

    Output row ``s*i + p`` of the layer depends on input rows ``i + shift`` only (the same holds
    for columns), so a band of output rows needs the input rows it covers widened by this reach:
    the halo of :func:`band_plan`.
    """
    shifts = [shift for phase in _phase_taps(layer) for _, shift in phase]
    return min(shifts), max(shifts)


def input_margin(layer: LayerSpec) -> int:
    """Zeros needed around a layer's input so that every shifted view of it stays inside."""
    low, high = row_reach(layer)
    return max(0, -low, high)


#: Values a strip of :func:`phase_convolution` holds at once (2 MB of float64: it stays in cache).
_STRIP = 1 << 18

#: What :func:`phase_convolution` hands its consumer: phase (py, px), the first row of the
#: strip, and the values (C', rows, w) of that phase there (a scratch array, reused afterwards).
Emit = Callable[[int, int, int, np.ndarray], None]


#: Each output phase's taps: (py, px) -> [(ky, kx, row shift, column shift), ...].
PhaseTaps = dict[tuple[int, int], list[tuple[int, int, int, int]]]


def phase_convolution(
    padded: np.ndarray,
    margin: int,
    weight: np.ndarray,
    layer: LayerSpec,
    emit: Emit,
    rows: tuple[int, int] | None = None,
) -> None:
    """The transposed convolution of a zero-padded input, phase by phase, a strip of rows at a time.

    ``padded`` is the input (C, h, w) with at least :func:`input_margin` zeros on every side
    (``margin`` of them), float64 holding integers; ``weight`` is (C, C', k, k), as torch stores
    a transposed convolution's weight. ``emit(py, px, top, values)`` receives, for rows ``top``
    to ``top + rows - 1`` of phase (py, px), ``values[:, i, j]`` = output sample
    ``(s*(top + i) + py, s*j + px)`` of the layer: the full transposed convolution cropped by
    the layer's padding, zero where the kernel is narrower than the stride. Every output
    sample is emitted once, while its strip is still in cache. ``rows`` = (first, end) limits
    the phase rows computed to ``first <= top + i < end`` (default: every row of the input);
    phase row ``i`` reads the input rows ``i + shift`` (:func:`row_reach`), which must lie inside
    ``padded`` once its margin is counted, so a band of an image (:func:`restore_exact`) needs
    only its own rows and their halo.

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
    first, end = rows if rows is not None else (0, padded.shape[1] - 2 * margin)
    if padded.shape[0] <= layer.channels:
        _stacked_tap_strips(padded, margin, weight, layer, taps, emit, first, end)
    else:
        _every_tap_strips(padded, margin, weight, layer, taps, emit, first, end)


def _stacked_tap_strips(
    padded: np.ndarray,
    margin: int,
    weight: np.ndarray,
    layer: LayerSpec,
    taps: PhaseTaps,
    emit: Emit,
    first: int,
    end: int,
) -> None:
    """Per phase and strip, one matrix product of the phase's taps with the shifted views stacked."""
    channels, _, padded_w = padded.shape
    height, width = end - first, padded_w - 2 * margin
    out_channels = layer.channels
    most = max(len(phase_taps) for phase_taps in taps.values())
    strip = max(1, _STRIP // (max(most * channels, out_channels) * width))
    # the stacked views are copies, so they take the weights' dtype (the sums') on the way
    stacked = np.empty(most * channels * min(strip, height) * width, dtype=weight.dtype)
    values = np.empty(out_channels * min(strip, height) * width, dtype=weight.dtype)
    matrices = {}
    for (py, px), phase_taps in taps.items():
        # (C', T * C): the weights of this phase's taps
        matrix = np.zeros((out_channels, len(phase_taps), channels), dtype=weight.dtype)
        for t, (ky, kx, _, _) in enumerate(phase_taps):
            matrix[:, t] = weight[:, :, ky, kx].T
        matrices[(py, px)] = matrix.reshape(out_channels, len(phase_taps) * channels)
    for top in range(first, end, strip):
        rows = min(strip, end - top)
        for (py, px), phase_taps in taps.items():
            out = values[: out_channels * rows * width].reshape(out_channels, rows, width)
            if not phase_taps:
                out[...] = 0.0  # a kernel narrower than the stride leaves this phase at zero
            else:
                block = stacked[: len(phase_taps) * channels * rows * width]
                block = block.reshape(len(phase_taps), channels, rows, width)
                for t, (_, _, dy, dx) in enumerate(phase_taps):
                    row = margin + dy + top
                    block[t] = padded[:, row : row + rows, margin + dx : margin + dx + width]
                np.matmul(
                    matrices[(py, px)],
                    block.reshape(len(phase_taps) * channels, rows * width),
                    out=out.reshape(out_channels, rows * width),
                )
            emit(py, px, top, out)


def _every_tap_strips(
    padded: np.ndarray,
    margin: int,
    weight: np.ndarray,
    layer: LayerSpec,
    taps: PhaseTaps,
    emit: Emit,
    first: int,
    end: int,
) -> None:
    """Per strip, one matrix product of every tap; each phase then adds its taps' shifted views."""
    channels, _, padded_w = padded.shape
    height, width = end - first, padded_w - 2 * margin
    out_channels, kernel = layer.channels, layer.kernel
    low, high = row_reach(layer)
    reach = high - low  # input rows a strip needs beyond its own count
    matrix = weight.transpose(2, 3, 1, 0).reshape(kernel * kernel * out_channels, channels)
    # an input stored in float32 (integers below 2**24) summed in float64: converted a strip at a time
    same = padded.dtype == weight.dtype
    strip = max(1, _STRIP // (max(matrix.shape[0], 0 if same else channels) * padded_w))
    buffer = np.empty(matrix.shape[0] * (min(strip, height) + reach) * padded_w, dtype=weight.dtype)
    values = np.empty(out_channels * min(strip, height) * width, dtype=weight.dtype)
    converted = np.empty(0 if same else channels * (min(strip, height) + reach) * padded_w)
    for top in range(first, end, strip):
        rows = min(strip, end - top)
        # the input rows this strip reads: margin + top + low .. margin + top + rows - 1 + high
        source = padded[:, margin + top + low : margin + top + rows + high].reshape(channels, -1)
        if not same:
            widened = converted[: source.size].reshape(source.shape)
            np.copyto(widened, source)
            source = widened
        products = buffer[: matrix.shape[0] * source.shape[1]].reshape(matrix.shape[0], source.shape[1])
        np.matmul(matrix, source, out=products)
        products = products.reshape(kernel, kernel, out_channels, rows + reach, padded_w)
        out = values[: out_channels * rows * width].reshape(out_channels, rows, width)
        for (py, px), phase_taps in taps.items():
            if not phase_taps:
                out[...] = 0.0  # a kernel narrower than the stride leaves this phase at zero
            for t, (ky, kx, dy, dx) in enumerate(phase_taps):
                row = dy - low
                view = products[ky, kx, :, row : row + rows, margin + dx : margin + dx + width]
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

    A band (:func:`restore_exact`) computes a few rows beyond those it keeps (a phase row covers
    ``stride`` output rows) and holds only some rows of the output: phase row 0 of the strips is
    row ``base`` of the layer's input, output rows ``keep`` = (first, end) are kept, and output
    row ``origin`` goes to row ``offset`` of ``target``. Only the first ``width`` output columns
    are kept (the pixels are cropped to the image).
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
    ) -> None:
        self.target, self.offset, self.stride = target, offset, stride
        self.scale, self.bias, self.slope, self.grid = scale, bias[:, None, None], slope, grid
        self.spare, self.wide = np.empty(0), np.empty(0)
        self.base, self.origin = 0, 0
        #: float64 (C, H, W) values added to the last layer's before rounding (a clip's
        #: previous frame under a residual); None for an image
        self.addend: np.ndarray | None = None
        self.keep = (0, (target.shape[1] - 2 * offset))
        self.width = target.shape[2] - 2 * offset

    def __call__(self, py: int, px: int, top: int, values: np.ndarray) -> None:
        stride, offset = self.stride, self.offset
        # the output rows of this strip that are kept: stride * (base + top + i) + py in keep
        row = self.base + top
        first = max(0, -((py - self.keep[0]) // stride) - row)
        end = min(values.shape[1], -((py - self.keep[1]) // stride) - row)
        columns = min(values.shape[2], -((px - self.width) // stride))
        if first >= end or columns <= 0:
            return
        if first > 0 or end < values.shape[1] or columns < values.shape[2]:
            values = values[:, first:end, :columns]
        if values.dtype != np.float64:
            # float32 sums, exact integers (:data:`SINGLE_LIMIT`): the same numbers in float64
            if self.wide.size < values.size:
                self.wide = np.empty(values.size)
            wide = self.wide[: values.size].reshape(values.shape)
            if self.scale is not None:
                np.multiply(values, self.scale, out=wide, dtype=np.float64)
            else:
                np.copyto(wide, values)
            values = wide
        elif self.scale is not None:
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
        at = offset + stride * (row + first) + py - self.origin
        rows = slice(at, at + stride * (values.shape[1] - 1) + 1, stride)
        cols = slice(offset + px, offset + px + stride * (columns - 1) + 1, stride)
        if self.grid is None:  # the last layer: pixels
            values *= 255.0
            if self.addend is not None:  # a clip's predicted frame: the residual added to the base
                values += self.addend[:, rows, cols]
            # clip(round(v)) as rint(clip(v)), stored as uint8: the bounds are integers, and
            # np.round of float64 is np.rint
            np.clip(values, 0, 255, out=values)
            np.rint(values, out=self.target[:, rows, cols], casting="unsafe")
        else:
            if self.grid != 1.0:
                values *= self.grid
            np.round(values, out=self.target[:, rows, cols])


#: Most float64 values a band's layer output may hold (32 MB): bands keep a large image's
#: peak memory bounded by its width (docs/decisions.md, "Banded decoding").
BAND_VALUES = 1 << 22


@dataclass(frozen=True)
class Band:
    """One horizontal band of a decode: the rows each layer's input holds and computes.

    ``held[l]`` = (first, end): the rows of layer l's input the band holds exactly (those of
    the latent for l = 0, of layer l-1's output after); ``computed[l]`` = (first, end): the
    phase rows of layer l it computes (output rows ``stride * first`` to ``stride * end - 1``);
    ``rows`` = (first, end): the output rows of the last layer it keeps.
    """

    held: tuple[tuple[int, int], ...]
    computed: tuple[tuple[int, int], ...]
    rows: tuple[int, int]


def band_of(layers: tuple[LayerSpec, ...], latent_height: int, first: int, end: int) -> Band:
    """The band that yields output rows first..end-1 of the last layer, its halo from the taps.

    Walking back from the output: a layer's output rows o need its phase rows o // s, which
    read input rows o // s + low .. o // s + high (:func:`row_reach`), cut to the input (rows
    outside it are the zeros every layer pads with, in a band as in the whole image). Those
    input rows are the previous layer's kept output rows, and so on down to the latent. Every
    value a band keeps is computed from exact values of the rows it reads, so it is the
    number the whole-image decode computes.
    """
    heights = [latent_height]
    for layer in layers[:-1]:
        heights.append(heights[-1] * layer.stride)
    held, computed = [], []
    need = (first, end)
    for layer, height in zip(reversed(layers), reversed(heights)):
        low, high = row_reach(layer)
        top, bottom = need[0] // layer.stride, (need[1] - 1) // layer.stride + 1
        computed.append((top, bottom))
        need = (min(height, max(0, top + low)), max(0, min(height, bottom - 1 + high + 1)))
        held.append(need)
    return Band(held=tuple(reversed(held)), computed=tuple(reversed(computed)), rows=(first, end))


def band_height(spec: DecoderSpec, latent_width: int) -> int:
    """Latent rows per band: as many as keep every layer's band output within :data:`BAND_VALUES`."""
    per_row, stride, width = spec.latent_channels * (latent_width + 2), 1, latent_width
    for layer in spec.layers:
        stride, width = stride * layer.stride, width * layer.stride
        per_row = max(per_row, layer.channels * stride * (width + 2 * MAX_MARGIN))
    return max(1, BAND_VALUES // per_row)


#: Margin assumed by :func:`band_height` (the networks ccnn makes have kernels of at most 4
#: per stride-2 layer: a margin of 1; a wider one only makes the band's arrays a little larger).
MAX_MARGIN = 1


def restore_exact(
    spec: DecoderSpec,
    params: list[QuantizedTensor],
    latent: np.ndarray,
    size: tuple[int, int] | None = None,
    band: int | None = None,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Decode an integer latent (L, h, w) with quantized parameters into uint8 pixels (H, W, C).

    Per layer: value = sum * (input step * weight step) + bias, Leaky ReLU, then, between
    layers, value * 2**12 rounded (the next layer's integers); the last layer's value times 255,
    rounded and clipped, is the pixel. The element-wise steps run on each strip that
    :func:`phase_convolution` emits, while it is in cache, and write straight into the next
    layer's zero-padded input (or the pixels).

    The image is restored in horizontal bands of ``band`` latent rows (default
    :func:`band_height`), each through every layer with the halo of rows its taps reach
    (:func:`band_of`), so that the float64 arrays held at once are those of one band, whatever
    the image's height; a band's pixels are those of the whole image, bit for bit. ``size`` =
    (H, W) crops the pixels (default: the whole stride-multiple the latent covers).
    ``base`` (uint8 H x W x C, at least the output's size), when given, is added to the last
    layer's values times 255 before they are rounded and clipped: a clip's predicted frame is
    the previous decoded frame plus the residual the network restores.

    Where the layer's scale (and, between layers, the grid's 2**12) is a power of two, which is
    always but for a byte latent's 1/255, it is folded into the weights and the bias: a power
    of two commutes with every rounding of these float64 operations (nothing here overflows or
    becomes subnormal) and keeps the products and their sums exact integers times it, so the
    numbers are those of scaling after the sum.
    """
    _, height, width = latent.shape
    stride = spec.latent_stride
    out_h, out_w = size if size is not None else (height * stride, width * stride)
    pixels = np.empty((out_h, out_w, spec.layers[-1].channels), dtype=np.uint8)
    layers = _prepare(spec, params)
    rows = band if band is not None else band_height(spec, width)
    buffers = _Buffers()
    addend = None if base is None else base.transpose(2, 0, 1).astype(np.float64)
    for top in range(0, height, rows):
        first, end = top * stride, min(out_h, (top + rows) * stride)
        if first < end:
            band_rows = band_of(spec.layers, height, first, end)
            _restore_band(spec, layers, latent, band_rows, pixels, buffers, addend)
    return pixels


class _Buffers:
    """Each layer's band input, kept from band to band: touched memory, and zero where it must be.

    A fresh array costs a page fault per 4 kB at its first write, a third of a Kodak-size
    restore; the bands of an image have (nearly) the same shapes, so each layer's array is
    allocated once and reused. A band writes every value of its array's inside (the rows it
    holds, every column) and nothing around it but the rows below, which are zeroed again.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple[int, type], np.ndarray] = {}

    def zeroed(self, key: int, channels: int, rows: int, width: int, margin: int, dtype: type) -> np.ndarray:
        """A (channels, rows + 2*margin, width + 2*margin) array whose margins are zero."""
        shape = (channels, rows + 2 * margin, width + 2 * margin)
        array = self.arrays.get((key, dtype))
        if array is None or array.shape[1] < shape[1]:
            array = self.arrays[(key, dtype)] = np.zeros(shape, dtype)
            return array
        view = array[:, : shape[1]]
        view[:, margin + rows :] = 0.0  # rows a larger band held before
        return view


def _storage(largest: float) -> type:
    """float32 for a layer input of integers of magnitude at most ``largest`` below 2**24, else float64.

    float32 holds those integers exactly, in half the bytes: the activations between layers are
    written a strided phase at a time, and half the bytes make that write about twice as fast.
    """
    return np.float32 if largest < SINGLE_LIMIT else np.float64


def _dtype(largest: float, layer: _Layer) -> type:
    """float32 for a layer input whose sums float32 holds exactly (:data:`SINGLE_LIMIT`), else float64.

    Its values are integers of magnitude at most ``largest``, the weights integers whose
    magnitudes sum to at most ``per_output`` per output: every partial sum of their products,
    in any order, is an integer below the bound, which float32 holds exactly.
    """
    single = largest * layer.per_output < SINGLE_LIMIT and layer.per_output < SINGLE_LIMIT
    return np.float32 if single else np.float64


@dataclass(frozen=True)
class _Layer:
    """A layer's weights and bias as the restoring network uses them (see :func:`_prepare`).

    ``weight`` is folded with ``factor`` (the scale, times the grid between layers) where that
    is a power of two; ``ints`` are the integer weights as float32, for float32 sums, which
    are scaled by ``factor`` afterwards, in float64 (the same numbers: a power of two, or the
    unfolded scale, applied to the same exact sum).
    """

    weight: np.ndarray
    ints: np.ndarray
    bias: np.ndarray
    bias_bound: float
    per_output: float
    scale: float
    folded: bool
    factor: float


def _prepare(spec: DecoderSpec, params: list[QuantizedTensor]) -> list[_Layer]:
    """Each layer's float64 weights, folded with its scale where that is a power of two."""
    in_step = spec.latent_mode.step
    grid = 2.0**ACTIVATION_FRACTION_BITS
    prepared = []
    for i in range(len(spec.layers)):
        weight_q, bias_q = params[2 * i], params[2 * i + 1]
        weight = weight_q.ints.astype(np.float64)
        per_output = float(np.abs(weight).sum(axis=(0, 2, 3)).max())
        scale = in_step * 2.0**-weight_q.exponent
        after = 1.0 if i == len(spec.layers) - 1 else grid  # the factor applied after the activation
        bias = bias_q.values()
        ints = weight.astype(np.float32)
        folded = _is_power_of_two(scale * after)
        if folded:
            weight *= scale * after
            bias = bias * after
        bound = float(np.abs(bias_q.values()).max(initial=0.0))
        factor = scale * after if folded else scale
        prepared.append(_Layer(weight, ints, bias, bound, per_output, scale, folded, factor))
        in_step = 1.0 / grid
    return prepared


def _restore_band(
    spec: DecoderSpec,
    layers: list[_Layer],
    latent: np.ndarray,
    band: Band,
    pixels: np.ndarray,
    buffers: _Buffers,
    addend: np.ndarray | None = None,
) -> None:
    """Restore one band's pixels into ``pixels``, checking that its sums stay exact.

    The check bounds each layer's input magnitude from the band's latent through the layers,
    and where that bound is not good enough takes the real maximum of the band's input; every
    row of every layer's input lies in some band, so the bands together check what the whole
    image would.
    """
    grid = 2.0**ACTIVATION_FRACTION_BITS
    margin = input_margin(spec.layers[0])
    first, end = band.held[0]
    channels, _, width = latent.shape
    largest = float(np.abs(latent[:, first:end]).max())  # of |x|, or a bound on it
    x = buffers.zeroed(0, channels, end - first, width, margin, _storage(largest))
    x[:, margin : margin + end - first, margin : margin + width] = latent[:, first:end]
    exact_largest = True
    for i, (layer, prepared) in enumerate(zip(spec.layers, layers)):
        per_output = prepared.per_output
        if largest * per_output >= _EXACT_LIMIT and not exact_largest:
            largest = float(np.abs(x).max())  # the bound was not good enough: the real maximum
        if largest * per_output >= _EXACT_LIMIT:
            raise FormatError("decoder weights are out of the range the decoder computes exactly")
        sums = _dtype(largest, prepared)
        last = i == len(spec.layers) - 1
        width *= layer.stride
        if last:
            target, offset, origin = pixels.transpose(2, 0, 1), 0, 0  # (C, H, W) view of the pixels
            keep = band.rows
        else:
            # a bound on the next input's magnitude: |sum| <= largest * per_output, then the
            # scale, the bias, an activation that only shrinks (slope <= 1) and the rounding
            # (each float64 step off by at most one part in 2**52; 1e-9 covers them)
            largest = (largest * per_output * prepared.scale + prepared.bias_bound) * grid
            largest = largest * max(1.0, abs(spec.slope)) * (1.0 + 1e-9) + 1.0
            exact_largest = False
            offset = input_margin(spec.layers[i + 1])
            keep = band.held[i + 1]
            origin = keep[0]
            rows = keep[1] - keep[0]
            target = buffers.zeroed(i + 1, layer.channels, rows, width, offset, _storage(largest))
        single = sums == np.float32
        finish = _Finish(
            target,
            offset,
            layer.stride,
            # float32 sums are of the integer weights: their scale (folded or not) comes after
            scale=prepared.factor if single else None if prepared.folded else prepared.scale,
            bias=prepared.bias,
            slope=spec.slope if not last or spec.output_activation else None,
            grid=None if last else (1.0 if prepared.folded else grid),
        )
        finish.base, finish.keep, finish.origin = band.held[i][0], keep, origin
        finish.addend = addend if last else None
        computed = band.computed[i]
        held = band.held[i][0]
        weight = prepared.ints if single else prepared.weight
        phase_convolution(x, margin, weight, layer, finish, (computed[0] - held, computed[1] - held))
        x, margin = target, offset
