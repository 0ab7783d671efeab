"""The search: an Optuna study in SQLite, trials run here, on local workers or on Ray.

Only this process talks to the study. It asks Optuna for a trial when a worker is free for it
(ask-and-tell), turns the sampled parameters into encoder options (:mod:`.space`), hands the
encodes to a runner of :mod:`ccnn.batch.runners`, scores what comes back (:mod:`.score`) and
tells the study. Every finished trial is committed to the study's database as it ends, so a
run stopped at any point keeps them, and the same command continues the count.

Reproducibility: every encode stops on its steps (``--budget-seconds`` only caps them, and
the report counts the encodes it stopped), with a fixed seed and thread count; the sampler is
re-seeded before each trial from ``--seed`` and the number of trials finished or running, so
that a search run in one process (``--jobs 1``) proposes the same trials whether or not it
was interrupted and resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..batch.runners import pool_results, ray_results, serial_results
from ..bench.run import load_rgb
from ..errors import CCNNError, ConfigError, OutputExistsError
from ..files import check_writable, write_atomic
from ..install import pip_hint
from ..settings import MAX_QUALITY, Preset
from .report import MARK, Report, best_toml, render_report
from .score import Curve, averaged, jpeg_anchor, score
from .space import SearchSpace, search_space
from .work import TrialOutcome, TrialTask, TuneImage, failed_trial, on_cpu, run_trial

#: The quality levels a rate-distortion trial encodes at, unless told: low, middle and high,
#: across the presets' network tiers (settings.PRESET_NETWORKS), so the BD-rate is a curve's.
DEFAULT_QUALITIES: tuple[int, ...] = (2, 4, 6)
DEFAULT_TRIALS = 20
DEFAULT_STUDY = "tune.db"
DEFAULT_OUTPUT = "best.toml"
#: Random trials before the sampler (TPE) models the results: Optuna's default of 10 would
#: leave a short search of costly trials random throughout.
STARTUP_TRIALS = 5
#: Parameter importances are reported from this many complete trials (fewer say nothing).
MIN_IMPORTANCE_TRIALS = 5

OPTUNA_HINT = f"ccnn tune needs Optuna, an optional extra: {pip_hint('tune')}"


class OptunaMissingError(CCNNError):
    """Optuna is not installed (a usage error, exit code 2, as for a missing Ray)."""


class StudyMismatchError(ConfigError):
    """The study was made for other images or another budget: its trials would not compare."""


def import_optuna() -> ModuleType:
    """The ``optuna`` module, quietened, or :class:`OptunaMissingError` saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise OptunaMissingError(OPTUNA_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(study: str | os.PathLike[str]) -> str:
    """An Optuna storage URL: ``study`` as given when it is one (``sqlite:///...``), else a path."""
    text = os.fspath(study)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


@dataclass(frozen=True)
class TuneRequest:
    """What a search is about: its images, preset, quality levels and per-encode budget.

    ``steps`` is each encode's training steps (``None``: the preset's own effort), as
    ``ccnn compress --steps`` counts them; ``seconds`` caps each encode's training on top of
    that. A study is tied to these (:meth:`conditions`): trials measured otherwise do not
    compare, so a study made with other ones is refused.
    """

    images: tuple[Path, ...]
    preset: Preset = Preset.DEFAULT
    qualities: tuple[int, ...] = DEFAULT_QUALITIES
    steps: int | None = None
    seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", Preset(self.preset))
        object.__setattr__(self, "images", tuple(Path(p) for p in self.images))
        if self.preset is Preset.PAPER:
            object.__setattr__(self, "qualities", ())

    @property
    def levels(self) -> tuple[int | None, ...]:
        """The quality settings each image is encoded at: one point of its own for ``paper``."""
        return (None,) if self.preset is Preset.PAPER else self.qualities

    def conditions(self, images: Sequence[TuneImage]) -> dict[str, Any]:
        """What the study's trials were measured under, as stored with it."""
        return {
            "preset": self.preset.value,
            "images": [image.name for image in images],
            "pixels": [_digest(image.pixels) for image in images],
            "qualities": list(self.qualities),
            "steps": self.steps,
            "budget_seconds": self.seconds,
            "seed": self.seed,
        }


def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:16]


@dataclass
class TuneSummary:
    """What a run of ``ccnn tune`` did and wrote."""

    study: str
    name: str
    target: int
    finished: int = 0
    added: int = 0
    interrupted: bool = False
    best: int | None = None
    best_score: float | None = None
    report: str = ""
    written: list[Path] = field(default_factory=list)


