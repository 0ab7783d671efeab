"""What ``ccnn tune`` writes: the best settings as a ``--config`` file, and a Markdown report.

Both are made from the study alone (the trials' stored measurements and settings), so a rerun
that adds no trial writes them again unchanged, and they always describe the whole study, not
only the trials of the last run. Nothing here imports Optuna: trials are read through the
attributes Optuna's ``FrozenTrial`` has (``number``, ``state``, ``value``, ``params``,
``user_attrs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bench.bdrate import MIN_OVERLAP
from .score import Curve, against
from .space import SearchSpace

#: The first characters of both outputs: a rerun replaces files that start so without --force.
MARK = "# ccnn tune"
#: Marks a BD-rate whose curves overlap too little (as ``ccnn bench`` marks them).
NARROW_MARK = "⚠"


@dataclass
class Report:
    """Everything the report and the settings file say, gathered from the study."""

    study: str
    name: str
    conditions: dict[str, Any]
    anchor: Curve
    anchor_label: str
    space: SearchSpace
    trials: Sequence[Any]
    counted: Callable[[Any], bool]
    complete: Callable[[Any], bool]
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""
    output: Path = Path("best.toml")
    version: str = ""
    written: str = ""

    @property
    def paper(self) -> bool:
        return self.space.paper

    @property
    def best(self) -> Any | None:
        """The complete trial with the lowest score (the earliest of equals)."""
        complete = [t for t in self.trials if self.complete(t)]
        return min(complete, key=lambda t: (t.value, t.number)) if complete else None

    @property
    def baseline(self) -> Any | None:
        """The trial of the preset's own settings, when it finished."""
        return next((t for t in self.trials if t.user_attrs.get("baseline") and self.counted(t)), None)

    @property
    def score_name(self) -> str:
        return "rate vs JPEG at equal PSNR" if self.paper else "BD-rate vs JPEG"

    def budget(self) -> str:
        steps = self.conditions["steps"]
        text = "the preset's own training steps" if steps is None else f"{steps} training steps"
        if self.conditions.get("budget_seconds") is not None:
            text += f", at most {self.conditions['budget_seconds']:g} s of training"
        return text + " per encode"

    def levels(self) -> str:
        if self.paper:
            return "one point per image (the ratio sets the rate)"
        return "quality levels " + ", ".join(str(q) for q in self.conditions["qualities"])


def _curve(trial: Any) -> Curve | None:
    data = trial.user_attrs.get("curve")
    curve = Curve.from_dict(data) if data else None
    return curve if curve is not None and curve.bpp else None


def _pct(value: float | None, mark: str = "") -> str:
    return "—" if value is None else f"{value:+.1f}%{mark}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _score_cell(trial: Any, report: Report) -> str:
    if not report.complete(trial):
        return "—"
    narrow = trial.user_attrs.get("overlap") is not None and trial.user_attrs["overlap"] < MIN_OVERLAP
    return _pct(trial.value, f" {NARROW_MARK}" if narrow else "")


def _seconds(trial: Any) -> str:
    seconds = trial.user_attrs.get("seconds")
    return "—" if seconds is None else f"{seconds:.1f}"


def _state(trial: Any, report: Report) -> str:
    if report.complete(trial):
        return "complete"
    if report.counted(trial):
        return "failed"
    return "interrupted" if trial.state.name == "FAIL" else trial.state.name.lower()


def _settings_cell(trial: Any, report: Report) -> str:
    """What a trial changed from the preset's settings, or why it failed."""
    error = trial.user_attrs.get("error")
    changed = report.space.changed(trial.params)
    if trial.user_attrs.get("baseline") and not changed:
        text = "the preset's own settings"
    else:
        text = ", ".join(f"{name}={_value(value)}" for name, (value, _) in changed.items()) or "—"
    return f"{text}; **failed**: {error}" if error else text


