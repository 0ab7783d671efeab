"""Entropy models and range coding of integer symbols (latents and decoder weights).

Every group of symbols (a latent channel, or a weight tensor) has a discretised Laplace
model with a location and a scale stored in the file as float16, and a symbol range
[lo, hi] stored as int16. Both sides turn those numbers into the same integer frequency table
(:func:`frequency_table`) and hand it to constriction's range coder, so encoder and decoder
agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
import torch
from torch import nn

from .errors import FormatError

#: Precision of the frequency tables handed to the range coder.
FREQUENCY_BITS = 16
MIN_SCALE = 0.02
MAX_SCALE = 30000.0
_LOG2 = float(np.log(2.0))


@dataclass(frozen=True)
class GroupModel:
    """A discretised Laplace over the integers lo..hi: the numbers stored per group."""

    location: float
    scale: float
    lo: int
    hi: int

    @classmethod
    def stored(cls, location: float, scale: float, lo: int, hi: int) -> GroupModel:
        """Round the parameters exactly as the file stores them (float16)."""
        loc = float(np.float16(np.clip(location, -60000.0, 60000.0)))
        sc = float(np.float16(np.clip(scale, MIN_SCALE, MAX_SCALE)))
        return cls(location=loc, scale=max(sc, MIN_SCALE), lo=int(lo), hi=int(hi))


def laplace_cdf(x: np.ndarray, location: float, scale: float) -> np.ndarray:
    z = (x - location) / scale
    return np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0.0)), 1.0 - 0.5 * np.exp(-np.maximum(z, 0.0)))


def frequency_table(model: GroupModel) -> np.ndarray:
    """Integer frequencies (float64 holding integers, each >= 1) of the symbols lo..hi."""
    edges = np.arange(model.lo, model.hi + 2, dtype=np.float64) - 0.5
    cdf = laplace_cdf(edges, model.location, model.scale)
    probabilities = np.maximum(np.diff(cdf), 0.0)
    total = probabilities.sum()
    if not np.isfinite(total) or total <= 0.0:
        probabilities = np.ones_like(probabilities)
        total = probabilities.sum()
    scaled = np.floor(probabilities / total * (1 << FREQUENCY_BITS))
    return np.maximum(scaled, 1.0)


def encode_groups(groups: list[np.ndarray], models: list[GroupModel]) -> bytes:
    """Range-code each integer array with its model, all into one stream."""
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, model in zip(groups, models):
        if model.hi == model.lo or symbols.size == 0:
            continue
        table = frequency_table(model)
        categorical = constriction.stream.model.Categorical(table, perfect=False)
        encoder.encode((symbols.reshape(-1) - model.lo).astype(np.int32), categorical)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_groups(data: bytes, sizes: list[int], models: list[GroupModel]) -> list[np.ndarray]:
    """Inverse of :func:`encode_groups`, given each group's symbol count."""
    if len(data) % 4:
        raise FormatError("entropy-coded section has a length that is not a multiple of 4")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    out: list[np.ndarray] = []
    for size, model in zip(sizes, models):
        if model.hi == model.lo or size == 0:
            out.append(np.full(size, model.lo, dtype=np.int32))
            continue
        categorical = constriction.stream.model.Categorical(frequency_table(model), perfect=False)
        try:
            symbols = decoder.decode(categorical, size)
        except Exception as exc:  # constriction reports corrupt data as a generic error
            raise FormatError(f"entropy-coded data is corrupt ({exc})") from None
        out.append(np.asarray(symbols, dtype=np.int32) + model.lo)
    return out


def estimate_bits(symbols: np.ndarray, model: GroupModel) -> float:
    """Ideal code length in bits of ``symbols`` under ``model`` (what the range coder gets close to)."""
    if model.hi == model.lo:
        return 0.0
    table = frequency_table(model)
    probabilities = table / table.sum()
    return float(-np.log2(probabilities[symbols.reshape(-1) - model.lo]).sum())


class FactorizedLaplace(nn.Module):
    """One learnable Laplace (location, log-scale) per latent channel, for training the rate."""

    def __init__(self, channels: int, initial_scale: float = 1.0) -> None:
        super().__init__()
        self.location = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.full((channels,), float(np.log(initial_scale))))

    def bits(self, latent: torch.Tensor) -> torch.Tensor:
        """Total bits of a (noisy or rounded) latent (N, L, h, w) under the model: differentiable."""
        loc = self.location.view(1, -1, 1, 1)
        scale = torch.exp(self.log_scale).clamp(MIN_SCALE, MAX_SCALE).view(1, -1, 1, 1)
        upper = _laplace_cdf_t(latent + 0.5, loc, scale)
        lower = _laplace_cdf_t(latent - 0.5, loc, scale)
        probability = torch.clamp(upper - lower, min=1e-9)
        return -torch.log(probability).sum() / _LOG2

    def group_models(self, latent: np.ndarray) -> list[GroupModel]:
        """Stored models for an integer latent (L, h, w): learned parameters, observed ranges."""
        models = []
        for c in range(latent.shape[0]):
            channel = latent[c]
            models.append(
                GroupModel.stored(
                    float(self.location[c].detach()),
                    float(torch.exp(self.log_scale[c].detach())),
                    int(channel.min()),
                    int(channel.max()),
                )
            )
        return models


def _laplace_cdf_t(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    z = (x - loc) / scale
    return torch.where(
        z < 0, 0.5 * torch.exp(torch.clamp(z, max=0.0)), 1.0 - 0.5 * torch.exp(-torch.clamp(z, min=0.0))
    )


def weight_model(tensor_ints: np.ndarray) -> GroupModel:
    """The stored model of a quantized weight tensor: zero-mean Laplace with its ML scale."""
    flat = tensor_ints.reshape(-1)
    scale = float(np.abs(flat).mean()) if flat.size else 1.0
    lo = int(flat.min()) if flat.size else 0
    hi = int(flat.max()) if flat.size else 0
    return GroupModel.stored(0.0, max(scale, 0.1), lo, hi)
