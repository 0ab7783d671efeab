"""Presets resolve to the documented networks."""

from __future__ import annotations

import numpy as np
import pytest

from ccnn.config import make_config
from ccnn.metrics import block_mean_psnr

from .conftest import kodak_crop


def test_networks_grow_with_quality_and_image_size() -> None:
    def latent(quality: int, pixels: int | None = None) -> tuple[int, int]:
        config = make_config("default", quality=quality, pixels=pixels)
        return config.latent_channels, config.total_stride

    assert latent(1) == (8, 8) and latent(4) == (12, 8) and latent(8) == (12, 4)
    assert latent(8, pixels=768 * 512) == latent(8)
    assert latent(4, pixels=256 * 192) == latent(1)  # 8x fewer pixels: three levels down
    assert latent(8, pixels=16 * 16) == latent(1)
    assert make_config("default", quality=8, channels=1).decoder[-1].channels == 1
    assert make_config("fast", quality=8).decoder == make_config("default", quality=1).decoder


def _stride(quality: int, block_psnr: float | None, preset: str = "default") -> int:
    return make_config(preset, quality=quality, pixels=768 * 512, block_psnr=block_psnr).total_stride


def test_detailed_images_get_the_fine_network_at_middle_qualities() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(192, 256, 3), dtype=np.uint8)  # all detail, no block mean
    ramp = np.add.outer(np.arange(192), np.arange(256)) / (192 + 256) * 200
    gradient = np.clip(np.dstack([ramp, ramp[::-1], 200 - ramp]) + rng.normal(0, 2, (192, 256, 3)), 0, 255)
    detailed = block_mean_psnr(noise)
    smooth = block_mean_psnr(gradient.astype(np.uint8))
    assert detailed < 18.0 and smooth > 25.0
    flat = np.full((64, 64, 3), 90, dtype=np.uint8)
    assert block_mean_psnr(flat) == float("inf") and block_mean_psnr(flat[:4, :4]) == float("inf")

    assert [_stride(q, detailed) for q in range(1, 10)] == [8, 8, 4, 4, 4, 4, 4, 4, 4]
    assert [_stride(q, 21.0) for q in range(1, 10)] == [8, 8, 8, 4, 4, 4, 4, 4, 4]
    assert [_stride(q, smooth) for q in range(1, 10)] == [8, 8, 8, 8, 8, 4, 4, 4, 4]
    assert [_stride(q, None) for q in range(1, 10)] == [_stride(q, smooth) for q in range(1, 10)]
    assert [_stride(q, float("inf")) for q in range(1, 10)] == [_stride(q, smooth) for q in range(1, 10)]
    assert {_stride(q, detailed, "fast") for q in range(1, 10)} == {8}


@pytest.mark.kodak
def test_kodak_examples_of_detailed_and_smooth() -> None:
    """The thresholds were chosen on Kodak: kodim08 is the detailed example, kodim03 the smooth one."""
    detailed = block_mean_psnr(kodak_crop(8, 0, 0, 512, 768))
    smooth = block_mean_psnr(kodak_crop(3, 0, 0, 512, 768))
    assert detailed < 18.0 and smooth > 25.0
    assert [_stride(q, detailed) for q in range(1, 10)] == [8, 8, 4, 4, 4, 4, 4, 4, 4]
    assert [_stride(q, smooth) for q in range(1, 10)] == [8, 8, 8, 8, 8, 4, 4, 4, 4]


def test_rd_objective_prices_a_db_for_psnr_presets_and_squared_error_otherwise() -> None:
    import math

    import torch

    from ccnn.fit import rd_objective

    default = make_config("default", quality=5)
    paper = make_config("paper")
    assert default.distortion == "psnr" and make_config("fast").distortion == "psnr"
    assert paper.distortion == "mse"
    mse = 10 ** (-30 / 10)  # 30 dB
    assert math.isclose(rd_objective(0.5, mse, default), 0.5 - default.psnr_slope * 30.0)
    tensor = rd_objective(torch.tensor(0.5), torch.tensor(mse, dtype=torch.float64), default)
    assert math.isclose(float(tensor), 0.5 - default.psnr_slope * 30.0, rel_tol=1e-9)
    squared = 0.5 + default.rate_lambda * 255.0**2 * mse
    assert math.isclose(rd_objective(0.5, mse, default, squared_error=True), squared)
    assert math.isclose(rd_objective(0.5, mse, paper), 0.5 + paper.rate_lambda * 255.0**2 * mse)
    # one dB more is worth exactly the slope in bits per pixel
    better = rd_objective(0.5 + default.psnr_slope, mse / 10**0.1, default)
    assert math.isclose(better, rd_objective(0.5, mse, default))
    assert rd_objective(0.0, 0.0, default) > -math.inf


def test_every_quality_level_has_a_slope_and_a_lambda_that_grow_with_it() -> None:
    from itertools import pairwise

    from ccnn.config import MAX_QUALITY, QUALITY_LAMBDAS, QUALITY_SLOPES

    assert len(QUALITY_SLOPES) == len(QUALITY_LAMBDAS) == MAX_QUALITY >= 6
    assert all(a < b for a, b in pairwise(QUALITY_SLOPES))
    assert all(a < b for a, b in pairwise(QUALITY_LAMBDAS))
    for quality in range(1, MAX_QUALITY + 1):
        config = make_config("default", quality=quality)
        assert config.psnr_slope == QUALITY_SLOPES[quality - 1]
        assert config.rate_lambda == QUALITY_LAMBDAS[quality - 1]
