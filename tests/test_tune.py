"""ccnn tune: the search space, the study's resumption, the outputs and the command line's errors.

Most tests replace the encodes by made-up, deterministic measurements (:func:`fake_trial`):
what they check is the search around the encodes (Optuna's study in SQLite, the count of
trials, the settings file, the report), and a real encode of a 32x32 image at a few steps is
far outside JPEG's quality range, so it could not be scored. The real encodes run in
:func:`test_real_trials_on_worker_processes` and through ``compress --config best.toml``.
Tests that need Optuna skip without it (``pip install 'ccnn-codec[tune]'``).
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import sys
from pathlib import Path

import pytest
from PIL import Image

from ccnn.cli import main
from ccnn.settings import PRESETS, EncoderOptions, Preset
from ccnn.tune import run as tune_run
from ccnn.tune.space import PAPER_RANGES, search_space, unaccounted_settings
from ccnn.tune.work import Point, TrialOutcome, TrialTask

from .conftest import sample_crop


@pytest.fixture()
def optuna():
    return pytest.importorskip("optuna")


@pytest.fixture()
def images(tmp_path: Path) -> list[str]:
    paths = []
    for name, (top, left) in (("a.png", (40, 100)), ("b.png", (100, 150))):
        path = tmp_path / name
        Image.fromarray(sample_crop(top, left, 32, 32)).save(path)
        paths.append(str(path))
    return paths


def fake_trial(task: TrialTask, on_encode=None) -> TrialOutcome:
    """Made-up measurements that depend on the settings only: rate grows with the quality level
    (paper: falls with the ratio), PSNR is best at the presets' learning rate and a 20x20 kernel."""
    points = []
    for image in task.images:
        for quality in task.qualities:
            config = dataclasses.replace(task.options, quality=quality).resolve(3, 32 * 32)
            penalty = abs(math.log(config.learning_rate / 1e-2)) + abs(config.encoder[0].kernel - 20) / 20
            level = quality if quality is not None else 12 / config.encoder[0].stride
            bpp = 2.5 + 0.5 * level
            psnr = 23.0 + 2.0 * level - 2.0 * penalty + config.slope
            points.append(Point(image.name, quality, int(bpp * 128), bpp, psnr, 0.01, config.steps, False))
    return TrialOutcome(tuple(points))


@pytest.fixture()
def fake(monkeypatch):
    monkeypatch.setattr(tune_run, "run_trial", fake_trial)


def tune(images: list[str], tmp_path: Path, *flags: str, trials: int = 2) -> int:
    study, output = tmp_path / "tune.db", tmp_path / "best.toml"
    args = ["tune", *images, "--steps", "5", "--trials", str(trials), "--study", str(study)]
    return main([*args, "-o", str(output), "--quiet", *flags])


def trials_of(optuna, tmp_path: Path, name: str = "ccnn-tune-fast") -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'tune.db'}")
    return study.get_trials(deepcopy=False)


# --- The search space, read off the settings (no Optuna needed) ---------------------------------


def test_space_accounts_for_every_setting() -> None:
    assert unaccounted_settings() == set()


@pytest.mark.parametrize("preset", [p.value for p in Preset])
def test_the_preset_s_own_point_encodes_as_the_preset(preset: str) -> None:
    space = search_space(preset)
    options = space.options(space.defaults(), steps=300, seed=3)
    plain = EncoderOptions(preset, steps=300, seed=3)
    for pixels, detail in ((32 * 32, None), (768 * 512, 18.0), (768 * 512, 30.0)):
        for quality in (1, 4, 7) if preset != "paper" else (None,):
            ours = dataclasses.replace(options, quality=quality).resolve(3, pixels, detail)
            assert ours == dataclasses.replace(plain, quality=quality).resolve(3, pixels, detail)


def test_paper_space_is_the_poster_s() -> None:
    space = search_space("paper")
    assert {d.name: (d.low, d.high) for d in space.dimensions} == PAPER_RANGES
    assert space.defaults() == {"ratio": 4, "kernel": 10, "slope": PRESETS[Preset.PAPER].slope}


