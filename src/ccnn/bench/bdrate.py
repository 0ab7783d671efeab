"""Bjøntegaard deltas on rate-distortion curves, with monotone piecewise-cubic (PCHIP) interpolation.

BD-rate is the average relative rate difference of a test curve against an anchor at equal
quality, over the quality range both curves cover; BD-PSNR is the average quality difference at
equal rate, over the log-rate range both cover. Interpolation is PCHIP (Fritsch–Carlson, the
method of the ``bjontegaard`` package and of the JVET common-test-conditions sheets since the
cubic fit of VCEG-M33 overshoots), integrated exactly. Curves are the averaged curves of a
benchmark (one point per quality setting), so no per-image averaging of deltas happens here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: A BD figure measured over less than this share of the narrower curve's quality range speaks
#: for a small part of the curves only: the benchmark warns and the report says so beside it
#: (``fast``'s "-32% against JPEG" covered 24.1-26.6 dB, a fraction of JPEG's range).
MIN_OVERLAP = 0.75


class Pchip:
    """A monotone piecewise-cubic Hermite interpolant through ``(x, y)`` (``x`` strictly increasing).

    Derivatives follow Fritsch and Carlson with SciPy's ``PchipInterpolator`` end conditions;
    two points give the straight line.
    """

    def __init__(self, x: Sequence[float], y: Sequence[float]) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.ndim != 1 or self.x.shape != self.y.shape or len(self.x) < 2:
            raise ValueError("need at least two points, as two 1-D sequences of the same length")
        h = np.diff(self.x)
        if np.any(h <= 0):
            raise ValueError("x must be strictly increasing")
        m = np.diff(self.y) / h
        d = np.empty_like(self.y)
        if len(self.x) == 2:
            d[:] = m[0]
        else:
            for k in range(1, len(self.x) - 1):
                if m[k - 1] * m[k] <= 0:
                    d[k] = 0.0
                else:
                    w1 = 2 * h[k] + h[k - 1]
                    w2 = h[k] + 2 * h[k - 1]
                    d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
            d[0] = self._edge(h[0], h[1], m[0], m[1])
            d[-1] = self._edge(h[-1], h[-2], m[-1], m[-2])
        self.h = h
        self.d = d
        # y = y0 + d0 t + c2 t^2 + c3 t^3 on each interval, t = x - x0
        self.c2 = (3 * m - 2 * d[:-1] - d[1:]) / h
        self.c3 = (d[:-1] + d[1:] - 2 * m) / h**2

    @staticmethod
    def _edge(h0: float, h1: float, m0: float, m1: float) -> float:
        d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(d) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
            return 3 * m0
        return float(d)

    def _segment(self, value: float) -> int:
        return int(np.clip(np.searchsorted(self.x, value, side="right") - 1, 0, len(self.x) - 2))

    def __call__(self, value: float) -> float:
        """The interpolant at ``value`` (cubic extrapolation of the end pieces outside the range)."""
        k = self._segment(value)
        t = value - self.x[k]
        return float(self.y[k] + self.d[k] * t + self.c2[k] * t**2 + self.c3[k] * t**3)

    def _antiderivative(self, k: int, t: float) -> float:
        return float(self.y[k] * t + self.d[k] * t**2 / 2 + self.c2[k] * t**3 / 3 + self.c3[k] * t**4 / 4)

    def integrate(self, lo: float, hi: float) -> float:
        """The exact integral of the interpolant from ``lo`` to ``hi`` (within the data range)."""
        if hi < lo:
            return -self.integrate(hi, lo)
        total = 0.0
        for k in range(len(self.h)):
            a = max(lo, self.x[k])
            b = min(hi, self.x[k + 1])
            if b > a:
                total += self._antiderivative(k, b - self.x[k]) - self._antiderivative(k, a - self.x[k])
        return total


def _curve(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by ``x``, duplicates of ``x`` merged by averaging their ``y``."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    unique = np.unique(xs)
    merged = np.array([ys[xs == value].mean() for value in unique])
    return unique, merged


def _delta(
    anchor_x: Sequence[float], anchor_y: Sequence[float], test_x: Sequence[float], test_y: Sequence[float]
) -> float | None:
    """Mean of (test - anchor) of y as a function of x, over the x range both cover; None if none."""
    ax, ay = _curve(anchor_x, anchor_y)
    tx, ty = _curve(test_x, test_y)
    if len(ax) < 2 or len(tx) < 2:
        return None
    lo = max(ax[0], tx[0])
    hi = min(ax[-1], tx[-1])
    if not hi > lo:
        return None
    return (Pchip(tx, ty).integrate(lo, hi) - Pchip(ax, ay).integrate(lo, hi)) / (hi - lo)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float | None:
    """BD-rate of the test curve against the anchor, in percent (negative: the test needs fewer bits).

    Rates are any positive measure (bpp, bytes); quality is PSNR or another dB measure. Returns
    None when the curves' quality ranges do not overlap.
    """
    delta = _delta(
        anchor_quality, np.log(np.asarray(anchor_rate, dtype=np.float64)),
        test_quality, np.log(np.asarray(test_rate, dtype=np.float64)),
    )  # fmt: skip
    return None if delta is None else (math.exp(delta) - 1.0) * 100.0


def bd_psnr(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float | None:
    """BD-PSNR of the test curve against the anchor in dB (positive: the test is better), or None."""
    return _delta(
        np.log(np.asarray(anchor_rate, dtype=np.float64)), anchor_quality,
        np.log(np.asarray(test_rate, dtype=np.float64)), test_quality,
    )  # fmt: skip


def quality_at_rate(rate: Sequence[float], quality: Sequence[float], target: float) -> float | None:
    """Quality of a curve at ``target`` rate (PCHIP in log-rate), or None outside the measured range."""
    x, y = _curve(np.log(np.asarray(rate, dtype=np.float64)), quality)
    if len(x) < 2 or not x[0] <= math.log(target) <= x[-1]:
        return None
    return Pchip(x, y)(math.log(target))


def rate_at_quality(rate: Sequence[float], quality: Sequence[float], target: float) -> float | None:
    """Rate of a curve at ``target`` quality (PCHIP of log-rate, as :func:`bd_rate` interpolates),
    or None outside the measured range.

    The one-point limit of a BD-rate: a single test point's rate against this curve's at its
    quality (``ccnn tune --paper``, whose trials are one point each).
    """
    x, y = _curve(quality, np.log(np.asarray(rate, dtype=np.float64)))
    if len(x) < 2 or not x[0] <= target <= x[-1]:
        return None
    return math.exp(Pchip(x, y)(target))


def overlap_share(quality_a: Sequence[float], quality_b: Sequence[float]) -> float | None:
    """The share (0 to 1) of the narrower curve's quality range that both curves cover.

    None when a curve has fewer than two distinct finite points (no range, no BD figure).
    """
    a, _ = _curve(quality_a, quality_a)
    b, _ = _curve(quality_b, quality_b)
    if len(a) < 2 or len(b) < 2:
        return None
    shared = min(a[-1], b[-1]) - max(a[0], b[0])
    narrower = min(a[-1] - a[0], b[-1] - b[0])
    return max(0.0, float(shared / narrower))
