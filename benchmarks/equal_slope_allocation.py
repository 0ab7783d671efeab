"""How far ccnn's per-image rate allocation is from spending bits at one price of a dB everywhere.

The Kodak benchmark averages PSNR per image against the mean bpp. For a fixed set of per-image
rate-distortion curves, that mean curve is highest when every image stops at the same marginal
price, ``d bpp / d PSNR``, whatever its content. This script reads a bench's ``results.csv``,
and for each image interpolates its measured ccnn points (PCHIP in log bpp, the interpolation
of the BD-rates), then:

* prints, per quality level, the spread of the images' marginal prices at their measured
  points, next to ``config.QUALITY_SLOPES`` (what the PSNR loss asks for): a wide spread means
  the allocation is far from equal-slope;
* builds the *equal-slope curve*: for a range of prices, each image's point on its own curve
  that minimises ``bpp - price * PSNR`` (within its measured range), averaged over images; and
  prints the BD-rate against the anchor (JPEG by default) of the measured mean curve and of
  the equal-slope curve, and the mean and median of the images' own BD-rates.

The equal-slope curve is an estimate of what a perfect allocation would give with the same
per-image curves, not a measured codec: it interpolates between measured points. Nothing is
encoded; it runs in about a second.

    python benchmarks/equal_slope_allocation.py docs/results/kodak/results.csv
    python benchmarks/equal_slope_allocation.py RESULTS.csv --images kodim01,kodim05 --anchor webp
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ccnn.bench.bdrate import Pchip, bd_rate
from ccnn.settings import QUALITY_SLOPES

Curve = tuple[np.ndarray, np.ndarray]  # mean bpp, mean PSNR


def read_curves(path: Path, codec: str, images: set[str] | None) -> dict[str, dict[int, tuple[float, float]]]:
    """``{image: {quality: (bpp, psnr)}}`` for one codec, rows with an error left out."""
    curves: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["codec"] != codec or row.get("error") or (images and row["image"] not in images):
                continue
            curves[row["image"]][int(row["quality"])] = (float(row["bpp"]), float(row["psnr_rgb"]))
    return dict(curves)


def mean_curve(curves: dict[str, dict[int, tuple[float, float]]]) -> Curve:
    """Mean bpp and mean PSNR per quality level, over the images that have every level."""
    levels = sorted(set.intersection(*(set(points) for points in curves.values())))
    bpp = np.array([np.mean([curves[image][q][0] for image in curves]) for q in levels])
    psnr = np.array([np.mean([curves[image][q][1] for image in curves]) for q in levels])
    return bpp, psnr


def marginal_prices(points: dict[int, tuple[float, float]]) -> dict[int, float]:
    """``d bpp / d PSNR`` at each measured point of one image (from the PCHIP slope in log bpp)."""
    levels = sorted(points, key=lambda q: points[q][0])
    log_bpp = np.log([points[q][0] for q in levels])
    psnr = np.array([points[q][1] for q in levels])
    if len(levels) < 2 or np.any(np.diff(log_bpp) <= 0):
        return {}
    curve = Pchip(log_bpp, psnr)
    return {q: (points[q][0] / curve.d[k] if curve.d[k] > 0 else math.inf) for k, q in enumerate(levels)}


def equal_slope_curve(curves: dict[str, dict[int, tuple[float, float]]], prices: np.ndarray) -> Curve:
    """Mean (bpp, PSNR) when every image stops where ``bpp - price * PSNR`` is least on its curve."""
    grids = []
    for points in curves.values():
        ordered = sorted(points.values())
        log_bpp = np.log([bpp for bpp, _ in ordered])
        curve = Pchip(log_bpp, [psnr for _, psnr in ordered])
        grid = np.linspace(log_bpp[0], log_bpp[-1], 2000)
        grids.append((np.exp(grid), np.array([curve(x) for x in grid])))
    mean_bpp, mean_psnr = [], []
    for price in prices:
        chosen = [(bpp[i], psnr[i]) for bpp, psnr in grids for i in [int(np.argmin(bpp - price * psnr))]]
        mean_bpp.append(np.mean([b for b, _ in chosen]))
        mean_psnr.append(np.mean([p for _, p in chosen]))
    return np.array(mean_bpp), np.array(mean_psnr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a bench's results.csv")
    parser.add_argument("--codec", default="ccnn")
    parser.add_argument("--anchor", default="jpeg", help="codec of the same csv to take BD-rates against")
    parser.add_argument("--images", help="comma-separated image names (default: all)")
    args = parser.parse_args()
    images = set(args.images.split(",")) if args.images else None

    tested = read_curves(args.results, args.codec, images)
    anchor = read_curves(args.results, args.anchor, images)
    if not tested or not anchor:
        raise SystemExit(f"error: no {args.codec} or {args.anchor} rows in {args.results}")
    anchor = {image: anchor[image] for image in tested if image in anchor}

    print(f"{len(tested)} images; marginal price d bpp / d PSNR at the measured points")
    print("quality  target   median   25%-75%          min-max")
    prices_by_level: dict[int, list[float]] = defaultdict(list)
    for points in tested.values():
        for quality, price in marginal_prices(points).items():
            prices_by_level[quality].append(price)
    for quality in sorted(prices_by_level):
        values = np.array(prices_by_level[quality])
        target = QUALITY_SLOPES[quality - 1] if quality <= len(QUALITY_SLOPES) else math.nan
        q25, q50, q75 = np.percentile(values, [25, 50, 75])
        print(
            f"q{quality:<7} {target:<8.3f} {q50:<8.3f} {q25:.3f}-{q75:.3f}      "
            f"{values.min():.3f}-{values.max():.3f}"
        )

    anchor_bpp, anchor_psnr = mean_curve(anchor)
    measured_bpp, measured_psnr = mean_curve(tested)
    equal_bpp, equal_psnr = equal_slope_curve(tested, np.geomspace(0.01, 1.0, 60))
    curves = {"measured": (measured_bpp, measured_psnr), "equal-slope": (equal_bpp, equal_psnr)}
    for name, (bpp, psnr) in curves.items():
        order = np.argsort(bpp)
        bpp, psnr = bpp[order], psnr[order]
        keep = np.concatenate([[True], np.diff(bpp) > 1e-9])
        value = bd_rate(anchor_bpp, anchor_psnr, bpp[keep], psnr[keep])
        shown = "n/a" if value is None else f"{value:+.1f}%"
        print(f"{name:<12} BD-rate against {args.anchor}: {shown}  ({bpp[0]:.3f}-{bpp[-1]:.3f} bpp)")
    per_image = [bd_rate(*zip(*anchor[image].values()), *zip(*tested[image].values())) for image in anchor]
    values = [value for value in per_image if value is not None]
    if values:
        mean, median = np.mean(values), np.median(values)
        summary = f"mean {mean:+.1f}%, median {median:+.1f}% ({len(values)} images)"
        print(f"per image    BD-rate against {args.anchor}: {summary}")


if __name__ == "__main__":
    main()
