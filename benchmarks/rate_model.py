"""Fit rate control's starting model: each quality level's bpp and PSNR against image detail.

Rate control (``ccnn.encoder.rate``) starts from the quality level whose predicted result is
nearest the target, and the prediction depends on the image: at one level, a detailed photo
takes many more bits than a smooth one. Image detail is :func:`ccnn.metrics.block_mean_psnr`
(PSNR of the image against its own 8x8 block means: low is detailed). Per level, least squares
over the images of a ``ccnn bench`` run fits

    log(bpp) = a + b * detail        PSNR = c + d * detail

and prints the table that ``ccnn.settings.RATE_MODELS`` holds for the run's preset (a level
the run lacks takes the mean of its neighbours' coefficients, or the nearest's at an end).

    python benchmarks/rate_model.py docs/results/kodak/results.csv ../shared/data/kodak
    python benchmarks/rate_model.py docs/results/kodak-fast/results.csv ../shared/data/kodak
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from ccnn.imageio import load_image
from ccnn.metrics import block_mean_psnr
from ccnn.settings import MAX_QUALITY


def fit_levels(results: Path, images: Path) -> dict[int, tuple[float, float, float, float]]:
    """(a, b, c, d) per quality level present in ``results`` (ccnn rows only)."""
    rows = [row for row in csv.DictReader(results.open()) if row["codec"] == "ccnn" and not row["error"]]
    names = {row["image"] for row in rows}
    detail = {name: block_mean_psnr(load_image(images / f"{name}.png")) for name in names}
    levels: dict[int, tuple[float, float, float, float]] = {}
    for level in sorted({int(row["quality"]) for row in rows}):
        chosen = [row for row in rows if int(row["quality"]) == level]
        x = np.array([detail[row["image"]] for row in chosen])
        design = np.vstack([np.ones_like(x), x]).T
        (a, b), *_ = np.linalg.lstsq(design, np.log([float(row["bpp"]) for row in chosen]), rcond=None)
        (c, d), *_ = np.linalg.lstsq(design, np.array([float(row["psnr_rgb"]) for row in chosen]), rcond=None)
        log_residual = np.std(np.log([float(row["bpp"]) for row in chosen]) - design @ (a, b))
        print(f"# level {level}: {len(chosen)} images, log-bpp residual {log_residual:.3f}", file=sys.stderr)
        levels[level] = (float(a), float(b), float(c), float(d))
    return levels


def main() -> None:
    levels = fit_levels(Path(sys.argv[1]), Path(sys.argv[2]))
    fitted = dict(levels)
    for level in range(1, MAX_QUALITY + 1):  # a missing level: its neighbours' mean, or the nearest
        if level not in fitted:
            below = [k for k in fitted if k < level]
            above = [k for k in fitted if k > level]
            near = [fitted[max(below)]] if below else []
            near += [fitted[min(above)]] if above else []
            levels[level] = tuple(sum(values) / len(near) for values in zip(*near))
    print("RATE_MODEL = (")
    for level in range(1, MAX_QUALITY + 1):
        print("    (" + ", ".join(f"{v:.4f}" for v in levels[level]) + f"),  # {level}")
    print(")")


if __name__ == "__main__":
    main()
