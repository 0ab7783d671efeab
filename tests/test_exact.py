"""The exact restoring network computes, phase by phase, the numbers of the plain scatter-add version."""

from __future__ import annotations

import numpy as np
import pytest

from ccnn.errors import FormatError
from ccnn.format import exact
from ccnn.format.exact import ACTIVATION_FRACTION_BITS, restore_exact, transposed_convolution
from ccnn.format.spec import DecoderSpec, LatentMode, LayerSpec, QuantizedTensor


def _reference_convolution(x: np.ndarray, weight: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """The full transposed convolution, every tap scattered into it, cropped by the padding."""
    _, height, width = x.shape
    kernel, stride = layer.kernel, layer.stride
    before, _ = layer.padding
    full_h = max((height - 1) * stride + kernel, before + height * stride)
    full_w = max((width - 1) * stride + kernel, before + width * stride)
    full = np.zeros((layer.channels, full_h, full_w))
    for ky in range(kernel):
        for kx in range(kernel):
            rows = slice(ky, ky + (height - 1) * stride + 1, stride)
            cols = slice(kx, kx + (width - 1) * stride + 1, stride)
            full[:, rows, cols] += np.einsum("co,chw->ohw", weight[:, :, ky, kx], x)
    return full[:, before : before + height * stride, before : before + width * stride]


def _reference_restore(spec: DecoderSpec, params: list[QuantizedTensor], latent: np.ndarray) -> np.ndarray:
    """The restoring network as first written: whole arrays, scale after the sum, where() for the ReLU."""
    x = latent.astype(np.float64)
    in_step = spec.latent_mode.step
    grid = 2.0**ACTIVATION_FRACTION_BITS
    for i, layer in enumerate(spec.layers):
        weight_q, bias_q = params[2 * i], params[2 * i + 1]
        value = _reference_convolution(x, weight_q.ints.astype(np.float64), layer)
        value = value * (in_step * 2.0**-weight_q.exponent)
        value += bias_q.values()[:, None, None]
        last = i == len(spec.layers) - 1
        if not last or spec.output_activation:
            value = np.where(value > 0, value, value * spec.slope)
        if not last:
            x = np.round(value * grid)
            in_step = 1.0 / grid
        else:
            x = value
    pixels = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


@pytest.mark.parametrize(
    ("kernel", "stride"), [(4, 2), (3, 2), (5, 1), (4, 1), (2, 4), (10, 4), (35, 8), (1, 1), (6, 4)]
)
@pytest.mark.parametrize(("channels", "out_channels"), [(3, 5), (5, 3), (4, 4), (1, 2)])
def test_transposed_convolution_is_the_cropped_full_one(
    kernel: int, stride: int, channels: int, out_channels: int
) -> None:
    rng = np.random.default_rng(kernel * 100 + stride * 10 + channels)
    layer = LayerSpec(out_channels, kernel, stride)
    for height, width in ((1, 1), (5, 7), (2, 9)):
        x = rng.integers(-50, 50, (channels, height, width)).astype(np.float64)
        weight = rng.integers(-20, 20, (channels, out_channels, kernel, kernel)).astype(np.float64)
        got = transposed_convolution(x, weight, layer)
        assert np.array_equal(got, _reference_convolution(x, weight, layer))


def _network(
    rng: np.random.Generator, layers: list[LayerSpec], latent_channels: int, mode: LatentMode
) -> tuple[DecoderSpec, list[QuantizedTensor]]:
    params, in_channels = [], latent_channels
    for layer in layers:
        shape = (in_channels, layer.channels, layer.kernel, layer.kernel)
        # steps that keep the activations near 1 (the pixels do not all saturate) and fine
        # enough that values land on ties of the rounding, where any other number would show
        exponent = int(np.ceil(np.log2(in_channels * layer.kernel**2))) + int(rng.integers(9, 12))
        params.append(QuantizedTensor(rng.integers(-512, 513, shape).astype(np.int32), exponent))
        params.append(QuantizedTensor(rng.integers(-900, 900, layer.channels).astype(np.int32), 10))
        in_channels = layer.channels
    spec = DecoderSpec(
        layers=tuple(layers),
        latent_channels=latent_channels,
        latent_stride=int(np.prod([layer.stride for layer in layers])),
        slope=0.1,
        latent_mode=mode,
        output_activation=False,
    )
    return spec, params


@pytest.mark.parametrize(
    ("layers", "latent_channels", "mode"),
    [
        ([LayerSpec(8, 4, 2), LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)], 8, LatentMode.INTEGER),  # small
        ([LayerSpec(16, 4, 2), LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)], 12, LatentMode.INTEGER),  # medium
        ([LayerSpec(24, 4, 2), LayerSpec(1, 4, 2)], 12, LatentMode.INTEGER),  # fine, gray
        ([LayerSpec(3, 10, 4)], 12, LatentMode.BYTE),  # paper: a byte latent's step is 1/255
        ([LayerSpec(6, 3, 2), LayerSpec(3, 2, 4)], 5, LatentMode.BYTE),
    ],
)
@pytest.mark.parametrize(
    ("slope", "output_activation"), [(0.1, False), (0.0, True), (1.0, True), (0.37, True), (1.5, True)]
)
def test_restore_is_the_reference_network(
    layers: list[LayerSpec], latent_channels: int, mode: LatentMode, slope: float, output_activation: bool
) -> None:
    rng = np.random.default_rng(len(layers) * 10 + latent_channels)
    spec, params = _network(rng, layers, latent_channels, mode)
    spec = DecoderSpec(**{**spec.__dict__, "slope": slope, "output_activation": output_activation})
    low, high = (0, 256) if mode is LatentMode.BYTE else (-6, 7)
    unsaturated = 0
    for height, width in ((3, 5), (1, 1), (9, 4)):
        latent = rng.integers(low, high, (latent_channels, height, width)).astype(np.int32)
        got = restore_exact(spec, params, latent)
        expected = _reference_restore(spec, params, latent)
        assert got.shape == expected.shape and got.dtype == np.uint8
        assert np.array_equal(got, expected)
        unsaturated += np.count_nonzero((got > 0) & (got < 255))
    assert unsaturated > 10  # the comparison sees real values, not only 0 and 255


