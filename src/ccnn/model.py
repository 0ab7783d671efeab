"""The CCNN network: compressing (strided convolution) and restoring (transposed convolution) layers.

The poster's network is one layer each way; presets may stack several. Two paths run the
restoring network:

* :meth:`CCNN.restore` in float32 with autograd, used while training;
* :func:`restore_exact`, the decoder's path. Weights are integers times a power-of-two step
  and activations are integers on a fixed-point grid, so every convolution is a sum of
  integers held exactly in float64. Sums of exact integers do not depend on the order of
  summation, so the decoded pixels are the same for any thread count, BLAS or machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig, LayerSpec
from .errors import FormatError

#: Fixed-point fraction bits of the decoder's activations (values in image units of 0..1).
ACTIVATION_FRACTION_BITS = 12
_EXACT_LIMIT = float(2**52)


def _padding(spec: LayerSpec) -> tuple[int, int]:
    """Zero padding (before, after) that makes a stride-s layer map n*s samples to n exactly."""
    total = max(spec.kernel - spec.stride, 0)
    return total // 2, total - total // 2


def compress_layer(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: LayerSpec
) -> torch.Tensor:
    """Strided convolution with zero padding: (N, C, h*s, w*s) -> (N, C', h, w)."""
    before, after = _padding(spec)
    x = F.pad(x, (before, after, before, after))
    return F.conv2d(x, weight, bias, stride=spec.stride)


def restore_layer(x: torch.Tensor, weight: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Transposed convolution aligned with :func:`compress_layer`: (N, C, h, w) -> (N, C', h*s, w*s).

    The bias is left to the caller, so the exact decoder can add it on its own grid.
    """
    before, after = _padding(spec)
    if before == after and spec.kernel >= spec.stride:
        # the transposed convolution's own padding crops the same rows and columns, and
        # training's backward pass then has no slice to scatter back (a whole-image step of
        # the fine network on kodim23, 1 thread: 58.8 -> 49.4 ms)
        return F.conv_transpose2d(x, weight, stride=spec.stride, padding=before)
    h, w = x.shape[-2:]
    y = F.conv_transpose2d(x, weight, stride=spec.stride)
    out_h, out_w = h * spec.stride, w * spec.stride
    short_h = max(out_h + before - y.shape[-2], 0)
    short_w = max(out_w + before - y.shape[-1], 0)
    if short_h or short_w:
        y = F.pad(y, (0, short_w, 0, short_h))
    return y[..., before : before + out_h, before : before + out_w]


class CCNN(nn.Module):
    """Compressing network (image -> latent) and restoring network (latent -> image)."""

    def __init__(self, config: CodecConfig, channels: int) -> None:
        super().__init__()
        self.config = config
        self.encoder_weights = nn.ParameterList()
        self.encoder_biases = nn.ParameterList()
        in_ch = channels
        for spec in config.encoder:
            conv = nn.Conv2d(in_ch, spec.channels, spec.kernel)
            self.encoder_weights.append(conv.weight)
            self.encoder_biases.append(conv.bias)
            in_ch = spec.channels
        self.decoder_weights = nn.ParameterList()
        self.decoder_biases = nn.ParameterList()
        for spec in config.decoder:
            tconv = nn.ConvTranspose2d(in_ch, spec.channels, spec.kernel)
            # Transposed-conv default init ignores the stride's overlap; scale it so each
            # output sums about one input's worth of weight.
            with torch.no_grad():
                fan = in_ch * max(spec.kernel // spec.stride, 1) ** 2
                tconv.weight.normal_(0.0, math.sqrt(1.0 / fan))
                tconv.bias.zero_()
            self.decoder_weights.append(tconv.weight)
            self.decoder_biases.append(tconv.bias)
            in_ch = spec.channels
        if config.latent_mode == "uint8":
            with torch.no_grad():  # start the byte latent mid-range, inside the saturating cast
                self.encoder_biases[-1].fill_(0.25)

    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """Image in 0..1 (N, C, H, W) -> continuous latent in latent units (N, L, H/S, W/S)."""
        x = x.contiguous(memory_format=torch.channels_last)
        layers = len(self.config.encoder)
        for i, spec in enumerate(self.config.encoder):
            x = compress_layer(x, self.encoder_weights[i], self.encoder_biases[i], spec)
            if i < layers - 1 or self.config.latent_activation:
                x = F.leaky_relu(x, self.config.slope)
        if self.config.latent_mode == "uint8":
            x = x * 255.0
        return x

    def restore(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent in latent units -> image in 0..1 (not yet clamped or rounded)."""
        x = latent / 255.0 if self.config.latent_mode == "uint8" else latent
        # channels-last convolutions are faster on CPU: a whole-image step of the fine network
        # on kodim23, 1 thread, 70.7 -> 58.8 ms; the exact decoder keeps its own path
        x = x.contiguous(memory_format=torch.channels_last)
        layers = len(self.config.decoder)
        for i, spec in enumerate(self.config.decoder):
            x = restore_layer(x, self.decoder_weights[i], spec)
            x = x + self.decoder_biases[i].view(1, -1, 1, 1)
            if i < layers - 1 or self.config.output_activation:
                x = F.leaky_relu(x, self.config.slope)
        return x


@dataclass(frozen=True)
class QuantizedTensor:
    """An integer tensor and the power-of-two step it is counted in: value = ints * 2**-exponent."""

    ints: np.ndarray
    exponent: int

    def values(self) -> np.ndarray:
        return self.ints.astype(np.float64) * (2.0**-self.exponent)


@dataclass(frozen=True)
class DecoderSpec:
    """What the decoder must know about the restoring network, as stored in the file header."""

    layers: tuple[LayerSpec, ...]
    latent_channels: int
    latent_stride: int
    slope: float
    latent_mode: str
    output_activation: bool
    latent_context: bool = False

    @classmethod
    def from_config(cls, config: CodecConfig) -> DecoderSpec:
        return cls(
            layers=config.decoder,
            latent_channels=config.latent_channels,
            latent_stride=config.total_stride,
            slope=float(np.float16(config.slope)),
            latent_mode=config.latent_mode,
            output_activation=config.output_activation,
            latent_context=config.context_levels > 0 and config.latent_mode == "integer",
        )

    def parameter_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of (weight, bias) per layer, in file order."""
        shapes: list[tuple[int, ...]] = []
        in_ch = self.latent_channels
        for spec in self.layers:
            shapes.append((in_ch, spec.channels, spec.kernel, spec.kernel))
            shapes.append((spec.channels,))
            in_ch = spec.channels
        return shapes


def restore_exact(
    spec: DecoderSpec,
    params: list[QuantizedTensor],
    latent: np.ndarray,
) -> np.ndarray:
    """Decode an integer latent (L, h, w) with quantized parameters into uint8 pixels (H, W, C).

    Bit-exact by construction: see the module docstring.
    """
    latent_step = 1.0 / 255.0 if spec.latent_mode == "uint8" else 1.0
    x = torch.from_numpy(latent.astype(np.float64))[None]
    in_step = latent_step
    layers = len(spec.layers)
    grid = 2.0**ACTIVATION_FRACTION_BITS
    for i, layer in enumerate(spec.layers):
        weight_q, bias_q = params[2 * i], params[2 * i + 1]
        weight = torch.from_numpy(weight_q.ints.astype(np.float64))
        per_output = np.abs(weight_q.ints).astype(np.float64).sum(axis=(0, 2, 3)).max()
        if float(x.abs().max()) * per_output >= _EXACT_LIMIT:
            raise FormatError("decoder weights are out of the range the decoder computes exactly")
        acc = restore_layer(x, weight, layer)
        value = acc * (in_step * 2.0**-weight_q.exponent)
        value = value + torch.from_numpy(bias_q.values()).view(1, -1, 1, 1)
        if i < layers - 1 or spec.output_activation:
            value = torch.where(value > 0, value, value * spec.slope)
        if i < layers - 1:
            x = torch.round(value * grid)
            in_step = 1.0 / grid
        else:
            x = value
    pixels = torch.clamp(torch.round(x[0] * 255.0), 0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).contiguous().numpy()
