"""Range coding of integer symbols is lossless and close to the model's ideal code length."""

from __future__ import annotations

import hashlib

import constriction
import numpy as np
import pytest
import torch

from ccnn.encoder.entropy_model import LatentEntropyModel, _laplace_bits, _neighbour_total
from ccnn.errors import FormatError
from ccnn.format import entropy
from ccnn.format.entropy import (
    CONTEXT_PARAMETERS,
    DIAGONAL,
    DIRECT,
    PATTERN_PARAMETERS,
    GroupModel,
    context_phases,
    decode_groups,
    decode_latent,
    encode_groups,
    encode_latent,
    estimate_bits,
)


def test_groups_roundtrip_and_rate() -> None:
    rng = np.random.default_rng(0)
    groups = [
        np.round(rng.laplace(0.0, 2.0, size=5000)).astype(np.int32),
        np.round(rng.laplace(30.0, 0.3, size=777)).astype(np.int32),
        np.full(100, 4, dtype=np.int32),  # a constant group costs nothing
    ]
    models = [GroupModel.stored(0.0, 2.0, g.min(), g.max()) for g in groups[:2]]
    models.append(GroupModel.stored(4.0, 1.0, 4, 4))
    data = encode_groups(groups, models)
    decoded = decode_groups(data, [g.size for g in groups], models)
    for original, back in zip(groups, decoded):
        assert np.array_equal(original, back)
    ideal = sum(estimate_bits(g, m) for g, m in zip(groups, models))
    assert 8 * len(data) <= ideal * 1.01 + 64


#: sha256 of the 644 tables' frequencies (uint64, little-endian, key order) of format version 7.
TABLES_SHA256 = "01dfc259f776ed1c5d50984460030be57dcf883ccf99c80183b663aead978178"