def check_request(request: TuneRequest, trials: int, jobs: int | None, threads: int) -> None:
    """Refuse bad arguments before anything is read, trained or written (exit code 2)."""
    if not request.images:
        raise ConfigError("give at least one image")
    if trials < 1:
        raise ConfigError(f"trials must be at least 1, not {trials}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, not {threads}")
    if request.steps is not None and request.steps < 1:
        raise ConfigError(f"steps must be at least 1, not {request.steps}")
    if request.seconds is not None and not request.seconds > 0:
        raise ConfigError(f"budget seconds must be positive, not {request.seconds}")
    if not 0 <= request.seed < 2**32:
        raise ConfigError(f"seed must be between 0 and {2**32 - 1}, not {request.seed}")
    if request.preset is not Preset.PAPER:
        bad = [q for q in request.qualities if not 1 <= q <= MAX_QUALITY]
        if bad:
            raise ConfigError(f"quality levels go from 1 to {MAX_QUALITY}, not {bad[0]}")
        if len(set(request.qualities)) < 2:
            raise ConfigError("give at least two quality levels: a BD-rate compares curves")


def check_output(output: Path, force: bool) -> None:
    """Refuse early an output that cannot be written, or a file ``ccnn tune`` did not write.

    A rerun replaces its own best.toml and report (they summarise the study, which grew);
    any other file there is replaced only with ``force``.
    """
    if output.suffix.lower() != ".toml":
        raise ConfigError(f"{output}: the output is a settings file, named .toml")
    if not output.parent.is_dir():
        raise CCNNError(f"{output.parent}: no such folder")
    for path in (output, report_path(output)):
        if path.exists() and not force and not _ours(path):
            raise OutputExistsError(
                f"{path}: already exists and was not written by ccnn tune (use -f/--force)"
            )
        check_writable(path, force=True)


def report_path(output: Path) -> Path:
    """Where the report goes: beside the settings file, named after it (best.toml -> best.md)."""
    return output.with_suffix(".md")


