"""Entropy models and range coding of integer symbols (latents and decoder weights).

Every group of symbols (a latent channel, or a weight tensor) has a discretised Laplace
model with a location and a scale stored in the file as float16, and a symbol range
[lo, hi] stored as int16. Both sides turn those numbers into the same integer frequency table
(:func:`frequency_table`) and hand it to constriction's range coder, so encoder and decoder
agree bit for bit.

The rate-distortion latent can also be coded with *spatial context* (:class:`LatentEntropyModel`
with ``context=True``, coded by :func:`encode_latent`). Its positions are split into four
phases by the parity of (row, column): A (even, even) is coded with the per-channel model;
B (odd, odd) then takes a Laplace whose location and scale are predicted from its four
diagonal neighbours in A; C (even, odd) and D (odd, even) from their four direct neighbours,
which all lie in A and B. The prediction of channel c uses only channel c's neighbours:
location = w * mean(neighbours), log2(scale) = a + b * log2(1/4 + mean |neighbours|), so it
costs three float16 numbers per channel and neighbour pattern. On the decoder's side the
neighbours are decoded integers, the means are exact float64 divisions, the location is
rounded to quarters and log2(scale) to eighths before constriction sees them: the scale is
looked up in a fixed table, so encoder and decoder hand identical parameters to the coder.
Measured on two 60 s latents (kodim08, kodim23 at quality 5) fitted after the fact, the
context saved 5% and 19% of the latent's bits.
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


def _categorical(model: GroupModel) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(frequency_table(model), perfect=False)


def _stream_bytes(encoder: constriction.stream.queue.RangeEncoder) -> bytes:
    return encoder.get_compressed().astype("<u4").tobytes()


def _range_decoder(data: bytes) -> constriction.stream.queue.RangeDecoder:
    if len(data) % 4:
        raise FormatError("entropy-coded section has a length that is not a multiple of 4")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))


def _corrupt(exc: Exception) -> FormatError:
    """constriction reports corrupt data as a generic error; this is the one we raise instead."""
    return FormatError(f"entropy-coded data is corrupt ({exc})")


def encode_groups(groups: list[np.ndarray], models: list[GroupModel]) -> bytes:
    """Range-code each integer array with its model, all into one stream."""
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, model in zip(groups, models):
        if model.hi == model.lo or symbols.size == 0:
            continue
        encoder.encode((symbols.reshape(-1) - model.lo).astype(np.int32), _categorical(model))
    return _stream_bytes(encoder)


def decode_groups(data: bytes, sizes: list[int], models: list[GroupModel]) -> list[np.ndarray]:
    """Inverse of :func:`encode_groups`, given each group's symbol count."""
    decoder = _range_decoder(data)
    out: list[np.ndarray] = []
    for size, model in zip(sizes, models):
        if model.hi == model.lo or size == 0:
            out.append(np.full(size, model.lo, dtype=np.int32))
            continue
        try:
            symbols = decoder.decode(_categorical(model), size)
        except Exception as exc:
            raise _corrupt(exc) from None
        out.append(np.asarray(symbols, dtype=np.int32) + model.lo)
    return out


def estimate_bits(symbols: np.ndarray, model: GroupModel) -> float:
    """Ideal code length in bits of ``symbols`` under ``model`` (what the range coder gets close to)."""
    if model.hi == model.lo:
        return 0.0
    table = frequency_table(model)
    probabilities = table / table.sum()
    return float(-np.log2(probabilities[symbols.reshape(-1) - model.lo]).sum())


#: Neighbour patterns of the context phases: diagonal (phase B) and direct (phases C, D).
_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: Offset inside the log of the scale prediction, and the grids of location and log2(scale).
_CONTEXT_OFFSET = 0.25
_LOCATION_STEPS = 4
_LOG2_SCALE_STEPS = 8
_LOG2_SCALE_RANGE = (-48, 112)  # in eighths: scales 2**-6 .. 2**14
_SCALE_TABLE = np.exp2(np.arange(_LOG2_SCALE_RANGE[0], _LOG2_SCALE_RANGE[1] + 1) / _LOG2_SCALE_STEPS)
#: Context parameters stored per channel: (w, a, b) for the diagonal, then for the direct pattern.
CONTEXT_PARAMETERS = 6


