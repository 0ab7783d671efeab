"""Entropy models and range coding of integer symbols (latents and decoder weights).

Every group of symbols (a latent channel, or a weight tensor) has a discretised Laplace
model with a location and a scale stored in the file as float16, and a symbol range
[lo, hi] stored as int16. Both sides turn those numbers into the same integer frequency table
(:func:`frequency_table`) and hand it to constriction's range coder, so encoder and decoder
agree bit for bit.

The rate-distortion latent can also be coded with *spatial context* (K >= 1 context levels,
coded by :func:`encode_latent`; the encoder learns its parameters in
:class:`ccnn.encoder.entropy_model.LatentEntropyModel`). Its positions are coded
coarse to fine on nested grids. First the grid of spacing 2**K (rows and columns multiples of
2**K) with the per-channel model; then, for each level k = K..1 with spacing s = 2**k and
d = s/2, given every position of the grid of spacing s: phase B (row and column = d mod s)
takes a Laplace whose location and scale are predicted from its four diagonal neighbours at
distance d, then phases C (d mod s in the column only) and D (in the row only) from their four
direct neighbours at distance d, which all lie on the grid or in B. After level k the grid of
spacing s/2 is known. K = 1 is the four-phase scheme of format version 2: A (even, even),
B (odd, odd), C (even, odd), D (odd, even).

The prediction of channel c: location = w * mean(neighbours in channel c), and
log2(scale) = a + b * log2(1/4 + mean |neighbours in channel c|)
+ g * log2(1/4 + mean |neighbours in every channel|), so it costs four numbers per channel,
neighbour pattern and level, stored as int8 multiples of fixed steps (:data:`CONTEXT_STEPS`).
The last term (format version 4) uses that the latent's channels are busy in the same places:
four neighbours of one channel are a noisy estimate of the local activity, those of all
channels a much better one (docs/decisions.md, "Cross-channel activity in the scale
prediction").

On the decoder's side the neighbours are decoded integers, the means are exact float64
divisions of integer sums, the location is rounded to quarters and log2(scale) to eighths
before constriction sees them: the scale is looked up in a fixed table, so encoder and decoder
hand identical parameters to the coder. What each context level saves: docs/decisions.md,
"Spatial context: two coarse-to-fine levels".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import constriction
import numpy as np

from ..errors import FormatError

#: Precision of the frequency tables handed to the range coder.
FREQUENCY_BITS = 16
MIN_SCALE = 0.02
MAX_SCALE = 30000.0


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
    return [_decode_group(decoder, size, model) for size, model in zip(sizes, models)]


def _decode_group(
    decoder: constriction.stream.queue.RangeDecoder, size: int, model: GroupModel
) -> np.ndarray:
    """The next ``size`` symbols of the stream, coded with ``model`` (int32)."""
    if model.hi == model.lo or size == 0:
        return np.full(size, model.lo, dtype=np.int32)
    try:
        symbols = decoder.decode(_categorical(model), size)
    except Exception as exc:
        raise _corrupt(exc) from None
    symbols = np.asarray(symbols, dtype=np.int32)
    symbols += model.lo
    return symbols


def estimate_bits(symbols: np.ndarray, model: GroupModel) -> float:
    """Ideal code length in bits of ``symbols`` under ``model`` (what the range coder gets close to)."""
    if model.hi == model.lo:
        return 0.0
    table = frequency_table(model)
    probabilities = table / table.sum()
    return float(-np.log2(probabilities[symbols.reshape(-1) - model.lo]).sum())


#: Neighbour patterns of the context phases: diagonal (phase B) and direct (phases C, D).
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
#: Offset inside the log of the scale prediction, and the grids of location and log2(scale).
CONTEXT_OFFSET = 0.25
_LOCATION_STEPS = 4
_LOG2_SCALE_STEPS = 8
_LOG2_SCALE_RANGE = (-48, 112)  # in eighths: scales 2**-6 .. 2**14
_SCALE_TABLE = np.exp2(np.arange(_LOG2_SCALE_RANGE[0], _LOG2_SCALE_RANGE[1] + 1) / _LOG2_SCALE_STEPS)
#: Context parameters stored per channel and level: (w, a, b, g) for the diagonal, then the
#: direct pattern. Files of format version 3 store (w, a, b) as float16 and mean g = 0.
CONTEXT_PARAMETERS = 8
PATTERN_PARAMETERS = CONTEXT_PARAMETERS // 2
#: Format version 4 stores each context parameter as an int8 multiple of its step: w, a, b, g
#: in [-2, 2), [-16, 16), [-8, 8), [-8, 8): half the bytes of float16 (docs/decisions.md,
#: "Context parameters as int8").
CONTEXT_STEPS = np.array((1 / 64, 1 / 8, 1 / 16, 1 / 16) * 2)
#: Most symbols whose context parameters :func:`_code_phases` computes at once (for a larger
#: phase, one channel at a time). In format version 7 the groups of channels it makes are
#: part of the stream: each group's symbols are sorted by table (:func:`_code_tabled`).
CONTEXT_VALUES = 1 << 18
#: Bytes a decode holds per symbol of such a group, at most (95 measured with tracemalloc on a
#: 4 x 1024 x 1024 latent with tables, 73 without): what :func:`ccnn.format.container.decode_cost`
#: counts.
CONTEXT_BYTES = 120
#: Most context levels a file may declare (a grid of spacing 2**8 is already coarser than needed).
MAX_CONTEXT_LEVELS = 8


@dataclass(frozen=True)
class ContextPhase:
    """One phase of the coarse-to-fine order: its positions, and how they are predicted.

    The positions are a regular grid: rows ``row_start``, ``row_start + step``, ... and columns
    ``col_start``, ``col_start + step``, ... inside the plane, ``shape`` = (rows, columns) of
    them, coded in raster order (:attr:`rows` and :attr:`cols` list them). ``level`` is 0 for
    the coarsest grid (per-channel model), else k >= 1 for the phases of level k, whose
    neighbours lie at distance ``distance`` = 2**(k-1) in pattern ``pattern``.
    """

    row_start: int
    col_start: int
    step: int
    shape: tuple[int, int]
    level: int
    pattern: tuple[tuple[int, int], ...]
    distance: int

    @property
    def rows(self) -> np.ndarray:
        """Row of each position, in coding order."""
        count, per_row = self.shape
        return np.repeat(self.row_start + self.step * np.arange(count), per_row)

    @property
    def cols(self) -> np.ndarray:
        """Column of each position, in coding order."""
        count, per_row = self.shape
        return np.tile(self.col_start + self.step * np.arange(per_row), count)


def context_phases(height: int, width: int, levels: int) -> list[ContextPhase]:
    """The phases of a latent plane of ``height`` x ``width`` in coding order, each in raster order."""

    def phase(r: int, c: int, step: int, level: int, pattern: tuple, d: int) -> ContextPhase:
        shape = (len(range(r, height, step)), len(range(c, width, step)))
        return ContextPhase(r, c, step, shape, level, pattern, d)

    coarsest = 2**levels
    phases = [phase(0, 0, coarsest, 0, (), 0)]
    for level in range(levels, 0, -1):
        step, d = 2**level, 2 ** (level - 1)
        for (r, c), pattern in (((d, d), DIAGONAL), ((0, d), DIRECT), ((d, 0), DIRECT)):
            phases.append(phase(r, c, step, level, pattern, d))
    return phases


def context_to_ints(context: np.ndarray) -> np.ndarray:
    """Context parameters (..., 8) as the int8 multiples of :data:`CONTEXT_STEPS` a file stores."""
    return np.clip(np.round(context / CONTEXT_STEPS), -128, 127).astype(np.int8)


def context_from_ints(ints: np.ndarray) -> np.ndarray:
    """Inverse of :func:`context_to_ints`: exact float64 multiples of the steps."""
    return ints.astype(np.float64) * CONTEXT_STEPS


def _grid(start: int, step: int, count: int) -> slice:
    """The slice of ``count`` indices ``start``, ``start + step``, ..."""
    return slice(start, start + (count - 1) * step + 1, step)


def _neighbour_sums(
    padded: np.ndarray, magnitude: np.ndarray, pad: int, phase: ContextPhase
) -> tuple[np.ndarray, np.ndarray]:
    """Integer sums over the neighbours of the phase's positions, in each channel given.

    ``padded`` is the latent (channels, h, w) with ``pad`` >= ``phase.distance`` zeros around
    it (int32), and ``magnitude`` its absolute values; each neighbour of the pattern is one
    strided slice of them. Every neighbour inside the plane was coded in an earlier phase
    (:func:`context_phases`), and those outside are zeros of the padding, so the sums are over
    the known neighbours. Returns (sum, sum of absolute values), each (channels, rows, cols)
    int32.
    """
    total = total_abs = None
    for at in _neighbour_slices(pad, phase):
        if total is None:
            total, total_abs = padded[at].copy(), magnitude[at].copy()
        else:
            total += padded[at]
            total_abs += magnitude[at]
    return total, total_abs


def _neighbour_slices(pad: int, phase: ContextPhase) -> list[tuple[slice, slice, slice]]:
    """Each neighbour of the pattern as a strided slice of the padded latent (every channel)."""
    count_r, count_c = phase.shape
    slices = []
    for dy, dx in phase.pattern:
        top, left = phase.row_start + dy * phase.distance, phase.col_start + dx * phase.distance
        slices.append(
            (slice(None), _grid(pad + top, phase.step, count_r), _grid(pad + left, phase.step, count_c))
        )
    return slices


def _neighbour_count(height: int, width: int, phase: ContextPhase) -> np.ndarray:
    """How many of each position's neighbours lie inside the plane (at least 1), (rows, cols) float64."""
    count_r, count_c = phase.shape
    count = np.zeros(phase.shape)
    for dy, dx in phase.pattern:
        top, left = phase.row_start + dy * phase.distance, phase.col_start + dx * phase.distance
        rows = top + phase.step * np.arange(count_r)
        cols = left + phase.step * np.arange(count_c)
        count += ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    return np.maximum(count, 1.0)


