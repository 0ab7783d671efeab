"""Benchmark building blocks: BD-rate, MS-SSIM, the codecs, the cache key and the poster's verdicts."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from ccnn import EncoderOptions
from ccnn.bench.bdrate import (
    MIN_OVERLAP,
    Pchip,
    bd_psnr,
    bd_rate,
    overlap_share,
    quality_at_rate,
    rate_at_quality,
)
from ccnn.bench.codecs import CLASSICAL, CcnnCodec, Codec, JpegCodec, psnr_at_size
from ccnn.bench.report import (
    NARROW_MARK,
    Curve,
    _anchor_lines,
    bd_row,
    bd_table,
    narrow_overlaps,
    side_share_at_rate,
)
from ccnn.bench.reproduce import Comparison, time_to_reach, verdict_extremes
from ccnn.bench.run import BenchImage, measurement_key
from ccnn.metrics import ms_ssim, ms_ssim_min_side, psnr

from .conftest import sample_crop

ANCHOR_RATE = [0.12, 0.25, 0.5, 1.0, 2.0]
ANCHOR_PSNR = [24.0, 27.5, 31.0, 34.0, 38.5]


def test_bd_rate_of_a_constant_rate_factor() -> None:
    for factor in (0.5, 0.8, 1.0, 1.3):
        test_rate = [r * factor for r in ANCHOR_RATE]
        assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, test_rate, ANCHOR_PSNR) == pytest.approx(
            (factor - 1) * 100, abs=1e-9
        )
    # the same curve sampled at other points: PCHIP on a straight line in log-rate is exact
    line_rate = [0.1 * 2**i for i in range(6)]
    line_psnr = [25 + 3 * i for i in range(6)]
    shifted_psnr = [25 + 3 * (i + 0.5) for i in range(5)]
    shifted_rate = [0.1 * 2 ** (i + 0.5) * 0.75 for i in range(5)]
    assert bd_rate(line_rate, line_psnr, shifted_rate, shifted_psnr) == pytest.approx(-25.0, abs=1e-9)


def test_bd_psnr_of_a_constant_offset_and_no_overlap() -> None:
    better = [p + 1.25 for p in ANCHOR_PSNR]
    assert bd_psnr(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, better) == pytest.approx(1.25, abs=1e-9)
    assert bd_psnr(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, ANCHOR_PSNR) == pytest.approx(0.0, abs=1e-12)
    far = [p + 40 for p in ANCHOR_PSNR]
    assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, far) is None
    assert bd_rate(ANCHOR_RATE[:1], ANCHOR_PSNR[:1], ANCHOR_RATE, ANCHOR_PSNR) is None


def test_pchip_is_monotone_and_integrates_exactly() -> None:
    x, y = [0.0, 1.0, 2.5, 3.0, 5.0], [0.0, 2.0, 2.1, 5.0, 9.0]
    curve = Pchip(x, y)
    dense = np.linspace(0, 5, 2001)
    values = np.array([curve(v) for v in dense])
    assert np.all(np.diff(values) >= -1e-12)  # no overshoot on monotone data
    trapezoid = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(dense)))
    assert curve.integrate(0, 5) == pytest.approx(trapezoid, rel=1e-5)
    assert curve.integrate(0.3, 4.2) == pytest.approx(-curve.integrate(4.2, 0.3))
    with pytest.raises(ValueError):
        Pchip([0, 0], [1, 2])


def test_against_reference_implementations() -> None:
    from scipy import interpolate  # the oracles are in the dev extra: a missing one fails

    x, y = np.array([0, 1, 2.5, 3, 5, 7.0]), np.array([0, 2, 2.1, 5, 4, 9.0])
    ours, theirs = Pchip(x, y), interpolate.PchipInterpolator(x, y)
    assert max(abs(ours(v) - theirs(v)) for v in np.linspace(0, 7, 57)) < 1e-12
    assert ours.integrate(0.3, 6.1) == pytest.approx(theirs.integrate(0.3, 6.1), abs=1e-12)
    import bjontegaard

    rate2, psnr2 = [90, 170, 380, 700], [30.2, 33.1, 36.5, 39.0]
    rate1, psnr1 = [100, 200, 400, 800], [30.0, 33.0, 36.0, 39.0]
    assert bd_rate(rate1, psnr1, rate2, psnr2) == pytest.approx(
        bjontegaard.bd_rate(rate1, psnr1, rate2, psnr2, method="pchip"), abs=1e-9
    )
    assert bd_psnr(rate1, psnr1, rate2, psnr2) == pytest.approx(
        bjontegaard.bd_psnr(rate1, psnr1, rate2, psnr2, method="pchip"), abs=1e-9
    )


def test_quality_at_rate() -> None:
    assert quality_at_rate(ANCHOR_RATE, ANCHOR_PSNR, 0.5) == pytest.approx(31.0)
    assert 31.0 < quality_at_rate(ANCHOR_RATE, ANCHOR_PSNR, 0.7) < 34.0
    assert quality_at_rate(ANCHOR_RATE, ANCHOR_PSNR, 0.05) is None
    assert quality_at_rate(ANCHOR_RATE, ANCHOR_PSNR, 3.0) is None


def test_rate_at_quality_is_the_one_point_bd_rate() -> None:
    assert rate_at_quality(ANCHOR_RATE, ANCHOR_PSNR, 31.0) == pytest.approx(0.5)
    assert rate_at_quality(ANCHOR_RATE, ANCHOR_PSNR, 20.0) is None
    # a whole curve at 0.8 times the anchor's rate: its BD-rate, and every point's, is -20%
    for quality, rate in zip(ANCHOR_PSNR[1:-1], ANCHOR_RATE[1:-1]):
        assert 0.8 * rate / rate_at_quality(ANCHOR_RATE, ANCHOR_PSNR, quality) == pytest.approx(0.8)
    middle = 29.0  # between points, nearly the inverse of quality_at_rate (the other interpolant)
    assert quality_at_rate(ANCHOR_RATE, ANCHOR_PSNR, rate_at_quality(ANCHOR_RATE, ANCHOR_PSNR, middle)) == (
        pytest.approx(middle, abs=0.01)
    )


def _curve(name: str, bpp: list[float], psnr: list[float], shares: list[float | None]) -> Curve:
    n = len(bpp)
    codec = Codec(name=name, label=name.upper())
    return Curve(codec, list(range(n)), bpp, psnr, [None] * n, [0.0] * n, [0.0] * n, [], shares)


def test_bd_row_pivots_the_anchor_table_and_shares_read_off_like_psnr() -> None:
    half = [r / 2 for r in ANCHOR_RATE]
    curves = {
        "a": _curve("a", ANCHOR_RATE, ANCHOR_PSNR, [None] * 5),
        "b": _curve("b", half, ANCHOR_PSNR, [0.4, 0.3, 0.2, 0.1, 0.05]),
    }
    row = bd_row(curves["a"], curves["b"])
    assert row["bd_rate"] == pytest.approx(-50.0) and row["bd_rate_ms_ssim"] is None
    assert bd_table(curves, "a") == [row]
    assert bd_row(curves["b"], curves["a"])["bd_rate"] == pytest.approx(100.0)
    share = curves["b"]
    assert side_share_at_rate(share, half[2]) == pytest.approx(0.2)
    assert 0.2 < side_share_at_rate(share, 0.2) < 0.3  # between the points at 0.125 and 0.25 bpp
    assert side_share_at_rate(share, 2.0) is None  # beyond the curve
    assert side_share_at_rate(curves["a"], 0.5) is None  # no shares known


def test_overlap_share_is_of_the_narrower_range() -> None:
    assert overlap_share([20, 30, 40], [25, 35]) == pytest.approx(1.0)  # [25, 35] lies inside
    assert overlap_share([20, 30], [25, 45]) == pytest.approx(0.5)  # 25-30 of 20-30
    assert overlap_share([20, 30], [31, 40]) == 0.0
    assert overlap_share([20], [20, 30]) is None
    assert overlap_share([30, 20, float("nan")], [27.5, 22.5]) == pytest.approx(1.0)  # order, NaN


def test_narrow_overlap_is_marked_and_warned() -> None:
    """A BD-rate over a sliver of the curves is never shown without saying so."""
    jpeg = _curve("jpeg", ANCHOR_RATE, ANCHOR_PSNR, [None] * 5)  # 24.0-38.5 dB
    partly = _curve("part", [0.25, 0.5, 1.0, 2.0], [30.0, 33.0, 36.0, 44.0], [None] * 4)
    # like fast on Kodak: 24.1-26.6 dB, inside JPEG's range, overlapping WIDE's from 25.0 only
    ccnn = _curve("ccnn", [0.1, 0.2, 0.3], [24.1, 25.5, 26.6], [0.3, 0.2, 0.1])
    wide = _curve("wide", [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0], [None] * 4)
    curves = {"jpeg": jpeg, "wide": wide, "ccnn": ccnn, "part": partly}
    rows = {row["codec"]: row for row in bd_table(curves, "jpeg")}
    assert not rows["wide"]["narrow"] and rows["wide"]["overlap_share"] == pytest.approx(1.0)
    assert not rows["ccnn"]["narrow"] and rows["ccnn"]["overlap_share"] == pytest.approx(1.0)
    # part: 30-38.5 dB shared, of its own 14 dB range (narrower than JPEG's 14.5): 61%
    assert rows["part"]["narrow"] and rows["part"]["overlap_share"] == pytest.approx(8.5 / 14)
    assert MIN_OVERLAP > 8.5 / 14

    table = "\n".join(_anchor_lines(curves))
    part_line = next(line for line in table.splitlines() if line.startswith("| PART "))
    assert part_line.count(NARROW_MARK) == 4 and "(61%" in part_line
    assert NARROW_MARK not in next(line for line in table.splitlines() if line.startswith("| WIDE "))
    assert f"{NARROW_MARK} The two curves share less than 75%" in table

    notes = narrow_overlaps(curves)
    assert any(n.startswith("PART against JPEG") and "61%" in n for n in notes), notes
    # ccnn against every codec: WIDE shares 25.0-26.6 dB of ccnn's 24.1-26.6 (64%)
    assert any(n.startswith("CCNN against WIDE") and "25.0–26.6 dB" in n and "64%" in n for n in notes)
    assert not any("WIDE against JPEG" in n or "CCNN against JPEG" in n for n in notes)
    assert not any("PART" in n and "CCNN" in n for n in notes)  # no overlap at all: no BD-rate, no note
    assert len(notes) == len(set(notes)) == 2


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_ms_ssim_sanity() -> None:
    pixels = sample_crop(8, 40, 176, 200)
    assert ms_ssim(pixels, pixels) == pytest.approx(1.0)
    low, high = _jpeg(pixels, 10), _jpeg(pixels, 80)
    assert 0.0 < ms_ssim(pixels, low) < ms_ssim(pixels, high) < 1.0
    assert ms_ssim(pixels[:, :, 0], high[:, :, 0]) > 0.9  # grey images too
    with pytest.raises(ValueError, match="at least 161"):
        ms_ssim(pixels[:100], pixels[:100])
    with pytest.raises(ValueError, match="shape"):
        ms_ssim(pixels, pixels[:170])
    assert ms_ssim_min_side() == 161


def test_ms_ssim_matches_pytorch_msssim() -> None:
    torch = pytest.importorskip("torch")
    import pytorch_msssim as reference

    pixels = sample_crop(10, 30, 171, 203)  # odd sizes: the pooling pads
    decoded = _jpeg(pixels, 20)

    def tensor(a: np.ndarray):
        return torch.from_numpy(a.transpose(2, 0, 1).copy()).float()[None] / 255.0

    expected = float(reference.ms_ssim(tensor(pixels), tensor(decoded), data_range=1.0))
    assert ms_ssim(pixels, decoded) == pytest.approx(expected, abs=2e-6)


def test_classical_codecs_round_trip() -> None:
    pixels = sample_crop()
    ran = 0
    for name, kind in CLASSICAL.items():
        codec = kind()
        if codec.missing() is not None:
            continue
        low, high = codec.qualities[len(codec.qualities) // 4], codec.qualities[-3]
        small, large = codec.encode(pixels, low), codec.encode(pixels, high)
        decoded = codec.decode(large)
        assert decoded.shape == pixels.shape and decoded.dtype == np.uint8, name
        assert len(small) < len(large), name
        assert psnr(pixels, codec.decode(small)) < psnr(pixels, decoded), name
        assert codec.settings() and codec.versions(), name
        ran += 1
    assert ran >= 2  # Pillow always brings JPEG and, in its wheels, WebP


def test_psnr_at_size_interpolates_between_qualities() -> None:
    pixels = sample_crop()
    codec = JpegCodec(qualities=(20, 50, 80))
    sizes = [len(codec.encode(pixels, q)) for q in codec.qualities]
    match = psnr_at_size(codec, pixels, (sizes[0] + sizes[1]) // 2)
    low = psnr(pixels, codec.decode(codec.encode(pixels, 20)))
    mid = psnr(pixels, codec.decode(codec.encode(pixels, 50)))
    assert low < match.psnr < mid
    assert match.nearest_quality in (20, 50)


def test_cache_key_names_settings_quality_and_image() -> None:
    image = BenchImage("a", __import__("pathlib").Path("a.png"), "d1", 8, 8)
    other = BenchImage("a", image.path, "d2", 8, 8)
    jpeg = JpegCodec()
    key = measurement_key(jpeg, 50, image)
    assert key == measurement_key(JpegCodec(qualities=(50,)), 50, image)  # the sweep is not in the key
    assert key != measurement_key(jpeg, 51, image)
    assert key != measurement_key(jpeg, 50, other)
    assert key != measurement_key(JpegCodec(subsampling="4:4:4"), 50, image)
    ccnn_key = measurement_key(CcnnCodec(encoder=EncoderOptions("fast", steps=5)), 2, image)
    assert ccnn_key != measurement_key(CcnnCodec(encoder=EncoderOptions("fast", steps=6)), 2, image)
    assert ccnn_key != measurement_key(
        CcnnCodec(encoder=EncoderOptions("fast", steps=5, seconds=3)), 2, image
    )
    assert ccnn_key != measurement_key(CcnnCodec(encoder=EncoderOptions("default", steps=5)), 2, image)
    assert ccnn_key != measurement_key(
        CcnnCodec(encoder=EncoderOptions("fast", steps=5), fingerprint="other code"), 2, image
    )


def test_verdict_on_the_extremes() -> None:
    def point(ratio: float, outcome: str) -> Comparison:
        return Comparison(0, 1000, ratio, 30.0, 29.0, outcome)

    both = [point(12, "ccnn"), point(5, "jpeg"), point(2, "ccnn")]
    assert verdict_extremes(both)[0] == "supported"
    assert verdict_extremes([point(12, "ccnn"), point(2, "jpeg")])[0] == "partly supported"
    assert verdict_extremes([point(12, "jpeg"), point(2, "jpeg")])[0] == "not supported"
    verdict, detail = verdict_extremes([point(5, "ccnn"), point(20, "n/a")])
    assert verdict == "untested" and "1/1" in detail


def test_time_to_reach() -> None:
    budgets, values = [10, 100, 1000], [20.0, 25.0, 26.0]
    assert time_to_reach(budgets, values, 19.0) == 10
    assert time_to_reach(budgets, values, 22.5) == pytest.approx(math.sqrt(10 * 100))
    assert time_to_reach(budgets, values, 30.0) is None