def _ours(path: Path) -> bool:
    """Whether ``path`` is a file ``ccnn tune`` wrote (both its outputs start with :data:`MARK`)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.readline().startswith(MARK)
    except (OSError, UnicodeDecodeError):
        return False


def load_images(paths: Sequence[Path]) -> tuple[TuneImage, ...]:
    """The images as RGB pixels, named by file name (a bad one: a one-line CCNNError)."""
    images = []
    for path in paths:
        if not path.is_file():
            raise CCNNError(f"{path}: no such file")
        images.append(TuneImage(path.name, load_rgb(path)))
    return tuple(images)


# --- The study ------------------------------------------------------------------------------------


def _counts(optuna: ModuleType, trial: Any) -> bool:
    """Whether ``trial`` counts towards ``--trials``: complete, or failed on its own settings.

    A trial that failed on its settings says why (its ``error``); one closed because its run
    was interrupted or killed has no error, does not count, and is redone by the next run.
    """
    state = optuna.trial.TrialState
    return trial.state is state.COMPLETE or (trial.state is state.FAIL and "error" in trial.user_attrs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandon_dead(optuna: ModuleType, study: Any) -> None:
    """Close the trials a killed run of this machine left running, so they neither count nor wait.

    Only trials whose process is known to be gone (this host, a dead pid) are closed: another
    run may share the study and still be working on its own.
    """
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") == host and isinstance(pid, int) and not _alive(pid):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _open_study(optuna: ModuleType, url: str, label: str, name: str) -> Any:
    try:
        return optuna.create_study(storage=url, study_name=name, direction="minimize", load_if_exists=True)
    except ImportError as exc:
        raise CCNNError(f"{label}: cannot open the study ({exc})") from None
    except Exception as exc:  # SQLAlchemy's errors: a folder that is not there, a locked file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CCNNError(f"{label}: cannot open the study ({first})") from None


def _check_conditions(study: Any, label: str, conditions: dict[str, Any]) -> None:
    stored = study.user_attrs.get("conditions")
    if stored is None:
        study.set_user_attr("conditions", conditions)
        return
    for key, value in conditions.items():
        if stored.get(key) != value:
            was = "other images" if key == "pixels" else f"{key} {stored.get(key)}, not {value}"
            raise StudyMismatchError(
                f"{label}: study {study.study_name!r} was run with {was}; its trials would not "
                "compare: give another --study or --study-name"
            )


class _Search:
    """The ask-and-tell loop's state: the trials asked and not yet told, and the count."""

    def __init__(
        self,
        optuna: ModuleType,
        study: Any,
        space: SearchSpace,
        request: TuneRequest,
        images: tuple[TuneImage, ...],
        anchor: Curve,
        target: int,
        task_settings: dict[str, Any],
        on_fail: Callable[[int, str], None],
    ) -> None:
        self.optuna = optuna
        self.study = study
        self.space = space
        self.request = request
        self.images = images
        self.anchor = anchor
        self.target = target
        self.task_settings = task_settings
        self.on_fail = on_fail
        self.in_flight: dict[int, Any] = {}
        self.finished = sum(_counts(optuna, t) for t in study.get_trials(deepcopy=False))
        self.added = 0

    def tasks(self) -> Iterator[TrialTask]:
        """Trials to run, each asked of the study only when a worker takes it."""
        while self.finished + len(self.in_flight) < self.target:
            task = self._ask()
            if task is not None:
                yield task

    def _ask(self) -> TrialTask | None:
        ordinal = self.finished + len(self.in_flight)
        seed = int(np.random.SeedSequence([self.request.seed, ordinal]).generate_state(1)[0])
        self.study.sampler = self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        trial = self.study.ask()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = self.space.sample(trial)
        try:
            options = self.space.options(params, steps=self.request.steps, seed=self.request.seed)
        except (ConfigError, ValueError) as exc:  # a combination the settings refuse
            self._fail(trial, str(exc))
            return None
        trial.set_user_attr("settings", options.to_toml())
        self.in_flight[trial.number] = trial
        return TrialTask(
            number=trial.number,
            options=options,
            images=self.images,
            qualities=self.request.levels,
            **self.task_settings,
        )

    def _fail(self, trial: Any, message: str) -> None:
        trial.set_user_attr("error", message)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.finished += 1
        self.added += 1
        self.on_fail(trial.number, message)

    def tell(self, task: TrialTask, outcome: TrialOutcome) -> None:
        """Record ``outcome`` in the study: its points and curve, and its score or why none."""
        trial = self.in_flight.pop(task.number)
        curve = averaged(outcome.points, task.qualities)
        trial.set_user_attr("points", [dataclasses.asdict(p) for p in outcome.points])
        trial.set_user_attr("curve", curve.as_dict())
        if outcome.points:
            trial.set_user_attr("seconds", float(np.mean([p.seconds for p in outcome.points])))
            trial.set_user_attr("stopped_by_time", sum(p.stopped_by_time for p in outcome.points))
        if outcome.host:
            trial.set_user_attr("worker", outcome.host)
        if not outcome.ok:
            self._fail(trial, outcome.error)
            return
        result = score(curve, self.anchor)
        if result.value is None:
            self._fail(trial, result.reason)
            return
        if result.overlap is not None:
            trial.set_user_attr("overlap", result.overlap)
        self.study.tell(trial, result.value)
        self.finished += 1
        self.added += 1

    def abandon(self) -> None:
        """Close the trials in flight as interrupted: they do not count, and a rerun redoes them."""
        for trial in self.in_flight.values():
            with contextlib.suppress(Exception):
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.in_flight.clear()


def _enqueue_preset(optuna: ModuleType, study: Any, space: SearchSpace) -> None:
    """Make the preset's own settings the study's first trial, unless it has them already.

    They are the comparison the report makes (the untuned preset on the same images at the same
    budget), and a search that starts from them never reports settings worse than the preset's.
    """
    state = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("baseline") and (
            trial.state in (state.WAITING, state.RUNNING) or _counts(optuna, trial)
        ):
            return
    study.enqueue_trial(space.defaults(), user_attrs={"baseline": True})


def _importances(optuna: ModuleType, study: Any) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances (its default evaluator), or why there are none."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"Parameter importances need at least {MIN_IMPORTANCE_TRIALS} complete trials; "
            f"this study has {len(complete)}."
        )
    if len({t.value for t in complete}) < 2:
        return {}, "Every complete trial scored the same: no parameter stands out."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        return {}, f"Optuna could not compute parameter importances ({exc})."
    return dict(values), ""


def _runner(
    tasks: Iterator[TrialTask],
    jobs: int | None,
    ray: bool | str,
    threads: int,
    device: str | None,
    serial: Any,
) -> Iterator[tuple[TrialTask, TrialOutcome]]:
    if ray is not False:
        address = None if ray is True or ray == "" else str(ray)
        return ray_results(
            tasks,
            address,
            threads,
            device,
            function=run_trial,
            failed=failed_trial,
            on_cpu=on_cpu,
            in_flight=jobs,
        )
    if (jobs or 1) <= 1:
        return serial_results(tasks, serial)
    return pool_results(tasks, jobs or 1, run_trial, failed=failed_trial, per_slot=1)