# --- Runs of the command, with made-up measurements ---------------------------------------------


def test_two_trials_write_a_config_that_compress_accepts(optuna, fake, images, tmp_path: Path) -> None:
    assert tune(images, tmp_path, "--preset", "fast") == 0
    best = tmp_path / "best.toml"
    options = EncoderOptions.from_toml_file(best)
    assert (options.preset, options.steps, options.seed) == (Preset.FAST, 5, 0)
    trials = trials_of(optuna, tmp_path)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["baseline"] and trials[0].params == search_space("fast").defaults()
    winner = min(trials, key=lambda t: (t.value, t.number))
    assert options == search_space("fast").options(winner.params, steps=5, seed=0)

    report = (tmp_path / "best.md").read_text()
    assert report.startswith("# ccnn tune: study `ccnn-tune-fast`")
    assert "Parameter importances need at least 5 complete trials; this study has 2." in report
    assert "BD-rate vs the preset" in report

    out = tmp_path / "a.ccnn"  # the real encoder takes the file (at a few steps, to be quick)
    assert (
        main(["compress", images[0], "--config", str(best), "--steps", "3", "-o", str(out), "--quiet"]) == 0
    )
    assert out.stat().st_size > 0


def test_a_rerun_adds_trials_to_the_study(optuna, fake, images, tmp_path: Path) -> None:
    assert tune(images, tmp_path, trials=2) == 0
    assert tune(images, tmp_path, trials=3) == 0
    assert [t.number for t in trials_of(optuna, tmp_path, "ccnn-tune-default")] == [0, 1, 2]
    assert tune(images, tmp_path, trials=3) == 0  # as many as it holds: only the outputs again
    assert len(trials_of(optuna, tmp_path, "ccnn-tune-default")) == 3
    assert "3 trials finished (3 complete, 0 failed)" in (tmp_path / "best.md").read_text()


def test_interrupted_search_resumes_with_the_same_trials(optuna, images, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tune_run, "run_trial", fake_trial)
    whole = tmp_path / "whole"
    whole.mkdir()
    assert tune(images, whole, "--preset", "fast", trials=4) == 0

    def interrupted(task: TrialTask, on_encode=None) -> TrialOutcome:
        if task.number == 2:
            raise KeyboardInterrupt
        return fake_trial(task, on_encode)

    monkeypatch.setattr(tune_run, "run_trial", interrupted)
    assert tune(images, tmp_path, "--preset", "fast", trials=4) == 130
    assert EncoderOptions.from_toml_file(tmp_path / "best.toml")  # the best of the finished ones
    states = [t.state.name for t in trials_of(optuna, tmp_path)]
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]

    monkeypatch.setattr(tune_run, "run_trial", fake_trial)
    assert tune(images, tmp_path, "--preset", "fast", trials=4) == 0
    resumed = [t for t in trials_of(optuna, tmp_path) if t.state.name == "COMPLETE"]
    assert [t.number for t in resumed] == [0, 1, 3, 4]  # trial 2 was interrupted: redone as 3
    assert [t.params for t in resumed] == [t.params for t in trials_of(optuna, whole)]
    assert "1 interrupted and left out" in (tmp_path / "best.md").read_text()


def test_importances_once_enough_trials(optuna, fake, images, tmp_path: Path) -> None:
    assert tune(images, tmp_path, "--preset", "fast", trials=6) == 0
    report = (tmp_path / "best.md").read_text()
    assert "| parameter | importance |" in report
    assert "| learning_rate |" in report


def test_paper_search(optuna, fake, images, tmp_path: Path) -> None:
    assert tune(images, tmp_path, "--paper", trials=3) == 0
    options = EncoderOptions.from_toml_file(tmp_path / "best.toml")
    assert options.preset is Preset.PAPER
    for trial in trials_of(optuna, tmp_path, "ccnn-tune-paper"):
        for name, (low, high) in PAPER_RANGES.items():
            assert low <= trial.params[name] <= high
    report = (tmp_path / "best.md").read_text()
    assert "| trial | ratio | kernel | slope | bpp | PSNR | rate vs JPEG at equal PSNR |" in report
    assert report.count("\n| 0 | 4 | 10 | 0.1 |") == 1  # the poster's own settings come first