def _header(report: Report) -> list[str]:
    counted = [t for t in report.trials if report.counted(t)]
    complete = [t for t in counted if report.complete(t)]
    left_out = [t for t in report.trials if not report.counted(t) and t.state.name == "FAIL"]
    running = [t for t in report.trials if t.state.name == "RUNNING"]
    status = (
        f"{len(counted)} trials finished ({len(complete)} complete, {len(counted) - len(complete)} failed)"
    )
    if left_out:
        status += f"; {len(left_out)} interrupted and left out (a rerun redoes them)"
    if running:
        status += f"; {len(running)} running elsewhere"
    images = ", ".join(report.conditions["images"])
    space = "the poster's own space (ratio, kernel, slope)" if report.paper else "the encoder settings below"
    lines = [
        f"{MARK}: study `{report.name}` in `{report.study}`",
        "",
        f"{status}. ccnn {report.version}, written {report.written}.",
        "",
        f"- Images: {images}.",
        f"- Preset `{report.conditions['preset']}` at {report.levels()}; {report.budget()}; "
        f"seed {report.conditions['seed']}.",
        f"- Searched: {space}, with Optuna's TPE sampler; the first trial is the preset's own settings.",
        f"- Score: {report.score_name}, in %, lower is better; curves are averaged over the images per "
        "quality setting, as `ccnn bench` averages them. The anchor is "
        f"{report.anchor_label}, measured on the same images ({report.anchor.psnr_range()} averaged).",
    ]
    stopped = sum(t.user_attrs.get("stopped_by_time", 0) for t in report.trials)
    if stopped:
        lines.append(
            f"- {stopped} encodes were stopped by the time cap before their steps: their results "
            "depend on the machine's speed and load, and another run may differ."
        )
    return lines


def _best_lines(report: Report) -> list[str]:
    best, baseline = report.best, report.baseline
    if best is None:
        return ["", "## Best settings", "", "No trial has a score yet, so no settings file was written."]
    base_curve = _curve(baseline) if baseline is not None else None
    rows = [(f"trial {best.number} (best)", best)]
    if baseline is not None and baseline is not best:
        rows.append((f"trial {baseline.number} (the preset's settings)", baseline))
    elif baseline is best:
        rows[0] = (f"trial {best.number} (best: the preset's own settings)", best)
    # a paper trial is one point: two of them, at different PSNRs, compare only through JPEG
    vs_preset = () if report.paper else ("BD-rate vs the preset",)
    lines = [
        "",
        f"## Best settings: trial {best.number}",
        "",
        "| " + " | ".join(("trial", report.score_name, *vs_preset, "PSNR", "bpp", "s per encode")) + " |",
        "|---|---:|" + "---:|" * len(vs_preset) + "---|---|---:|",
    ]
    for label, trial in rows:
        curve = _curve(trial)
        relative = None if curve is None or base_curve is None else against(base_curve, curve)
        if trial is baseline:
            relative = 0.0
        psnr = "—" if curve is None else curve.psnr_range()
        rate = "—" if curve is None else curve.bpp_range()
        compared = () if report.paper else (_pct(relative),)
        cells = (label, _score_cell(trial, report), *compared, psnr, rate, _seconds(trial))
        lines.append("| " + " | ".join(cells) + " |")
    if report.paper:
        lines += [
            "",
            "A paper trial is one point per image (its ratio sets its rate), so two trials compare "
            "through JPEG: each one's rate against JPEG's at its own PSNR.",
        ]
    elif baseline is None:
        lines += ["", "The preset's own settings have not finished yet: no comparison with them."]
    lines += [
        "",
        f"`ccnn compress IMAGE --config {report.output.name}` encodes with them (written beside this "
        f"report); flags override the file, e.g. `{'--steps 3000' if report.paper else '-q 6'}`.",
        "",
        "| setting | best | the preset's | searched |",
        "|---|---|---|---|",
    ]
    defaults = report.space.defaults()
    for dimension in report.space.dimensions:
        if dimension.name not in best.params and dimension.name not in defaults:
            continue
        value = best.params.get(dimension.name)
        default = defaults.get(dimension.name)
        changed = value != default
        shown = f"**{_value(value)}**" if changed else _value(value)
        lines.append(f"| {dimension.name} | {shown} | {_value(default)} | {dimension.span()} |")
    return lines