def _phase_masks(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Float masks (1, 1, h, w) of phases A (even, even), B (odd, odd), C (even, odd), D (odd, even)."""
    rows = torch.arange(height, device=device).view(-1, 1) % 2
    cols = torch.arange(width, device=device).view(1, -1) % 2
    return tuple(((rows == r) & (cols == c)).float()[None, None] for r, c in ((0, 0), (1, 1), (0, 1), (1, 0)))


def _kernel(pattern: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
    kernel = torch.zeros(1, 1, 3, 3, device=device)
    for dy, dx in pattern:
        kernel[0, 0, dy + 1, dx + 1] = 1.0
    return kernel


class LatentEntropyModel(nn.Module):
    """The latent's learnable entropy model, for training the rate and for the file.

    A Laplace (location, log-scale) per channel; with ``context`` the phases B, C and D
    (see the module docstring) instead get a Laplace predicted from already-coded neighbours.
    """

    def __init__(self, channels: int, initial_scale: float = 1.0, context: bool = False) -> None:
        super().__init__()
        self.location = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.full((channels,), float(np.log(initial_scale))))
        # (channel, pattern, [w, a, b]); starts as "no context": w = 0, scale 2**a = initial
        start = torch.zeros(channels, 2, 3)
        start[:, :, 1] = float(np.log2(initial_scale))
        self.context_weights = nn.Parameter(start) if context else None

    def bits(self, latent: torch.Tensor) -> torch.Tensor:
        """Total bits of a (noisy or rounded) latent (N, L, h, w) under the model: differentiable."""
        loc = self.location.view(1, -1, 1, 1)
        scale = torch.exp(self.log_scale).clamp(MIN_SCALE, MAX_SCALE).view(1, -1, 1, 1)
        if self.context_weights is None:
            return _laplace_bits(latent, loc, scale)
        h, w = latent.shape[-2:]
        a_mask, b_mask, c_mask, d_mask = _phase_masks(h, w, latent.device)
        total = _laplace_bits(latent, loc, scale, a_mask)
        params = self.context_weights
        for pattern, known, target, index in (
            (_DIAGONAL, a_mask, b_mask, 0),
            (_DIRECT, a_mask + b_mask, c_mask + d_mask, 1),
        ):
            mean, mean_abs = _neighbour_means(latent, known, _kernel(pattern, latent.device))
            weight, offset, slope = (params[:, index, k].view(1, -1, 1, 1) for k in range(3))
            log2_scale = offset + slope * torch.log2(_CONTEXT_OFFSET + mean_abs)
            ctx_scale = torch.exp2(log2_scale).clamp(MIN_SCALE, MAX_SCALE)
            total = total + _laplace_bits(latent, weight * mean, ctx_scale, target)
        return total

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

    def stored_context(self) -> np.ndarray | None:
        """The context parameters (L, 6) rounded as the file stores them (float16), or None."""
        if self.context_weights is None:
            return None
        values = self.context_weights.detach().cpu().numpy().reshape(-1, CONTEXT_PARAMETERS)
        return np.clip(values, -60000.0, 60000.0).astype(np.float16).astype(np.float64)


def _laplace_bits(
    latent: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    upper = _laplace_cdf_t(latent + 0.5, loc, scale)
    lower = _laplace_cdf_t(latent - 0.5, loc, scale)
    bits = -torch.log(torch.clamp(upper - lower, min=1e-9)) / _LOG2
    return (bits * mask).sum() if mask is not None else bits.sum()


def _neighbour_means(
    latent: torch.Tensor, known: torch.Tensor, kernel: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and mean absolute value of each position's known neighbours (zero padding)."""
    channels = latent.shape[1]
    grouped = kernel.expand(channels, 1, 3, 3)
    count = torch.nn.functional.conv2d(known, kernel, padding=1).clamp(min=1.0)
    masked = latent * known
    total = torch.nn.functional.conv2d(masked, grouped, padding=1, groups=channels)
    total_abs = torch.nn.functional.conv2d(masked.abs(), grouped, padding=1, groups=channels)
    return total / count, total_abs / count


def _phase_positions(height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row and column indices of phases A, B, C, D, each in raster order."""
    phases = []
    for r, c in ((0, 0), (1, 1), (0, 1), (1, 0)):
        rows, cols = np.meshgrid(np.arange(r, height, 2), np.arange(c, width, 2), indexing="ij")
        phases.append((rows.reshape(-1), cols.reshape(-1)))
    return phases


def _context_parameters(
    plane: np.ndarray,
    known: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    pattern: tuple[tuple[int, int], ...],
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Location and scale handed to the coder at (rows, cols) of one channel, from known neighbours.

    Integer sums, one exact float64 division, then locations rounded to quarters and
    log2(scale) to eighths, so that both sides compute identical values.
    """
    height, width = plane.shape
    total = np.zeros(rows.shape, dtype=np.int64)
    total_abs = np.zeros(rows.shape, dtype=np.int64)
    count = np.zeros(rows.shape, dtype=np.int64)
    for dy, dx in pattern:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        r, c = np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)
        use = inside & known[r, c]
        values = np.where(use, plane[r, c], 0).astype(np.int64)
        total += values
        total_abs += np.abs(values)
        count += use
    count = np.maximum(count, 1).astype(np.float64)
    weight, offset, slope = weights
    location = np.round(weight * (total / count) * _LOCATION_STEPS) / _LOCATION_STEPS
    log2_scale = offset + slope * np.log2(_CONTEXT_OFFSET + total_abs / count)
    index = np.clip(np.round(log2_scale * _LOG2_SCALE_STEPS), *_LOG2_SCALE_RANGE).astype(np.int64)
    return location, _SCALE_TABLE[index - _LOG2_SCALE_RANGE[0]]


def encode_latent(latent: np.ndarray, models: list[GroupModel], context: np.ndarray | None) -> bytes:
    """Range-code an integer latent (L, h, w): per channel, or in four context phases."""
    if context is None:
        return encode_groups(list(latent), models)
    encoder = constriction.stream.queue.RangeEncoder()
    _code_phases(latent, models, context, encoder, decoding=False)
    return _stream_bytes(encoder)


def decode_latent(
    data: bytes, shape: tuple[int, int, int], models: list[GroupModel], context: np.ndarray | None
) -> np.ndarray:
    """Inverse of :func:`encode_latent`, given the latent's shape."""
    channels, height, width = shape
    if context is None:
        planes = decode_groups(data, [height * width] * channels, models)
        return np.stack([p.reshape(height, width) for p in planes])
    decoder = _range_decoder(data)
    latent = np.zeros(shape, dtype=np.int32)
    try:
        _code_phases(latent, models, context, decoder, decoding=True)
    except FormatError:
        raise
    except Exception as exc:
        raise _corrupt(exc) from None
    return latent


def _code_phases(
    latent: np.ndarray, models: list[GroupModel], context: np.ndarray, coder: object, decoding: bool
) -> None:
    """Encode (or decode into ``latent``) phases A, B, C, D in order; the one place both sides share."""
    channels, height, width = latent.shape
    phases = _phase_positions(height, width)
    known = np.zeros((height, width), dtype=bool)
    for phase, (rows, cols) in enumerate(phases):
        if rows.size == 0:
            continue
        for c in range(channels):
            model = models[c]
            plane = latent[c]
            if model.hi == model.lo:
                if decoding:
                    plane[rows, cols] = model.lo
                continue
            if phase == 0:
                categorical = _categorical(model)
                if decoding:
                    decoded = np.asarray(coder.decode(categorical, rows.size), dtype=np.int32)
                    plane[rows, cols] = decoded + model.lo
                else:
                    coder.encode((plane[rows, cols] - model.lo).astype(np.int32), categorical)
                continue
            pattern, weights = (_DIAGONAL, context[c, :3]) if phase == 1 else (_DIRECT, context[c, 3:])
            location, scale = _context_parameters(plane, known, rows, cols, pattern, weights)
            laplace = constriction.stream.model.QuantizedLaplace(model.lo, model.hi)
            if decoding:
                plane[rows, cols] = np.asarray(coder.decode(laplace, location, scale), dtype=np.int32)
            else:
                coder.encode(plane[rows, cols].astype(np.int32), laplace, location, scale)
        known[rows, cols] = True


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