def _shared_log(magnitude: np.ndarray, pad: int, phase: ContextPhase, count: np.ndarray) -> np.ndarray:
    """log2(1/4 + U / (n * L)): the cross-channel activity at the phase's positions, (rows, cols).

    U, the sum of every channel's neighbour magnitudes, is summed channel by channel at each
    neighbour: the same integer as summing each channel's sum, without holding them all.
    """
    channels = magnitude.shape[0]
    every = None
    for at in _neighbour_slices(pad, phase):
        part = magnitude[at].sum(axis=0, dtype=np.int64)
        every = part if every is None else every + part
    return np.log2(CONTEXT_OFFSET + every / (count * channels))


def _context_indices(
    total: np.ndarray,
    total_abs: np.ndarray,
    count: np.ndarray,
    weights: np.ndarray,
    shared_log: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The location in quarters (float64 integers) and the index of the scale in :data:`_SCALE_TABLE`.

    ``total`` and ``total_abs`` are each channel's neighbour sums, ``count`` the neighbour
    count, ``weights`` (channels, 4) the channels' (w, a, b, g) of the phase's pattern and
    ``shared_log`` the cross-channel term (:func:`_shared_log`). Integer sums, exact float64
    divisions, then locations rounded to quarters and log2(scale) to eighths, so that both
    sides compute identical values: element by element these are the operations of the
    per-channel formula, in the same order, on the same float64 numbers.
    """
    weight, offset, slope, shared = (weights[:, i].reshape(-1, 1, 1) for i in range(PATTERN_PARAMETERS))
    # round(w * (total / count) * 4) / 4, in place (the products commute exactly)
    location = total.astype(np.float64)
    location /= count
    location *= weight
    location *= _LOCATION_STEPS
    np.round(location, out=location)
    # offset + slope * log2(1/4 + total_abs / count) + shared * log2(1/4 + all_abs), in place
    log2_scale = _log2_mean(total_abs, count)
    log2_scale *= slope
    log2_scale += offset
    log2_scale += shared * shared_log
    # clip(round(log2_scale * 8), lo, hi) - lo: the shift by an integer is exact
    log2_scale *= _LOG2_SCALE_STEPS
    np.round(log2_scale, out=log2_scale)
    log2_scale -= _LOG2_SCALE_RANGE[0]
    np.clip(log2_scale, 0, _LOG2_SCALE_RANGE[1] - _LOG2_SCALE_RANGE[0], out=log2_scale)
    return location, log2_scale.astype(np.intp)


def _log2_mean(total_abs: np.ndarray, count: np.ndarray) -> np.ndarray:
    """log2(CONTEXT_OFFSET + total_abs / count), the same numbers, through a table of its few values.

    With at most four neighbours the count divides 12, so ``total_abs / count`` is ``k / 12``
    for the integer ``k = total_abs * (12 / count)``: both are the float64 division correctly
    rounded from the same rational number, hence the same float64, and so is its log2. The
    table holds log2(CONTEXT_OFFSET + k / 12) for k = 0 .. max k; when that is more values
    than there are positions (a latent with huge values), the log2 is taken element by element.
    """
    per_count = 12 // count.astype(np.intp)
    if np.array_equal(per_count * count, np.full(count.shape, 12.0)):
        # at most 4 * 2**15 * 12: no overflow; an intp index, which np.take uses without a copy
        key = total_abs.astype(np.intp)
        key *= per_count
        size = int(key.max(initial=0)) + 1
        if size <= key.size:
            table = np.log2(CONTEXT_OFFSET + np.arange(size) / 12.0)
            return np.take(table, key)
    return np.log2(CONTEXT_OFFSET + total_abs / count)


def encode_latent(
    latent: np.ndarray, models: list[GroupModel], context: np.ndarray | None, *, tabled: bool
) -> bytes:
    """Range-code an integer latent (L, h, w): per channel, or coarse to fine with context (K, L, 8).

    ``tabled``: the context phases coded with tables (format version 7, :func:`_code_tabled`);
    False codes them as versions 2-6 do, with constriction's Laplace per symbol.
    """
    if context is None:
        return encode_groups(list(latent), models)
    encoder = constriction.stream.queue.RangeEncoder()
    _code_phases(latent, models, context, encoder, decoding=False, tabled=tabled)
    return _stream_bytes(encoder)


def decode_latent(
    data: bytes,
    shape: tuple[int, int, int],
    models: list[GroupModel],
    context: np.ndarray | None,
    *,
    tabled: bool,
) -> np.ndarray:
    """Inverse of :func:`encode_latent`, given the latent's shape."""
    _, height, width = shape
    if context is None:
        # channel by channel into one array: never the latent twice
        latent = np.empty(shape, dtype=np.int32)
        decoder = _range_decoder(data)
        for c, model in enumerate(models):
            latent[c] = _decode_group(decoder, height * width, model).reshape(height, width)
        return latent
    decoder = _range_decoder(data)
    latent = np.zeros(shape, dtype=np.int32)
    try:
        _code_phases(latent, models, context, decoder, decoding=True, tabled=tabled)
    except FormatError:
        raise
    except Exception as exc:
        raise _corrupt(exc) from None
    return latent


def _coded_runs(models: list[GroupModel]) -> list[tuple[int, int, int, int]]:
    """(first, end, lo, hi) of each run of consecutive channels that are coded with one range.

    A channel with ``lo == hi`` codes nothing and ends a run. The channels of a run are coded
    one after the other, each in raster order, so one coder call over the run puts the same
    symbols with the same parameters in the same order into the stream as one call per channel.
    """
    runs: list[tuple[int, int, int, int]] = []
    for c, model in enumerate(models):
        if model.hi == model.lo:
            continue
        if runs and runs[-1][1] == c and runs[-1][2:] == (model.lo, model.hi):
            runs[-1] = (runs[-1][0], c + 1, model.lo, model.hi)
        else:
            runs.append((c, c + 1, model.lo, model.hi))
    return runs


def _code_phases(
    latent: np.ndarray,
    models: list[GroupModel],
    context: np.ndarray,
    coder: object,
    decoding: bool,
    tabled: bool,
) -> None:
    """Encode (or decode into ``latent``) the context phases in order; the one place both sides share.

    The stream holds, phase after phase, each coded channel's positions of the phase in raster
    order (:func:`context_phases`); the work is done on the whole phase at once, for as many
    channels as keep the parameters within :data:`CONTEXT_VALUES` (every channel, but for a
    large image), on a zero-padded copy of the latent. A range coder's stream does not depend
    on how its symbols are split between calls, so the groups code what one call would.
    ``tabled`` (format version 7) codes the phases of level 1 and up group by group with the
    tables of :func:`_code_tabled`, where versions 2-5 hand each symbol's Laplace to constriction.
    """
    channels, height, width = latent.shape
    pad = 2 ** (context.shape[0] - 1)  # the largest neighbour distance
    padded = np.zeros((channels, height + 2 * pad, width + 2 * pad), dtype=np.int32)
    inside = padded[:, pad : pad + height, pad : pad + width]
    if decoding:
        for c, model in enumerate(models):
            if model.hi == model.lo:
                inside[c] = model.lo  # a constant channel codes nothing
    else:
        inside[...] = latent
    magnitude = np.abs(padded)  # kept up to date with ``padded`` as phases are decoded
    runs = _coded_runs(models)
    for phase in context_phases(height, width, context.shape[0]):
        count_r, count_c = phase.shape
        if count_r == 0 or count_c == 0:
            continue
        rows = _grid(pad + phase.row_start, phase.step, count_r)
        cols = _grid(pad + phase.col_start, phase.step, count_c)
        at = (slice(None), rows, cols)  # the phase's positions in every channel of ``padded``
        size = count_r * count_c
        if phase.level == 0:
            for c, model in enumerate(models):
                if model.hi == model.lo:
                    continue
                categorical = _categorical(model)
                if decoding:
                    decoded = np.asarray(coder.decode(categorical, size), dtype=np.int32)
                    padded[c, rows, cols] = decoded.reshape(phase.shape) + model.lo
                else:
                    coder.encode((padded[c, rows, cols].reshape(-1) - model.lo).astype(np.int32), categorical)
        else:
            # every channel's neighbours were coded in earlier phases
            count = _neighbour_count(height, width, phase)
            shared_log = _shared_log(magnitude, pad, phase, count)
            half = 0 if phase.pattern == DIAGONAL else PATTERN_PARAMETERS
            weights = context[phase.level - 1, :, half : half + PATTERN_PARAMETERS]
            # a few channels at a time, so that the float64 parameters stay within CONTEXT_VALUES
            group = max(1, CONTEXT_VALUES // size)
            for start in range(0, channels, group):
                stop = min(channels, start + group)
                total, total_abs = _neighbour_sums(padded[start:stop], magnitude[start:stop], pad, phase)
                location, scale_index = _context_indices(
                    total, total_abs, count, weights[start:stop], shared_log
                )
                if tabled:
                    _code_tabled(padded, rows, cols, start, location, scale_index, models, coder, decoding)
                    continue
                # versions 2-5: each symbol's Laplace, its location and scale, to constriction
                location /= _LOCATION_STEPS
                scale = np.take(_SCALE_TABLE, scale_index)
                for first, end, lo, hi in runs:
                    first, end = max(first, start), min(end, stop)  # the run's channels in the group
                    if first >= end:
                        continue
                    laplace = constriction.stream.model.QuantizedLaplace(lo, hi)
                    at_run = slice(first - start, end - start)
                    loc, sc = location[at_run].reshape(-1), scale[at_run].reshape(-1)
                    if decoding:
                        decoded = np.asarray(coder.decode(laplace, loc, sc), dtype=np.int32)
                        padded[first:end, rows, cols] = decoded.reshape(end - first, *phase.shape)
                    else:
                        coder.encode(padded[first:end, rows, cols].reshape(-1), laplace, loc, sc)
        if decoding:
            np.abs(padded[at], out=magnitude[at])
    if decoding:
        latent[...] = inside


# --- Tabled Laplace coding of the context phases (format version 7) -----------------------------

#: Fixed-point one of the tables' arithmetic (31 fraction bits: a product of two fits in 62 bits).
_ONE = 1 << 31
#: Frequencies are the fixed-point probabilities shifted down by this many bits (about 2**24 in all).
_FREQUENCY_SHIFT = 7
#: The support of a table reaches ``ceil(_TABLE_REACH * scale)`` either side of its centre...
_TABLE_REACH = 12
#: ... but at most this far; a symbol beyond is an escape, coded again uniformly in [lo, hi].
_MAX_TABLE_RADIUS = 4096
#: 2**(i/8) * 2**16, rounded, i = 0..7: the scales' mantissas for the tables' radii, in integers.
_EIGHTH_ROOTS = (65536, 71468, 77936, 84990, 92682, 101070, 110218, 120194)
#: Significant digits of the decimal arithmetic of the exponentials (software: the same everywhere).
_DECIMAL_DIGITS = 24
#: Tables: one per scale index (0..160) and quarter of the location (0..3).
TABLE_KEYS = (_LOG2_SCALE_RANGE[1] - _LOG2_SCALE_RANGE[0] + 1) * _LOCATION_STEPS


def table_radius(scale_index: int) -> int:
    """R: a table's symbols are -R..R around its centre, plus the escape (integer arithmetic only).

    The scale is 2**(e/8) with e = scale_index - 48 = 8k + i; R = ceil(12 * 2**(i/8) * 2**k)
    with 2**(i/8) as the integer :data:`_EIGHTH_ROOTS`[i] / 2**16, at least 1, at most 4096.
    """
    k, i = divmod(scale_index + _LOG2_SCALE_RANGE[0], _LOG2_SCALE_STEPS)
    numerator = _TABLE_REACH * _EIGHTH_ROOTS[i]
    shift = 16 - k
    radius = -(-numerator // (1 << shift)) if shift >= 0 else numerator << -shift
    return max(1, min(_MAX_TABLE_RADIUS, radius))


def _fixed_exp(exponent: Decimal) -> int:
    """round(e**exponent * 2**31), from Python's decimal module: correctly rounded, on any machine."""
    with localcontext() as decimal_context:
        decimal_context.prec = _DECIMAL_DIGITS
        value = exponent.exp() * _ONE
        return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


@functools.cache
def _scale_exponentials(scale_index: int) -> tuple[int, ...]:
    """e**(-t/S) for t = 0, 1/4, 1/2, 3/4, 1 (S the index's scale), 31-bit fixed point."""
    with localcontext() as decimal_context:
        decimal_context.prec = _DECIMAL_DIGITS
        e = Decimal(scale_index + _LOG2_SCALE_RANGE[0]) / _LOG2_SCALE_STEPS
        inverse_scale = (-e * Decimal(2).ln()).exp()  # 1 / 2**(e/8)
        return tuple(_fixed_exp(-Decimal(t) / 4 * inverse_scale) for t in range(5))


def table_frequencies(key: int) -> np.ndarray:
    """The integer frequencies of table ``key`` = 4 * scale index + quarter f: symbols -R..R, then the escape.

    A discretised Laplace of scale S (the index's) centred at mu = f/4 - 1/2, so that the
    location n + mu (n an integer) codes the symbol minus n. With q = e**(-1/S),
    a = e**(-(1/2 - mu)/S), b = e**(-(1/2 + mu)/S): P(r) = a q**(r-1) (1 - q) / 2 for r >= 1,
    b q**(-r-1) (1 - q) / 2 for r <= -1, 1 - a/2 - b/2 for r = 0, and the escape the mass
    beyond R, (a + b) q**R / 2. All in 31-bit fixed point from exactly rounded exponentials,
    with the powers of q by the recurrence of :func:`_powers`: integers, the same on every
    machine. Each frequency is P >> 7, at least 1.
    """
    scale_index, quarter = divmod(key, _LOCATION_STEPS)
    radius = table_radius(scale_index)
    exponentials = _scale_exponentials(scale_index)
    q = exponentials[4]
    a, b = exponentials[4 - quarter], exponentials[quarter]  # 1/2 - mu = 1 - f/4, 1/2 + mu = f/4
    powers = _powers(q, radius + 1)  # q**0 .. q**R
    gap, shift, half = np.uint64(_ONE - q), np.uint64(31), np.uint64(32)
    fixed = np.empty(2 * radius + 2, dtype=np.uint64)
    fixed[radius + 1 : 2 * radius + 1] = ((np.uint64(a) * powers[:radius]) >> shift) * gap >> half
    fixed[radius - 1 :: -1] = ((np.uint64(b) * powers[:radius]) >> shift) * gap >> half
    fixed[radius] = _ONE - (a >> 1) - (b >> 1)
    fixed[2 * radius + 1] = ((a * int(powers[radius])) >> 32) + ((b * int(powers[radius])) >> 32)
    fixed >>= np.uint64(_FREQUENCY_SHIFT)
    np.maximum(fixed, np.uint64(1), out=fixed)
    return fixed.astype(np.float64)


def _powers(q: int, count: int) -> np.ndarray:
    """q**0 .. q**(count-1) in 31-bit fixed point: g[0] = 1, g[1] = q, then by doubling blocks.

    g[m + j] = (g[j] * p) >> 31 for j < m, where p is q**m, itself (p' * p') >> 31 from the
    block before (m = 1, 2, 4, ...): the order of the products is part of the format.
    """
    powers = np.array([_ONE], dtype=np.uint64)
    step = np.uint64(q)
    while powers.size < count:
        powers = np.concatenate([powers, (powers * step) >> np.uint64(31)])
        step = (step * step) >> np.uint64(31)
    return powers[:count]


@functools.cache
def _table(key: int) -> tuple[int, constriction.stream.model.Categorical]:
    """(R, the coder's model) of table ``key``; made once per process."""
    frequencies = table_frequencies(key)
    return (frequencies.size - 2) // 2, constriction.stream.model.Categorical(frequencies, perfect=False)


def _code_tabled(
    padded: np.ndarray,
    rows: slice,
    cols: slice,
    first: int,
    location: np.ndarray,
    scale_index: np.ndarray,
    models: list[GroupModel],
    coder: object,
    decoding: bool,
) -> None:
    """Code one group of a phase's channels (``first`` onwards) with the tables (format version 7).

    The group's coded channels (those with lo < hi), each in raster order, one after the
    other, are stably sorted by key = 4 * scale index + f, where the location in quarters
    L gives the centre n = floor((L + 2) / 4) and f = (L + 2) mod 4; each key's symbols
    s - n, in that order, are coded with table ``key`` (:func:`table_frequencies`), one
    coder call per key. Then the escapes, in the same order: s - lo, uniform over the
    channel's hi - lo + 1 values. Decoded symbols outside [lo, hi] are a corrupt file.
    """
    channels = [c for c in range(location.shape[0]) if models[first + c].hi > models[first + c].lo]
    if not channels:
        return
    quarters = location[channels].astype(np.int64).reshape(len(channels), -1)
    quarters += 2
    centre = quarters >> 2  # floor((L + 2) / 4)
    keys = (scale_index[channels].reshape(len(channels), -1) << 2) | (quarters & 3)
    keys = keys.astype(np.int16).reshape(-1)
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=TABLE_KEYS)
    used = np.flatnonzero(counts)
    tables = [_table(int(key)) for key in used]
    # each sorted symbol's table radius
    radius = np.repeat(np.array([r for r, _ in tables], dtype=np.int64), counts[used])
    lo = np.array([models[first + c].lo for c in channels], dtype=np.int64)
    hi = np.array([models[first + c].hi for c in channels], dtype=np.int64)
    positions = centre.shape[1]
    targets = [(first + c, rows, cols) for c in channels]
    if decoding:
        decoded = np.empty(keys.size, dtype=np.int32)
        start = 0
        for (_, table), count in zip(tables, counts[used].tolist()):
            decoded[start : start + count] = coder.decode(table, count)
            start += count
        symbols = decoded - radius
        symbols += centre.reshape(-1)[order]
        escaped = np.flatnonzero(decoded > 2 * radius)
        if escaped.size:
            channel = order[escaped] // positions
            sizes = (hi - lo + 1)[channel].astype(np.int32)
            uniform = np.asarray(coder.decode(constriction.stream.model.Uniform(), sizes), dtype=np.int64)
            symbols[escaped] = uniform + lo[channel]
        latent = np.empty(keys.size, dtype=np.int64)
        latent[order] = symbols
        latent = latent.reshape(len(channels), positions)
        if np.any(latent.min(axis=1) < lo) or np.any(latent.max(axis=1) > hi):
            raise FormatError("entropy-coded data is corrupt (a latent symbol outside its range)")
        for i, at in enumerate(targets):
            padded[at] = latent[i].reshape(padded[at].shape)
        return
    values = np.stack([padded[at].reshape(-1) for at in targets]).reshape(-1)[order].astype(np.int64)
    offsets = values - centre.reshape(-1)[order]
    outside = np.abs(offsets) > radius
    indices = np.where(outside, 2 * radius + 1, offsets + radius).astype(np.int32)
    start = 0
    for (_, table), count in zip(tables, counts[used].tolist()):
        coder.encode(indices[start : start + count], table)
        start += count
    escaped = np.flatnonzero(outside)
    if escaped.size:
        channel = order[escaped] // positions
        sizes = (hi - lo + 1)[channel].astype(np.int32)
        coder.encode(
            (values[escaped] - lo[channel]).astype(np.int32), constriction.stream.model.Uniform(), sizes
        )


def weight_model(tensor_ints: np.ndarray) -> GroupModel:
    """The stored model of a quantized weight tensor: zero-mean Laplace with its ML scale."""
    flat = tensor_ints.reshape(-1)
    scale = float(np.abs(flat).mean()) if flat.size else 1.0
    lo = int(flat.min()) if flat.size else 0
    hi = int(flat.max()) if flat.size else 0
    return GroupModel.stored(0.0, max(scale, 0.1), lo, hi)
