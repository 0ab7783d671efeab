"""What a change to ccnn bought, per point, against each image's own curve before the change.

Comparing two runs' mean curves mixes two things: how good each point is, and where on its
curve it landed (a point that moves along the same curve changes "PSNR at the bpp of JPEG"
by up to ±0.2 dB per image). This script takes the old run's ``results.csv`` as each image's
curve (PCHIP in log bpp, the interpolation of the BD-rates), reads it at the bpp of every new
point of the same image, and prints the new PSNR minus that: the gain at the same size.
Points outside the old curve's bpp range are counted and left out. It also prints the
training steps of the new points per level (``steps`` column), since time budgets buy steps.

    git show a6dccba:docs/results/kodak/results.csv > /tmp/old.csv
    python benchmarks/own_curve_gain.py /tmp/old.csv docs/results/kodak/results.csv
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from equal_slope_allocation import read_curves

from ccnn.bench.bdrate import quality_at_rate


def read_steps(path: Path, codec: str) -> dict[int, list[int]]:
    """Training steps of every point of ``codec`` per quality level (rows with steps only)."""
    steps: dict[int, list[int]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["codec"] == codec and row.get("steps"):
                steps[int(row["quality"])].append(int(row["steps"]))
    return dict(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="results.csv of the run before the change")
    parser.add_argument("new", type=Path, help="results.csv of the run after it")
    parser.add_argument("--codec", default="ccnn")
    args = parser.parse_args()
    old = read_curves(args.old, args.codec, None)
    new = read_curves(args.new, args.codec, None)
    gains: dict[int, list[float]] = defaultdict(list)
    outside = 0
    for image, points in sorted(new.items()):
        if image not in old:
            continue
        ordered = sorted(old[image].values())
        for quality, (bpp, psnr) in sorted(points.items()):
            before = quality_at_rate([b for b, _ in ordered], [p for _, p in ordered], bpp)
            if before is None:
                outside += 1
            else:
                gains[quality].append(psnr - before)
    steps = read_steps(args.new, args.codec)
    for quality, values in sorted(gains.items()):
        span = steps.get(quality)
        where = f", steps {min(span)}-{max(span)}" if span else ""
        print(f"q{quality}: {np.mean(values):+.3f} dB over {len(values)} images{where}")
    every = [g for values in gains.values() for g in values]
    print(f"all: {np.mean(every):+.3f} dB over {len(every)} points ({outside} outside the old curve)")


if __name__ == "__main__":
    main()
