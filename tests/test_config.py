"""Presets resolve to the documented networks."""

from __future__ import annotations

import numpy as np
import pytest

from ccnn.metrics import block_mean_psnr
from ccnn.settings import NETWORK_REFERENCE_PIXELS, REFINE_WORK_BOUND, EncoderOptions

from .conftest import kodak_crop


def test_networks_grow_with_quality_and_image_size() -> None:
    def latent(quality: int, pixels: int | None = None) -> tuple[int, int]:
        config = EncoderOptions("default", quality=quality).resolve(pixels=pixels)
        return config.latent_channels, config.total_stride

    assert latent(1) == (8, 8) and latent(4) == (12, 8) and latent(8) == (12, 4)
    assert latent(8, pixels=768 * 512) == latent(8)
    assert latent(4, pixels=256 * 192) == latent(1)  # 8x fewer pixels: three levels down
    assert latent(8, pixels=16 * 16) == latent(1)
    assert EncoderOptions("default", quality=8).resolve(channels=1).decoder[-1].channels == 1
    assert (
        EncoderOptions("fast", quality=8).resolve().decoder
        == EncoderOptions("default", quality=1).resolve().decoder
    )


def _stride(quality: int, block_psnr: float | None, preset: str = "default") -> int:
    config = EncoderOptions(preset, quality=quality).resolve(pixels=768 * 512, block_psnr=block_psnr)
    return config.total_stride


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

    from ccnn.encoder.train import rd_objective

    default = EncoderOptions("default", quality=5).resolve()
    paper = EncoderOptions("paper").resolve()
    assert default.distortion == "psnr" and EncoderOptions("fast").resolve().distortion == "psnr"
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

    from ccnn.settings import MAX_QUALITY, QUALITY_LAMBDAS, QUALITY_SLOPES

    assert len(QUALITY_SLOPES) == len(QUALITY_LAMBDAS) == MAX_QUALITY >= 6
    assert all(a < b for a, b in pairwise(QUALITY_SLOPES))
    assert all(a < b for a, b in pairwise(QUALITY_LAMBDAS))
    for quality in range(1, MAX_QUALITY + 1):
        config = EncoderOptions("default", quality=quality).resolve()
        assert config.psnr_slope == QUALITY_SLOPES[quality - 1]
        assert config.rate_lambda == QUALITY_LAMBDAS[quality - 1]


def test_training_phases_are_the_presets_schedules() -> None:
    from ccnn.settings import describe_phases, training_phases

    for preset in ("fast", "default"):
        config = EncoderOptions(preset, quality=5).resolve()
        crops, whole = training_phases(config)
        assert (crops.data, crops.learns, crops.loss) == ("crops", "networks", "squared_error")
        assert (whole.data, whole.learns, whole.loss) == ("image", "latent", "preset")
        assert crops.share + whole.share == 1.0 and crops.hard_share == 0.0
        assert whole.hard_share == config.hard_rounding_fraction > 0.0
        assert crops.learning_rate == config.learning_rate and crops.quantizer == "noise"
        assert (whole.learning_rate, whole.latent_learning_rate) == (
            config.refine_learning_rate,
            config.refine_latent_lr,
        )
        assert (crops.crop_size, crops.crops_per_step) == (config.crop_size, config.crops_per_step)
    fast_whole = training_phases(EncoderOptions("fast").resolve())[1]
    assert fast_whole.quantizer == "noise" and fast_whole.temperature is None
    default_whole = training_phases(EncoderOptions("default").resolve())[1]
    assert default_whole.quantizer == "soft_round" and default_whole.temperature == (0.3, 0.1)

    (only,) = training_phases(EncoderOptions("paper").resolve())
    assert only.share == 1.0 and only.hard_share == 1.0 and only.learns == "networks"
    table = describe_phases(training_phases(EncoderOptions("default").resolve())).splitlines()
    assert len(table) == 4 and len({len(row) for row in table}) == 1
    assert "soft 0.3->0.1" in table[3] and "hard" in describe_phases((only,))


def test_training_phase_refuses_what_the_trainer_cannot_run() -> None:
    import dataclasses

    import pytest

    from ccnn.errors import ConfigError
    from ccnn.settings import training_phases

    crops, whole = training_phases(EncoderOptions("default").resolve())
    for bad in (
        dict(data="tiles"),
        dict(share=0.0),
        dict(hard_share=1.5),
        dict(quantizer="noise"),  # a temperature without soft rounding
        dict(data="crops"),  # a free latent on crops
        dict(latent_learning_rate=0.0),
        dict(eval_interval=0),
    ):
        with pytest.raises(ConfigError):
            dataclasses.replace(whole, **bad)
    with pytest.raises(ConfigError):
        dataclasses.replace(crops, quantizer="soft_round")  # soft rounding without a temperature


@pytest.mark.parametrize("preset", ["fast", "default"])
def test_whole_image_work_is_bounded_whatever_the_size(preset: str) -> None:
    """The whole-image phase keeps a Kodak image's steps, gives a smaller image more (cheap)
    steps, and a camera-size photo at most REFINE_WORK_BOUND times a Kodak image's work."""
    def whole_image_work(pixels: int) -> tuple[int, float]:
        config = EncoderOptions(preset, quality=8).resolve(pixels=pixels)
        steps = round(config.steps * config.refine_share)
        return steps, steps * pixels / NETWORK_REFERENCE_PIXELS

    kodak_steps, kodak_work = whole_image_work(NETWORK_REFERENCE_PIXELS)
    assert whole_image_work(256 * 192)[0] > kodak_steps
    for pixels in (4000 * 3000, 6000 * 4000, 8192 * 8192, 32768 * 2048):
        steps, work = whole_image_work(pixels)
        # within the bound, up to the rounding of the step count (half a step's work)
        one_step = pixels / NETWORK_REFERENCE_PIXELS
        assert 1 <= steps < kodak_steps and work <= REFINE_WORK_BOUND * kodak_work + one_step / 2
