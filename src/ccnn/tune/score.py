"""A trial's score: BD-rate against JPEG on the images' averaged rate-PSNR curve.

The curves are averaged over the images per quality setting, as ``ccnn bench`` averages them
(:func:`ccnn.bench.report.averaged_curves`, the CompressAI convention), and compared with
:mod:`ccnn.bench.bdrate`'s PCHIP BD-rate. JPEG is :class:`ccnn.bench.codecs.JpegCodec` over its
own quality sweep, measured on the same images in the same run. A paper-preset trial is one
point per image (its rate is its searched ratio): its score is the one-point limit of a
BD-rate, its rate against JPEG's at the same PSNR (:func:`ccnn.bench.bdrate.rate_at_quality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bench.bdrate import MIN_OVERLAP, bd_rate, overlap_share, rate_at_quality
from ..bench.codecs import JpegCodec
from ..metrics import bpp as bits_per_pixel
from ..metrics import psnr
from .work import Point, TuneImage


@dataclass(frozen=True)
class Curve:
    """An averaged rate-PSNR curve: one point per quality setting, mean bpp and PSNR over the images."""

    quality: tuple[float | None, ...]
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]

    def as_dict(self) -> dict[str, list[Any]]:
        return {"quality": list(self.quality), "bpp": list(self.bpp), "psnr": list(self.psnr)}

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> Curve:
        return cls(tuple(data["quality"]), tuple(data["bpp"]), tuple(data["psnr"]))

    def psnr_range(self) -> str:
        return _span(self.psnr, ".2f") + " dB" if self.psnr else "—"

    def bpp_range(self) -> str:
        return _span(self.bpp, ".3f") if self.bpp else "—"


def _span(values: Sequence[float], spec: str) -> str:
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}–{high}"


def averaged(points: Sequence[Point], qualities: Sequence[int | None]) -> Curve:
    """The points averaged over the images per quality, in the order of ``qualities``."""
    rows = []
    for quality in qualities:
        at = [p for p in points if p.quality == quality]
        if at:
            rows.append((quality, float(np.mean([p.bpp for p in at])), float(np.mean([p.psnr for p in at]))))
    return Curve(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))


def jpeg_anchor(images: Sequence[TuneImage]) -> tuple[Curve, str]:
    """JPEG's averaged curve on ``images`` over its quality sweep, and its settings in words."""
    codec = JpegCodec()
    points = []
    for image in images:
        height, width = image.pixels.shape[:2]
        for quality in codec.qualities:
            data = codec.encode(image.pixels, quality)
            points.append(
                Point(
                    image=image.name,
                    quality=int(quality),
                    bytes=len(data),
                    bpp=bits_per_pixel(len(data), height, width),
                    psnr=min(psnr(image.pixels, codec.decode(data)), 100.0),
                    seconds=0.0,
                    steps=0,
                    stopped_by_time=False,
                )
            )
    return averaged(points, [int(q) for q in codec.qualities]), f"{codec.label} ({codec.settings()})"


@dataclass(frozen=True)
class Score:
    """A trial's score in percent (lower is better), or why there is none; and how far it reaches.

    ``overlap`` is the share of the narrower curve's PSNR range that both cover (None for a
    one-point trial); below :data:`ccnn.bench.bdrate.MIN_OVERLAP` the BD-rate speaks for a
    sliver of the curves only, and the report marks it.
    """

    value: float | None
    reason: str = ""
    overlap: float | None = None

    @property
    def narrow(self) -> bool:
        return self.overlap is not None and self.overlap < MIN_OVERLAP


def score(curve: Curve, anchor: Curve) -> Score:
    """``curve`` against ``anchor``: BD-rate over several qualities, the equal-PSNR rate for one."""
    if len(curve.bpp) == 1:
        rate = rate_at_quality(anchor.bpp, anchor.psnr, curve.psnr[0])
        if rate is None:
            return Score(
                None,
                f"its PSNR ({curve.psnr[0]:.2f} dB) is outside JPEG's ({anchor.psnr_range()})",
            )
        return Score((curve.bpp[0] / rate - 1.0) * 100.0)
    if len(set(curve.psnr)) < 2:
        return Score(None, "its quality levels gave one PSNR: no curve to compare")
    value = bd_rate(anchor.bpp, anchor.psnr, curve.bpp, curve.psnr)
    share = overlap_share(anchor.psnr, curve.psnr)
    if value is None:
        return Score(
            None, f"its PSNR range ({curve.psnr_range()}) does not overlap JPEG's ({anchor.psnr_range()})"
        )
    return Score(value, overlap=share)


def against(base: Curve, curve: Curve) -> float | None:
    """BD-rate of ``curve`` against ``base`` in percent; None when either is a single point (two
    points at different PSNRs have no rate at equal quality: compare their scores instead)."""
    if len(base.bpp) < 2 or len(curve.bpp) < 2:
        return None
    return bd_rate(base.bpp, base.psnr, curve.bpp, curve.psnr)