def _importance_lines(report: Report) -> list[str]:
    lines = ["", "## Parameter importances", ""]
    if not report.importances:
        return [*lines, report.importance_note]
    complete = sum(1 for t in report.trials if report.complete(t))
    lines += [
        f"Optuna's default evaluator over the {complete} complete trials: how much of the spread of "
        "the scores each parameter explains (they add up to 1). With few trials they are rough.",
        "",
        "| parameter | importance |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.3f} |" for name, value in report.importances.items()]
    return lines


def _trial_lines(report: Report) -> list[str]:
    lines = ["", "## Trials", ""]
    trials = sorted(report.trials, key=lambda t: t.number)
    best = report.best
    if report.paper:
        lines += [
            f"| trial | ratio | kernel | slope | bpp | PSNR | {report.score_name} | s per encode | note |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for trial in trials:
            curve = _curve(trial)
            bpp = "—" if curve is None else f"{curve.bpp[0]:.3f}"
            psnr = "—" if curve is None else f"{curve.psnr[0]:.2f}"
            notes = []
            if trial is best:
                notes.append("**best**")
            if trial.user_attrs.get("baseline"):
                notes.append("the preset's own")
            if trial.user_attrs.get("error"):
                notes.append(f"failed: {trial.user_attrs['error']}")
            elif not report.counted(trial):
                notes.append(_state(trial, report))
            params = [_value(trial.params.get(name)) for name in ("ratio", "kernel", "slope")]
            lines.append(
                f"| {trial.number} | {' | '.join(params)} | {bpp} | {psnr} | {_score_cell(trial, report)} "
                f"| {_seconds(trial)} | {'; '.join(notes)} |"
            )
        return lines
    lines += [
        f"| trial | state | {report.score_name} | PSNR | bpp | s per encode | changed from the preset's |",
        "|---:|---|---:|---|---|---:|---|",
    ]
    for trial in trials:
        curve = _curve(trial)
        psnr = "—" if curve is None else curve.psnr_range()
        bpp = "—" if curve is None else curve.bpp_range()
        state = "**best**" if trial is best else _state(trial, report)
        lines.append(
            f"| {trial.number} | {state} | {_score_cell(trial, report)} | {psnr} | {bpp} | {_seconds(trial)} "
            f"| {_settings_cell(trial, report)} |"
        )
    if any(t.user_attrs.get("overlap", 1.0) < MIN_OVERLAP for t in trials):
        lines += [
            "",
            f"{NARROW_MARK} The trial's curve shares less than {MIN_OVERLAP:.0%} of the narrower PSNR range "
            "with JPEG's: its BD-rate speaks for that part only.",
        ]
    return lines


def render_report(report: Report) -> str:
    """The Markdown report: conditions, the best settings against the preset's, importances, trials."""
    lines = _header(report) + _best_lines(report) + _importance_lines(report) + _trial_lines(report)
    return "\n".join(lines) + "\n"


def best_toml(report: Report) -> str:
    """The best trial's settings as a ``--config`` file, headed by where they come from."""
    best = report.best
    if best is None:
        raise ValueError("no complete trial")
    baseline = report.baseline
    compared = ""
    if baseline is not None and baseline is not best and report.complete(baseline):
        compared = f" (the preset's own settings: {baseline.value:+.1f}%)"
    header = [
        f"{MARK}: the best settings of study {report.name!r} in {report.study}, trial {best.number}:",
        f"# {report.score_name} {best.value:+.1f}%{compared}",
        f"# on {', '.join(report.conditions['images'])},",
        f"# at {report.levels()}, {report.budget()}. Report: {report.output.with_suffix('.md').name}",
        "",
    ]
    return "\n".join(header) + best.user_attrs["settings"]
