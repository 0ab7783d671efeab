"""Quantization of the latent while training and at the end, and of the decoder's weights.

While training, the latent's rounding is replaced by a differentiable stand-in: additive
uniform noise for the rate term (the expected-rate proxy of Ballé et al.) and straight-through
rounding for the distortion term, then straight-through for both in a final hard-rounding
phase so that what is optimised is what is coded. The poster's byte latent is a saturating
cast to 0..255, made differentiable the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import QuantizedTensor

#: Largest magnitude of a coded integer (latent symbol or weight), so that symbols fit int16.
MAX_SYMBOL = (1 << 15) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to integers in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def add_noise(x: torch.Tensor) -> torch.Tensor:
    """Uniform noise in [-0.5, 0.5): the training proxy for rounding in the rate term."""
    return x + torch.rand_like(x) - 0.5


def saturate_byte(x: torch.Tensor) -> torch.Tensor:
    """The poster's saturating cast of the latent to uint8, with straight-through rounding."""
    return round_ste(torch.clamp(x, 0.0, 255.0))


def quantize_latent(latent: torch.Tensor, mode: str) -> np.ndarray:
    """The integer latent (L, h, w) that is written to the file."""
    if mode == "uint8":
        ints = torch.clamp(torch.round(latent), 0, 255)
    else:
        ints = torch.clamp(torch.round(latent), -MAX_SYMBOL, MAX_SYMBOL)
    return ints[0].detach().to(torch.int32).numpy()


def quantize_tensor(values: torch.Tensor | np.ndarray, exponent: int) -> QuantizedTensor:
    """Round ``values`` to multiples of 2**-exponent, lowering the precision if needed to fit int16."""
    array = np.asarray(
        values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64
    )
    peak = float(np.abs(array).max()) if array.size else 0.0
    while exponent > -8 and peak * 2.0**exponent > MAX_SYMBOL:
        exponent -= 1
    ints = np.clip(np.round(array * 2.0**exponent), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)
    return QuantizedTensor(ints=ints, exponent=exponent)
