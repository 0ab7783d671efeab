"""The CCNN network: compressing (strided convolution) and restoring (transposed convolution) layers.

The poster's network is one layer each way; presets may stack several. This is the training
path, in float32 with autograd; the decoder runs the same restoring layers exactly, in numpy
(:func:`ccnn.format.exact.restore_exact`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..format.spec import LatentMode, LayerSpec
from ..settings import CodecConfig


def compress_layer(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: LayerSpec
) -> torch.Tensor:
    """Strided convolution with zero padding: (N, C, h*s, w*s) -> (N, C', h, w)."""
    before, after = spec.padding
    x = F.pad(x, (before, after, before, after))
    return F.conv2d(x, weight, bias, stride=spec.stride)


def restore_layer(x: torch.Tensor, weight: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Transposed convolution aligned with :func:`compress_layer`: (N, C, h, w) -> (N, C', h*s, w*s).

    The bias is left to the caller, so the exact decoder can add it on its own grid.
    """
    before, after = spec.padding
    if before == after and spec.kernel >= spec.stride:
        # the transposed convolution's own padding crops the same rows and columns, and
        # training's backward pass then has no slice to scatter back (faster: docs/decisions.md,
        # "Restoring network speed")
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
        if config.latent_mode is LatentMode.BYTE:
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
        if self.config.latent_mode is LatentMode.BYTE:
            x = x * 255.0
        return x

    def restore(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent in latent units -> image in 0..1 (not yet clamped or rounded)."""
        x = latent / 255.0 if self.config.latent_mode is LatentMode.BYTE else latent
        # channels-last convolutions are faster on CPU (docs/decisions.md, "Restoring network
        # speed"); the exact decoder keeps its own path
        x = x.contiguous(memory_format=torch.channels_last)
        layers = len(self.config.decoder)
        for i, spec in enumerate(self.config.decoder):
            x = restore_layer(x, self.decoder_weights[i], spec)
            x = x + self.decoder_biases[i].view(1, -1, 1, 1)
            if i < layers - 1 or self.config.output_activation:
                x = F.leaky_relu(x, self.config.slope)
        return x
