"""The trainer runs the schedule it is given, phase by phase, on one shared budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnn.encoder.result import Progress
from ccnn.encoder.train import Trainer, phase_ends, soft_round_temperature
from ccnn.imageio import load_image
from ccnn.paths import sample_path
from ccnn.settings import EncoderOptions, TrainingPhase


def test_phase_ends_are_the_running_shares_and_end_at_one() -> None:
    def phase(share: float) -> TrainingPhase:
        return TrainingPhase(name="p", data="crops", learns="networks", share=share, learning_rate=1e-2)

    assert phase_ends([phase(0.7), phase(0.2), phase(0.1)])[-1] == 1.0
    assert phase_ends([phase(0.5), phase(0.5)]) == (0.5, 1.0)
    with pytest.raises(ValueError):
        phase_ends([phase(0.5), phase(0.4)])
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