def test_restore_refuses_sums_it_cannot_hold_exactly() -> None:
    spec, params = _network(np.random.default_rng(0), [LayerSpec(3, 4, 2)], 2, LatentMode.INTEGER)
    huge = QuantizedTensor(np.full(params[0].ints.shape, 2**30, dtype=np.int64), 0)
    with pytest.raises(FormatError):
        restore_exact(spec, [huge, params[1]], np.full((2, 3, 3), 2**20, dtype=np.int32))


@pytest.mark.parametrize("mode", [LatentMode.INTEGER, LatentMode.BYTE])
@pytest.mark.parametrize(("kernel", "stride"), [(4, 2), (3, 2), (10, 4)])
def test_restore_rounds_hidden_activations_as_the_reference(
    mode: LatentMode, kernel: int, stride: int
) -> None:
    """A probe makes every hidden activation visible: the last layer (1 x 1) maps one step of
    the activation grid to about one grey level, so a hidden value rounded the other way, or
    computed one unit off, changes a pixel. The hidden layer's fine weight step puts many of
    its values exactly on ties of the rounding."""
    rng = np.random.default_rng(kernel * 10 + stride)
    latent_channels, hidden = 5, 3
    layers = [LayerSpec(hidden, kernel, stride), LayerSpec(3, 1, 1)]
    spec, params = _network(rng, layers, latent_channels, mode)
    low, high = (0, 256) if mode is LatentMode.BYTE else (-6, 7)
    latent = rng.integers(low, high, (latent_channels, 12, 9)).astype(np.int32)
    # the hidden layer's weight step puts its activations within about +-1/32 (+-128 grid steps)
    sums = _reference_convolution(latent.astype(np.float64), params[0].ints.astype(np.float64), layers[0])
    exponent = int(np.round(np.log2(sums.std() * spec.latent_mode.step * 128)))
    params[0] = QuantizedTensor(params[0].ints, exponent)
    params[1] = QuantizedTensor(rng.integers(-20, 21, hidden).astype(np.int32), 10)
    # the probe: pixel = (activation * 16 + 1/2) * 255, one grid step = 255/256 grey levels
    params[2] = QuantizedTensor(np.eye(hidden, 3, dtype=np.int32).reshape(hidden, 3, 1, 1), -4)
    params[3] = QuantizedTensor(np.full(3, 512, dtype=np.int32), 10)
    got = restore_exact(spec, params, latent)
    assert np.array_equal(got, _reference_restore(spec, params, latent))
    assert np.count_nonzero((got > 0) & (got < 255)) > 0.9 * got.size
    assert min(len(np.unique(got[..., c])) for c in range(3)) > 10
    assert len(np.unique(got)) > 60