# --- Errors: one line, the right exit code, no traceback -----------------------------------------


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--trials", "0"], 2, "trials must be at least 1, not 0"),
        (["--qualities", "4"], 2, "give at least two quality levels"),
        (["--qualities", "0,4"], 2, "quality levels go from 1 to 9, not 0"),
        (["--qualities", "a,b"], 2, "not a list of quality levels"),
        (["--paper", "--qualities", "2,4"], 2, "the paper preset's rate is its ratio"),
        (["--paper", "--preset", "fast"], 2, "--paper searches the paper preset"),
        (["--jobs", "0"], 2, "jobs must be at least 1"),
        (["--steps", "0"], 2, "steps must be at least 1"),
        (["--budget-seconds", "-1"], 2, "budget seconds must be positive"),
        (["-o", "best.txt"], 2, "the output is a settings file, named .toml"),
    ],
)
def test_bad_arguments(optuna, images, tmp_path: Path, capsys, flags, code, message) -> None:
    assert tune(images, tmp_path, *flags) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "tune.db").exists()


def test_bad_inputs(optuna, fake, images, tmp_path: Path, capsys) -> None:
    assert tune([images[0], str(tmp_path / "missing.png")], tmp_path) == 1
    assert capsys.readouterr().err.strip().endswith("missing.png: no such file")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert tune([str(tmp_path / "bad.png")], tmp_path) == 1
    assert "cannot read image" in capsys.readouterr().err

    (tmp_path / "best.toml").write_text("preset = 'fast'\n")  # a file of the user's
    assert tune(images, tmp_path) == 1
    assert "was not written by ccnn tune (use -f/--force)" in capsys.readouterr().err
    assert tune(images, tmp_path, "-f") == 0
    assert tune(images, tmp_path, "--steps", "6") == 2  # not the study's budget (the last --steps wins)
    err = capsys.readouterr().err
    assert "was run with steps 5, not 6" in err and "--study-name" in err


def test_missing_optuna(images, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` then fails
    assert tune(images, tmp_path) == 2
    assert capsys.readouterr().err.strip() == (
        "ccnn: error: ccnn tune needs Optuna, an optional extra: pip install 'ccnn-codec[tune]'"
    )


# --- Real encodes ---------------------------------------------------------------------------------


def test_real_trials_on_worker_processes(optuna, images, tmp_path: Path, capsys) -> None:
    """Two workers run real (tiny) encodes; a 32x32 image at 2 steps is one poor point at every
    quality level, so both trials fail on their score, are recorded with why, and the search
    says so."""
    assert tune(images, tmp_path, "--preset", "fast", "--steps", "2", "--jobs", "2") == 1
    assert "no trial produced a score" in capsys.readouterr().err
    trials = trials_of(optuna, tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(
        t.user_attrs["error"] == "its quality levels gave one PSNR: no curve to compare" for t in trials
    )
    assert all(len(t.user_attrs["points"]) == 6 for t in trials)  # 2 images x 3 quality levels
    assert not (tmp_path / "best.toml").exists()
    assert "**failed**: its quality levels gave one PSNR" in (tmp_path / "best.md").read_text()
    with sqlite3.connect(tmp_path / "tune.db") as db:  # a plain SQLite file, as promised
        assert db.execute("select count(*) from trials").fetchone() == (2,)


@pytest.mark.ray
def test_trials_on_ray(optuna, images, tmp_path: Path) -> None:
    """The same tiny real trials as Ray tasks on a local two-CPU instance (skipped without Ray)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        assert tune(images, tmp_path, "--preset", "fast", "--steps", "2", "--ray") == 1
    finally:
        ray.shutdown()
    trials = trials_of(optuna, tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(len(t.user_attrs["points"]) == 6 and t.user_attrs["error"] for t in trials)
