"""Quality and rate measures, with the conventions the field uses.

PSNR is computed on 8-bit pixels after rounding, per image; averages over images are taken
by the caller (the CompressAI convention). Rate is the whole file: bpp = 8 * bytes / (H * W).
"""

from __future__ import annotations

import math

import numpy as np


def mse(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error between two uint8 images of the same shape, in 8-bit units.

    The squared differences are integers, summed exactly in int64 over bands of rows of about
    2**20 values, so that a large image is not copied whole to wider types; the float64 mean of
    the whole arrays is the same number (its sums are exact integers too, below 2**53).
    """
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {test.shape}")
    if reference.size == 0 or reference.dtype != np.uint8 or test.dtype != np.uint8:
        diff = reference.astype(np.float64) - test.astype(np.float64)
        return float(np.mean(diff * diff))
    row = reference[:1].size
    band = max(1, (1 << 20) // max(1, row))
    total = 0
    for top in range(0, reference.shape[0], band):
        diff = reference[top : top + band].astype(np.int32) - test[top : top + band].astype(np.int32)
        total += int(np.dot(diff.reshape(-1).astype(np.int64), diff.reshape(-1)))
    return total / reference.size


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two uint8 images; ``inf`` when they are identical."""
    return psnr_from_mse(mse(reference, test))


def psnr_from_mse(error: float) -> float:
    """PSNR in dB of a mean squared error in 8-bit units; ``inf`` for no error."""
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / error)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` that codes an image of ``height`` x ``width``."""
    return 8.0 * num_bytes / (height * width)


#: Per-scale exponents of MS-SSIM (Wang, Simoncelli and Bovik, 2003), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: The Gaussian window of SSIM: size and standard deviation.
SSIM_WINDOW: tuple[int, float] = (11, 1.5)


def ms_ssim_min_side() -> int:
    """The smallest image side MS-SSIM accepts: the window must fit at the coarsest scale."""
    return (SSIM_WINDOW[0] - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def _blur(z: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of C x H x W ``z`` without padding ("valid" on both axes)."""
    taps = len(window)
    height, width = z.shape[1] - taps + 1, z.shape[2] - taps + 1
    rows = sum(window[i] * z[:, i : i + height, :] for i in range(taps))
    return sum(window[i] * rows[:, :, i : i + width] for i in range(taps))


def _pool(z: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd side gets one zero row/column in front (as PyTorch pads it)."""
    pad_h, pad_w = z.shape[1] % 2, z.shape[2] % 2
    if pad_h or pad_w:
        z = np.pad(z, ((0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    channels, height, width = z.shape
    z = z[:, : height // 2 * 2, : width // 2 * 2]
    return z.reshape(channels, height // 2, 2, width // 2, 2).mean(axis=(2, 4))


def ms_ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Multi-scale SSIM of two uint8 images (H x W or H x W x C), averaged over channels.

    Five scales with Wang et al.'s weights, an 11-tap Gaussian window of sigma 1.5 applied
    without padding, K1 = 0.01, K2 = 0.03, 2x2 average pooling between scales (zero-padded on
    odd sizes), negative contrast terms clipped to 0: the conventions of ``pytorch-msssim``
    that CompressAI reports as ``ms-ssim-rgb``. Images whose shorter side is below
    :func:`ms_ssim_min_side` (161 pixels) raise :class:`ValueError`.
    """
    if reference.shape != test.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {test.shape}")
    if min(reference.shape[:2]) < ms_ssim_min_side():
        raise ValueError(
            f"MS-SSIM needs images of at least {ms_ssim_min_side()} pixels a side, "
            f"not {reference.shape[1]}x{reference.shape[0]}"
        )

    def planes(pixels: np.ndarray) -> np.ndarray:
        array = pixels if pixels.ndim == 3 else pixels[:, :, None]
        return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float64)

    x, y = planes(reference), planes(test)
    size, sigma = SSIM_WINDOW
    coords = np.arange(size, dtype=np.float64) - size // 2
    window = np.exp(-(coords**2) / (2 * sigma**2))
    window /= window.sum()
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    levels = len(MS_SSIM_WEIGHTS)
    result = np.ones(x.shape[0])
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        mu_x, mu_y = _blur(x, window), _blur(y, window)
        var_x = _blur(x * x, window) - mu_x**2
        var_y = _blur(y * y, window) - mu_y**2
        cov = _blur(x * y, window) - mu_x * mu_y
        cs_map = (2 * cov + c2) / (var_x + var_y + c2)
        if level < levels - 1:
            value = cs_map.mean(axis=(1, 2))
            x, y = _pool(x), _pool(y)
        else:
            value = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map).mean(axis=(1, 2))
        result *= np.maximum(value, 0.0) ** weight
    return float(result.mean())


def block_mean_psnr(pixels: np.ndarray, block: int = 8) -> float:
    """PSNR of ``pixels`` against its own ``block`` x ``block`` block means (uint8 H x W x C).

    A measure of how much of the image lies in detail finer than a latent at stride ``block``
    can hold: a low value (Kodak's kodim08: 17 dB) marks a detailed image, a high one (kodim03:
    26 dB) a smooth one. The rate-distortion presets choose their network by it
    (:func:`ccnn.settings.rd_network`). Sides that are not a multiple of ``block`` are cropped;
    an image smaller than one block counts as smooth (``inf``). The image is read in bands of
    block rows of about 2**20 values each, so that a large image is not copied whole to float64.
    """
    height, width = pixels.shape[0] // block * block, pixels.shape[1] // block * block
    if height == 0 or width == 0:
        return math.inf
    band = block * max(1, (1 << 20) // (block * width * pixels.shape[2]))
    squared = 0.0
    for top in range(0, height, band):
        values = pixels[top : min(top + band, height), :width].astype(np.float64)
        values = values.reshape(values.shape[0] // block, block, width // block, block, -1)
        squared += float(np.sum((values - values.mean(axis=(1, 3), keepdims=True)) ** 2))
    return psnr_from_mse(squared / (height * width * pixels.shape[2]))
