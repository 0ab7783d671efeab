"""Quality and rate measures, with the conventions the field uses.

PSNR is computed on 8-bit pixels after rounding, per image; averages over images are taken
by the caller (the CompressAI convention). Rate is the whole file: bpp = 8 * bytes / (H * W).
"""

from __future__ import annotations

import math

import numpy as np


def mse(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error between two uint8 images of the same shape, in 8-bit units."""
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {test.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two uint8 images; ``inf`` when they are identical."""
    error = mse(reference, test)
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / error)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` that codes an image of ``height`` x ``width``."""
    return 8.0 * num_bytes / (height * width)