@pytest.mark.parametrize("strip", [1, 200, 5000])
def test_strips_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch, strip: int) -> None:
    """The convolution's strips (a few rows at a time) are a matter of speed only."""
    monkeypatch.setattr(exact, "_STRIP", strip)
    rng = np.random.default_rng(strip)
    for layers, channels in (([LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)], 4), ([LayerSpec(2, 10, 4)], 6)):
        spec, params = _network(rng, layers, channels, LatentMode.INTEGER)
        latent = rng.integers(-6, 7, (channels, 11, 7)).astype(np.int32)
        assert np.array_equal(restore_exact(spec, params, latent), _reference_restore(spec, params, latent))


@pytest.mark.parametrize("band", [1, 2, 3, 5])
@pytest.mark.parametrize(
    ("layers", "channels"),
    [
        ([LayerSpec(24, 4, 2), LayerSpec(3, 4, 2)], 12),  # fine
        ([LayerSpec(8, 4, 2), LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)], 8),  # small
        ([LayerSpec(3, 10, 4)], 12),  # paper (one layer, halo of two latent rows)
        ([LayerSpec(6, 5, 1), LayerSpec(4, 2, 4), LayerSpec(3, 7, 3)], 5),  # odd kernels and strides
    ],
)
def test_bands_give_the_pixels_of_the_whole_image(layers: list[LayerSpec], channels: int, band: int) -> None:
    """Restoring in bands of a few latent rows, each with its halo, gives the whole image's pixels."""
    rng = np.random.default_rng(band * 7 + channels)
    spec, params = _network(rng, layers, channels, LatentMode.INTEGER)
    latent = rng.integers(-6, 7, (channels, 13, 6)).astype(np.int32)
    whole = restore_exact(spec, params, latent, band=latent.shape[1])
    assert np.array_equal(whole, _reference_restore(spec, params, latent))
    assert np.array_equal(restore_exact(spec, params, latent, band=band), whole)
    stride = spec.latent_stride
    size = (13 * stride - stride // 2 - 1, 6 * stride - 1)  # cropped within the last band and column
    cropped = restore_exact(spec, params, latent, size=size, band=band)
    assert np.array_equal(cropped, whole[: size[0], : size[1]])


def test_bands_cover_the_image_with_their_halo() -> None:
    """Each band holds the rows its taps reach: one more latent row on each side for ``fine``."""
    layers = (LayerSpec(24, 4, 2), LayerSpec(3, 4, 2))
    band = exact.band_of(layers, 100, 40, 80)  # latent rows 10..19 of 100
    assert band.computed == ((9, 21), (20, 40))
    assert band.held == ((8, 22), (19, 41))
    assert exact.band_of(layers, 100, 0, 400).held == ((0, 100), (0, 200))
