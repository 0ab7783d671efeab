"""Quantization of the latent while training and at the end, and of the decoder's weights.

While training, the latent's rounding is replaced by a differentiable stand-in: additive
uniform noise (the expected-rate proxy of Ballé et al.) on crops, soft rounding with noise on
the whole image in the default preset (:func:`soft_round_noise`), then straight-through
rounding in a final hard-rounding phase so that what is optimised is what is coded. The
poster's byte latent is a saturating cast to 0..255, made differentiable the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..format.spec import LatentMode, QuantizedTensor

#: Largest magnitude of a coded integer (latent symbol or weight), so that symbols fit int16.
MAX_SYMBOL = (1 << 15) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to integers in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def soft_round(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable rounding of Agustsson & Theis: the identity as the temperature grows,
    rounding as it falls to 0, always continuous and passing through every half-integer."""
    middle = torch.floor(x) + 0.5
    return middle + 0.5 * torch.tanh((x - middle) / temperature) / math.tanh(0.5 / temperature)


def soft_round_noise(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """soft_round(soft_round(x) + uniform noise): the whole-image training proxy for rounding.

    As in C3 and Cool-chic 3: plain additive noise trains the restoring network on inputs
    spread over a whole unit around each value, while rounding gives it integers; soft rounding
    on both sides of the noise pulls the values the network sees towards the integers as the
    temperature falls, so that the final hard-rounding phase has less to undo (measured:
    docs/decisions.md, "Soft rounding in the whole-image phase").
    """
    return soft_round(add_noise(soft_round(x, temperature)), temperature)


def add_noise(x: torch.Tensor) -> torch.Tensor:
    """Uniform noise in [-0.5, 0.5): the training proxy for rounding in the rate term."""
    return x + torch.rand_like(x) - 0.5


def saturate_byte(x: torch.Tensor) -> torch.Tensor:
    """The poster's saturating cast of the latent to uint8, with straight-through rounding."""
    return round_ste(torch.clamp(x, 0.0, 255.0))


def quantize_latent(latent: torch.Tensor, mode: LatentMode) -> np.ndarray:
    """The integer latent (L, h, w) that is written to the file."""
    if mode is LatentMode.BYTE:
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
