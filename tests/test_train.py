"""The trainer runs the schedule it is given, phase by phase, on one shared budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ccnn
from ccnn.encoder import train as train_module
from ccnn.encoder.result import Progress
from ccnn.encoder.train import Trainer, phase_ends, soft_round_temperature
from ccnn.imageio import load_image
from ccnn.paths import sample_path
from ccnn.settings import PRESETS, EncoderOptions, Preset, TrainingPhase, training_phases


def test_phase_ends_are_the_running_shares_and_end_at_one() -> None:
    assert phase_ends([0.7, 0.2, 0.1])[-1] == 1.0
    assert phase_ends([0.5, 0.5]) == (0.5, 1.0)
    with pytest.raises(ValueError):
        phase_ends([0.5, 0.4])
    with pytest.raises(ValueError):
        phase_ends([])


def test_soft_round_temperature_falls_before_the_hard_part() -> None:
    soft = TrainingPhase(
        name="p",
        data="image",
        learns="latent",
        share=1.0,
        learning_rate=3e-3,
        latent_learning_rate=2e-2,
        quantizer="soft_round",
        temperature=(0.3, 0.1),
        hard_share=0.5,
    )
    assert soft_round_temperature(soft, 0.0) == pytest.approx(0.3)
    assert soft_round_temperature(soft, 0.25) == pytest.approx(0.2)
    assert soft_round_temperature(soft, 0.75) == pytest.approx(0.1)
    plain = TrainingPhase(name="p", data="crops", learns="networks", share=1.0, learning_rate=1e-2)
    assert soft_round_temperature(plain, 0.5) is None


def test_trainer_runs_the_phases_it_is_given() -> None:
    """A three-phase schedule no preset has: crops, the networks on the whole image, then a
    free latent with soft and hard rounding. Each phase gets its share of the steps."""
    pixels = np.ascontiguousarray(load_image(sample_path())[:48, :64])
    config = EncoderOptions("fast", steps=40, seconds=1000.0, seed=2).resolve()
    phases = (
        TrainingPhase(name="a", data="crops", learns="networks", share=0.25, learning_rate=1e-2),
        TrainingPhase(name="b", data="image", learns="networks", share=0.25, learning_rate=5e-3),
        TrainingPhase(
            name="c",
            data="image",
            learns="latent",
            share=0.5,
            learning_rate=3e-3,
            latent_learning_rate=2e-2,
            quantizer="soft_round",
            temperature=(0.3, 0.1),
            hard_share=0.25,
            loss="preset",
            eval_interval=5,
        ),
    )
    events: list[Progress] = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(pixels, config, progress=events.append)
        result = trainer.run(phases)
    finally:
        torch.set_num_threads(previous)
    labels = [event.phase for event in events]
    assert labels == ["start"] + ["a"] * 10 + ["b"] * 10 + ["c"] * 15 + ["c, hard rounding"] * 5 + ["done"]
    assert [event.step for event in events[1:-1]] == list(range(1, 41))
    assert result.steps == trainer.step == 40
    assert trainer.latent is not None and result.latent.shape == trainer.latent.shape
    assert np.isfinite(trainer.best.loss) and trainer.best_state is not None


def _tiny_encode(**settings: float) -> tuple[bytes, int, bool]:
    pixels = np.ascontiguousarray(load_image(sample_path())[:32, :48])
    result = ccnn.compress_image(pixels, "fast", seed=3, **settings)
    return result.data, result.steps, result.stopped_by_time


def test_presets_stop_on_steps_whatever_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Effort, not time: a clock that runs 1000 times too fast (a very busy machine) changes
    nothing in a preset's file, while a time budget that the user asks for does stop early."""
    assert all(PRESETS[preset].seconds is None for preset in Preset)
    normal = _tiny_encode(steps=12)
    ticks = iter(range(0, 10**9, 1000))
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(ticks)))
    assert _tiny_encode(steps=12) == normal
    assert normal[1:] == (12, False)
    _, steps, stopped = _tiny_encode(steps=12, seconds=5000.0)
    assert stopped and steps < 12


def test_a_time_budget_splits_by_time_share() -> None:
    """With a time budget, each phase ends at its share of the time (the refine phase's share
    of the time is far larger than its share of the steps)."""
    config = EncoderOptions("default", quality=1).resolve()
    crops, refine = training_phases(config)
    assert refine.share < 0.2 and refine.time_share == pytest.approx(0.5)
    assert phase_ends([crops.time_share, refine.time_share]) == (pytest.approx(0.5), 1.0)


@pytest.mark.parametrize(("preset", "hard"), [("fast", True), ("default", True), ("default", False)])
def test_whole_image_passes_in_bands_match_the_whole_image(
    preset: str, hard: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a band budget small enough to split the sample into several bands, the compressing
    network's latent, the restored image, the evaluation and a free-latent step's gradients
    are those of the whole image (up to float32 summation order)."""
    pixels = load_image(sample_path())
    config = EncoderOptions(preset, quality=8, steps=4, seed=3).resolve(3)
    whole = Trainer(pixels, config)
    monkeypatch.setattr(train_module, "TRAINING_BAND_VALUES", 1 << 14)
    banded = Trainer(pixels, config)
    banded.model.load_state_dict(whole.model.state_dict())
    banded.entropy.load_state_dict(whole.entropy.state_dict())
    assert len(whole.bands) == 1 and len(banded.bands) >= 3
    with torch.no_grad():
        torch.testing.assert_close(banded.analyse_image(), whole.analyse_image(), rtol=1e-5, atol=1e-5)
        latent = whole.analyse_image()
        parts = [banded.restore_band(latent, first, end)[0] for first, end in banded.bands]
        restored = whole.model.restore(latent)
        torch.testing.assert_close(torch.cat(parts, dim=-2), restored, rtol=1e-5, atol=1e-5)
    assert banded.evaluate() == pytest.approx(whole.evaluate(), rel=1e-6)
    refine = training_phases(config)[-1]
    for trainer in (whole, banded):
        trainer.latent = torch.nn.Parameter(latent.clone())
        torch.manual_seed(0)
        trainer.backward(refine, trainer.image, hard=hard, fraction=0.0)
    torch.testing.assert_close(banded.latent.grad, whole.latent.grad, rtol=1e-3, atol=1e-6)
    for mine, theirs in zip(banded.model.decoder_weights, whole.model.decoder_weights):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(
        banded.entropy.context_weights.grad, whole.entropy.context_weights.grad, rtol=1e-3, atol=1e-6
    )