def _correlated_latent(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth field plus noise: neighbours predict each value, as in a trained latent."""
    channels, height, width = shape
    rows = np.arange(height).reshape(1, -1, 1) / 4.0
    cols = np.arange(width).reshape(1, 1, -1) / 5.0
    field = 8.0 * np.sin(rows + cols + np.arange(channels).reshape(-1, 1, 1))
    latent = np.round(field + rng.laplace(0.0, 0.7, size=shape)).astype(np.int32)
    latent[-1] = 3  # a constant channel costs nothing
    return latent


@pytest.mark.parametrize("tabled", [True, False])
def test_context_coding_roundtrip_and_rate(tabled: bool) -> None:
    rng = np.random.default_rng(0)
    for shape, levels in [
        ((3, 17, 23), 1),
        ((3, 17, 23), 3),
        ((2, 1, 5), 2),
        ((2, 6, 1), 2),
        ((4, 32, 48), 2),
    ]:
        latent = _correlated_latent(rng, shape)
        model = LatentEntropyModel(shape[0], context_levels=levels)
        y = torch.from_numpy(latent.astype(np.float32))[None]
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            model.bits(y).backward()
            optimizer.step()
        models = model.group_models(latent)
        context = model.stored_context()
        assert context is not None and context.shape == (levels, shape[0], CONTEXT_PARAMETERS)
        data = encode_latent(latent, models, context, tabled=tabled)
        assert np.array_equal(decode_latent(data, shape, models, context, tabled=tabled), latent)
        if shape == (4, 32, 48):
            # the coded size is what training optimised, and beats the per-channel model
            trained_bits = float(model.bits(y).detach())
            assert 8 * len(data) <= trained_bits * 1.03 + 64
            plain = encode_latent(latent, models, None, tabled=tabled)
            assert len(data) < 0.8 * len(plain)


@pytest.mark.parametrize("tabled", [True, False])
def test_context_decoding_is_deterministic_and_rejects_garbage(tabled: bool) -> None:
    rng = np.random.default_rng(1)
    shape = (2, 9, 11)
    latent = _correlated_latent(rng, shape)
    models = [GroupModel.stored(0.0, 2.0, int(c.min()), int(c.max())) for c in latent]
    context = np.array([[[0.5, 0.0, 1.0, 0.3, 0.5, 0.0, 1.0, -0.2]] * 2] * 2)
    data = encode_latent(latent, models, context, tabled=tabled)
    assert data == encode_latent(latent, models, context, tabled=tabled)
    with pytest.raises(FormatError):
        decode_latent(data[:-1], shape, models, context, tabled=tabled)


def test_context_phases_cover_every_position_once() -> None:
    """The coarse-to-fine order codes each position exactly once, and only from known neighbours."""
    for height, width, levels in [(7, 10, 1), (9, 13, 2), (16, 16, 3), (1, 5, 2)]:
        count = np.zeros((height, width), dtype=int)
        for phase in context_phases(height, width, levels):
            for r, c in zip(phase.rows, phase.cols):
                for dy, dx in phase.pattern:
                    y, x = r + dy * phase.distance, c + dx * phase.distance
                    if 0 <= y < height and 0 <= x < width:
                        assert count[y, x] == 1
            count[phase.rows, phase.cols] += 1
        assert np.all(count == 1)


def test_second_context_level_saves_bits_on_a_smooth_latent() -> None:
    rng = np.random.default_rng(2)
    shape = (3, 48, 64)
    latent = _correlated_latent(rng, shape)
    y = torch.from_numpy(latent.astype(np.float32))[None]
    sizes = {}
    for levels in (1, 2):
        model = LatentEntropyModel(shape[0], context_levels=levels)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            model.bits(y).backward()
            optimizer.step()
        sizes[levels] = len(
            encode_latent(latent, model.group_models(latent), model.stored_context(), tabled=True)
        )
    assert sizes[2] < sizes[1]


def test_cross_channel_activity_saves_bits_when_channels_are_busy_together() -> None:
    """Channels whose scale varies in the same places: the shared-activity term g pays."""
    rng = np.random.default_rng(4)
    channels, height, width = 6, 48, 64
    activity = np.exp(2.0 * np.sin(np.arange(height).reshape(-1, 1) / 6.0 + np.arange(width) / 9.0))
    latent = np.round(rng.laplace(0.0, 1.0, size=(channels, height, width)) * activity).astype(np.int32)
    y = torch.from_numpy(latent.astype(np.float32))[None]
    sizes = {}
    for shared in (False, True):
        model = LatentEntropyModel(channels, context_levels=2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            model.bits(y).backward()
            optimizer.step()
            if not shared:
                with torch.no_grad():
                    model.context_weights[..., PATTERN_PARAMETERS - 1] = 0.0  # g
        context = model.stored_context()
        assert context is not None
        models = model.group_models(latent)
        data = encode_latent(latent, models, context, tabled=True)
        assert np.array_equal(decode_latent(data, latent.shape, models, context, tabled=True), latent)
        sizes[shared] = len(data)
    assert sizes[True] < 0.97 * sizes[False]


def test_training_rate_is_the_discretised_laplace_and_keeps_its_gradient_in_the_tails() -> None:
    """The training rate against the mass between two Laplace CDFs in float64, near the
    location and far out, where that difference underflows: there the rate must grow by
    1 / (scale ln 2) bits per unit, not stop at a floor with no gradient."""
    location, scale = 0.4, 1.3

    def cdf(x: np.ndarray) -> np.ndarray:
        z = (x - location) / scale
        return np.where(z < 0, 0.5 * np.exp(z), 1.0 - 0.5 * np.exp(-z))

    values = np.array([-7.0, -3.2, -0.7, -0.1, 0.0, 0.4, 0.6, 0.9, 1.6, 5.0, 11.0])
    expected = -np.log2(cdf(values + 0.5) - cdf(values - 0.5))
    loc, sc = torch.tensor(location), torch.tensor(scale)
    got = [float(_laplace_bits(torch.tensor(v, dtype=torch.float32), loc, sc)) for v in values]
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    for far in (300.0, -300.0):
        x = torch.tensor(far, requires_grad=True)
        bits = _laplace_bits(x, loc, sc)
        bits.backward()
        tail = (abs(far - location) - 0.5) / scale / np.log(2) - np.log2(0.5 * (1 - np.exp(-1 / scale)))
        assert float(bits.detach()) == pytest.approx(tail, rel=1e-5)
        assert float(x.grad) == pytest.approx(np.sign(far) / (scale * np.log(2)), rel=1e-4)


def test_neighbour_totals_sum_the_pattern_inside_the_plane() -> None:
    plane = np.random.default_rng(5).integers(-9, 9, size=(2, 7, 9)).astype(np.float32)
    for pattern in (DIAGONAL, DIRECT):
        for distance in (1, 2, 4):
            got = _neighbour_total(torch.from_numpy(plane)[None], pattern, distance)[0].numpy()
            expected = np.zeros_like(plane)
            for r in range(7):
                for c in range(9):
                    for dy, dx in pattern:
                        y, x = r + dy * distance, c + dx * distance
                        if 0 <= y < 7 and 0 <= x < 9:
                            expected[:, r, c] += plane[:, y, x]
            assert np.array_equal(got, expected)


def _reference_context_stream(
    latent: np.ndarray, models: list[GroupModel], context: np.ndarray, tabled: bool
) -> bytes:
    """The context coder written plainly, one channel and one position list at a time.

    The code that :func:`encode_latent` replaced (format version 4 as first written): the
    stream it makes is the format, so the fast coder must make the same bytes. ``tabled``
    (version 7): each group of channels (docs/format.md) is collected, stably sorted by table
    and coded one symbol at a time, then its escapes.
    """
    channels, height, width = latent.shape
    encoder = constriction.stream.queue.RangeEncoder()
    known = np.zeros((height, width), dtype=bool)
    for phase in context_phases(height, width, context.shape[0]):
        rows, cols = phase.rows, phase.cols
        if rows.size == 0:
            continue
        if phase.level > 0:
            total = np.zeros((channels, rows.size), dtype=np.int64)
            total_abs = np.zeros_like(total)
            count = np.zeros(rows.shape, dtype=np.int64)
            for dy, dx in phase.pattern:
                r, c = rows + dy * phase.distance, cols + dx * phase.distance
                inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
                r, c = np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)
                use = inside & known[r, c]
                values = np.where(use, latent[:, r, c], 0).astype(np.int64)
                total += values
                total_abs += np.abs(values)
                count += use
            count = np.maximum(count, 1)
            all_abs = total_abs.sum(axis=0) / (count * channels)
        pending: list[tuple[int, int, int, int, int]] = []  # (key, centre, symbol, lo, hi) of a group
        group = max(1, entropy.CONTEXT_VALUES // rows.size)
        for c in range(channels):
            model = models[c]
            if tabled and phase.level > 0 and c % group == 0:
                _reference_tabled(encoder, pending)
            if model.hi == model.lo:
                continue
            symbols = latent[c, rows, cols]
            if phase.level == 0:
                encoder.encode((symbols - model.lo).astype(np.int32), entropy._categorical(model))
                continue
            half = 0 if phase.pattern == DIAGONAL else PATTERN_PARAMETERS
            weight, offset, slope, shared = context[phase.level - 1, c, half : half + PATTERN_PARAMETERS]
            location = np.round(weight * (total[c] / count) * 4) / 4
            log2_scale = (
                offset
                + slope * np.log2(entropy.CONTEXT_OFFSET + total_abs[c] / count)
                + shared * np.log2(entropy.CONTEXT_OFFSET + all_abs)
            )
            index = np.clip(np.round(log2_scale * 8), -48, 112).astype(np.int64)
            if tabled:
                for quarters, scale_index, symbol in zip(location * 4, index + 48, symbols):
                    centre, quarter = divmod(int(quarters) + 2, 4)
                    pending.append((4 * int(scale_index) + quarter, centre, int(symbol), model.lo, model.hi))
                continue
            scale = entropy._SCALE_TABLE[index + 48]
            laplace = constriction.stream.model.QuantizedLaplace(model.lo, model.hi)
            encoder.encode(symbols.astype(np.int32), laplace, location, scale)
        _reference_tabled(encoder, pending)
        known[rows, cols] = True
    return encoder.get_compressed().astype("<u4").tobytes()


def _reference_tabled(encoder: object, pending: list[tuple[int, int, int, int, int]]) -> None:
    """Code a group's symbols in stable key order, one at a time, then its escapes; empty the list."""
    ordered = sorted(pending, key=lambda item: item[0])  # Python's sort is stable
    for key, centre, symbol, _, _ in ordered:
        frequencies = entropy.table_frequencies(key)
        radius = (frequencies.size - 2) // 2
        offset = symbol - centre
        index = offset + radius if abs(offset) <= radius else 2 * radius + 1
        table = constriction.stream.model.Categorical(frequencies, perfect=False)
        encoder.encode(np.array([index], dtype=np.int32), table)
    for key, centre, symbol, lo, hi in ordered:
        radius = (entropy.table_frequencies(key).size - 2) // 2
        if abs(symbol - centre) > radius:
            uniform = constriction.stream.model.Uniform(hi - lo + 1)
            encoder.encode(np.array([symbol - lo], dtype=np.int32), uniform)
    pending.clear()


def test_tables_are_the_discretised_laplace_and_frozen() -> None:
    """Each table is the Laplace of its scale and centre (within the frequencies' rounding and
    the escape's share), and the integers of all 644 are those of format version 7: a change
    to how they are computed is a change of format."""
    digest = hashlib.sha256()
    for key in range(entropy.TABLE_KEYS):
        frequencies = entropy.table_frequencies(key)
        digest.update(frequencies.astype("<u8").tobytes())
        scale_index, quarter = divmod(key, 4)
        scale, mu = entropy._SCALE_TABLE[scale_index], quarter / 4 - 0.5
        radius = (frequencies.size - 2) // 2
        assert radius == entropy.table_radius(scale_index)
        assert radius >= min(4096, 12 * scale - 1) and radius <= max(1, 12 * scale + 1)
        edges = np.arange(-radius, radius + 2) - 0.5
        cdf = entropy.laplace_cdf(edges, mu, scale)
        expected = np.append(np.diff(cdf), 1.0 - (cdf[-1] - cdf[0]))
        measured = frequencies / frequencies.sum()
        assert np.all(np.abs(measured - expected) <= 1e-6 + 1e-3 * expected), key
    assert digest.hexdigest() == TABLES_SHA256


@pytest.mark.parametrize(
    ("shape", "levels", "spread"),
    [
        ((5, 17, 23), 1, 2.0),
        ((5, 17, 23), 2, 2.0),
        ((4, 32, 48), 3, 0.7),
        ((3, 1, 5), 2, 2.0),
        ((3, 6, 1), 2, 2.0),
        ((3, 2, 2), 4, 2.0),
        ((6, 20, 28), 2, 900.0),  # large values: more distinct neighbour means than positions
    ],
)
@pytest.mark.parametrize("group_values", [None, 1, 40])
def test_context_stream_is_the_reference_coders(
    shape: tuple[int, int, int],
    levels: int,
    spread: float,
    group_values: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Phase at a time over every channel, the coder puts the same symbols with the same
    parameters in the same order as the plain per-channel coder: the same bytes, decoded back.
    So does it a few channels at a time (``group_values``: one channel, a few), as a large
    image is coded."""
    if group_values is not None:
        monkeypatch.setattr(entropy, "CONTEXT_VALUES", group_values)
    rng = np.random.default_rng(levels * 100 + shape[1])
    channels = shape[0]
    latent = np.round(rng.laplace(0.0, spread, size=shape)).astype(np.int32)
    latent[1] = -2  # a constant channel codes nothing but counts in the cross-channel term
    latent[2] = np.clip(latent[2], -3, 3)
    if channels > 3:
        latent[3] = np.clip(latent[3], -3, 3)  # two neighbouring channels with the same range
        latent[3, 0, 0], latent[2, 0, 0] = -3, -3
        latent[3, -1, -1], latent[2, -1, -1] = 3, 3
    models = [GroupModel.stored(0.3 * c, 1.0 + c, int(p.min()), int(p.max())) for c, p in enumerate(latent)]
    steps = entropy.CONTEXT_STEPS
    ints = rng.integers(-128, 128, size=(levels, channels, CONTEXT_PARAMETERS))
    ints[0, 0] = (40, 8, 10, 4, 60, -8, 12, 6)  # one sensible channel among random ones
    context = ints * steps
    data = encode_latent(latent, models, context, tabled=False)
    assert data == _reference_context_stream(latent, models, context, tabled=False)
    assert np.array_equal(decode_latent(data, shape, models, context, tabled=False), latent)
    data = encode_latent(latent, models, context, tabled=True)
    assert data == _reference_context_stream(latent, models, context, tabled=True)
    assert np.array_equal(decode_latent(data, shape, models, context, tabled=True), latent)


def test_symbols_beyond_their_table_are_escaped_and_come_back() -> None:
    """A context that predicts the smallest scale (radius 1) around 0, and a latent with large
    values: most of them are escapes, coded uniformly in [lo, hi]; the stream is the plain
    coder's, and decodes back. A corrupt stream that decodes outside [lo, hi] is refused."""
    rng = np.random.default_rng(5)
    shape = (3, 12, 14)
    latent = np.where(rng.random(shape) < 0.3, rng.integers(-300, 300, size=shape), 0).astype(np.int32)
    models = [GroupModel.stored(0.0, 50.0, int(p.min()), int(p.max())) for p in latent]
    ints = np.zeros((2, shape[0], CONTEXT_PARAMETERS), dtype=np.int64)
    ints[..., 1::PATTERN_PARAMETERS] = -128  # a = -16: log2(scale) clipped to -6, radius 1
    context = ints * entropy.CONTEXT_STEPS
    assert entropy.table_radius(0) == 1
    data = encode_latent(latent, models, context, tabled=True)
    assert data == _reference_context_stream(latent, models, context, tabled=True)
    assert np.array_equal(decode_latent(data, shape, models, context, tabled=True), latent)
    # read with ranges of -2..2 and a context that doubles its neighbours' mean: the tables'
    # centres leave the range, and the decoder says the stream is corrupt
    narrow = [GroupModel.stored(0.0, 50.0, -2, 2) for _ in latent]
    doubling = ints.copy()
    doubling[..., 0::PATTERN_PARAMETERS] = 127
    with pytest.raises(FormatError, match="outside its range"):
        decode_latent(data, shape, narrow, doubling * entropy.CONTEXT_STEPS, tabled=True)