def _progress(target: int, initial: int, enabled: bool) -> tqdm:
    return tqdm(
        total=target,
        initial=min(initial, target),
        desc="tune",
        unit="trial",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def run_tune(
    request: TuneRequest,
    trials: int = DEFAULT_TRIALS,
    *,
    study: str | os.PathLike[str] = DEFAULT_STUDY,
    study_name: str | None = None,
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    force: bool = False,
    jobs: int | None = None,
    threads: int = 1,
    ray: bool | str = False,
    device: str | None = None,
    progress: bool = True,
) -> TuneSummary:
    """Search encoder settings for ``request`` until its study holds ``trials`` finished trials.

    ``trials`` counts the study's finished trials (complete, or failed on their settings), its
    first being the preset's own settings: a rerun after an interruption finishes the missing
    ones, and a larger count extends the search. Trials run in this process (``jobs`` 1), on
    ``jobs`` local worker processes, or on Ray (``ray``: True, or a cluster address), each
    encode with ``threads`` torch threads. Writes ``output`` (the best settings, for
    ``--config``) and the report beside it; returns what was done. An interrupt closes the
    trials in flight (a rerun redoes them) and still writes the best of the finished ones.
    """
    check_request(request, trials, jobs, threads)
    output = Path(output)
    check_output(output, force)
    optuna = import_optuna()
    images = load_images(request.images)
    space = search_space(request.preset)
    label = os.fspath(study)
    name = study_name or f"ccnn-tune-{request.preset.value}"
    tuned = _open_study(optuna, storage_url(study), label, name)
    _check_conditions(tuned, label, request.conditions(images))
    if "anchor" not in tuned.user_attrs:
        anchor, anchor_label = jpeg_anchor(images)
        tuned.set_user_attr("anchor", anchor.as_dict())
        tuned.set_user_attr("anchor_label", anchor_label)
    anchor = Curve.from_dict(tuned.user_attrs["anchor"])
    _abandon_dead(optuna, tuned)
    _enqueue_preset(optuna, tuned, space)

    bar = _progress(trials, 0, progress)

    def failed(number: int, message: str) -> None:
        if progress:
            tqdm.write(f"ccnn: trial {number} failed: {message}", file=sys.stderr)

    search = _Search(
        optuna,
        tuned,
        space,
        request,
        images,
        anchor,
        trials,
        {"seconds": request.seconds, "threads": threads, "device": device},
        failed,
    )
    bar.update(min(search.finished, trials))

    def on_encode(image: str, quality: int | None, index: int, count: int) -> None:
        level = "" if quality is None else f" q{quality}"
        bar.set_postfix_str(f"{_best_text(optuna, tuned)}; encoding {image}{level} ({index + 1}/{count})")

    summary = TuneSummary(label, name, trials)
    try:
        for task, outcome in _runner(
            search.tasks(), jobs, ray, threads, device, partial(run_trial, on_encode=on_encode)
        ):
            search.tell(task, outcome)
            bar.update(1)
            bar.set_postfix_str(_best_text(optuna, tuned))
    except KeyboardInterrupt:
        search.abandon()
        summary.interrupted = True
    finally:
        bar.close()
    summary.finished, summary.added = search.finished, search.added
    _write_outputs(optuna, tuned, space, summary, output)
    return summary


def _best_text(optuna: ModuleType, study: Any) -> str:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return "no score yet"
    best = min(complete, key=lambda t: (t.value, t.number))
    return f"best {best.value:+.1f}% (trial {best.number})"


def _write_outputs(
    optuna: ModuleType,
    study: Any,
    space: SearchSpace,
    summary: TuneSummary,
    output: Path,
) -> None:
    """The report (always) and the best settings (when a trial has a score), written atomically."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state is not optuna.trial.TrialState.WAITING]
    importances, importance_note = _importances(optuna, study)
    report = Report(
        study=summary.study,
        name=summary.name,
        conditions=study.user_attrs["conditions"],
        anchor=Curve.from_dict(study.user_attrs["anchor"]),
        anchor_label=study.user_attrs.get("anchor_label", "JPEG"),
        space=space,
        trials=trials,
        counted=lambda t: _counts(optuna, t),
        complete=lambda t: t.state is optuna.trial.TrialState.COMPLETE,
        importances=importances,
        importance_note=importance_note,
        output=output,
        version=__version__,
        written=time.strftime("%Y-%m-%d"),
    )
    summary.report = render_report(report)
    best = report.best
    if best is not None:
        summary.best, summary.best_score = best.number, best.value
        write_atomic(output, best_toml(report).encode("utf-8"), force=True)
        summary.written.append(output)
    write_atomic(report_path(output), summary.report.encode("utf-8"), force=True)
    summary.written.append(report_path(output))
