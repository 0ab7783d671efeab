"""``ccnn tune IMAGES...``: the command-line face of :func:`ccnn.tune.run.run_tune`.

Importing this module needs neither Optuna nor torch: the command is listed by ``ccnn --help``
on any installation, and says how to install Optuna when it is run without it.
"""

from __future__ import annotations

import argparse
import sys

from ..batch.runners import RayMissingError
from ..errors import ConfigError
from ..options import add_device_option, device_option
from ..settings import PRESETS, Preset
from .run import (
    DEFAULT_OUTPUT,
    DEFAULT_QUALITIES,
    DEFAULT_STUDY,
    DEFAULT_TRIALS,
    OptunaMissingError,
    TuneRequest,
    run_tune,
)

EPILOG = (
    "Each trial encodes every image at every quality level with one setting of the search space "
    "and is scored by its BD-rate against JPEG on the same images; the first trial is the preset's "
    "own settings. Trials are kept in the study as they finish: after Ctrl-C (or a kill), the same "
    "command continues, and a larger --trials extends the search. Writes best.toml (for ccnn "
    "compress --config) and a report beside it (best.md). Budgets are steps, so results do not "
    "depend on the machine's load. Exit codes: 0 done, 1 bad input or no trial scored, 2 bad "
    "usage, 130 interrupted. Put --ray after the images (or write --ray=ADDRESS)."
)


def _qualities(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of quality levels: {text!r} (e.g. 2,4,6)") from None
    if not values:
        raise argparse.ArgumentTypeError(f"not a list of quality levels: {text!r} (e.g. 2,4,6)")
    return values


def _efforts() -> str:
    """The presets' own step counts, as the help states them (for a 768x512 image)."""
    return ", ".join(f"{p.value} {PRESETS[p].steps}" for p in Preset) + " for a 768x512 image"


def add_tune_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ccnn tune`` on the ``ccnn`` parser."""
    tune = commands.add_parser(
        "tune",
        help="search encoder settings for the best rate-distortion on some images (needs Optuna)",
        description="Search encoder settings for the best BD-rate against JPEG on IMAGES, with Optuna.",
        epilog=EPILOG,
    )
    tune.add_argument("images", nargs="+", metavar="IMAGE", help="images to tune on (a few, e.g. 2-4)")
    tune.add_argument(
        "--trials",
        type=int,
        default=DEFAULT_TRIALS,
        help="finished trials the study should hold, the preset's own settings first (default: "
        "%(default)s); a rerun continues up to it",
    )
    tune.add_argument(
        "--steps",
        type=int,
        help="training steps per encode, as ccnn compress --steps counts them (default: the preset's "
        f"effort: {_efforts()}); small values make a quick search",
    )
    tune.add_argument(
        "--budget-seconds",
        type=float,
        metavar="S",
        help="also cap each encode's training at S seconds; the report counts the encodes it stopped "
        "(those then depend on the machine's load)",
    )
    tune.add_argument(
        "--qualities",
        type=_qualities,
        metavar="LIST",
        help=f"quality levels each trial encodes at, for its BD-rate (default: "
        f"{','.join(map(str, DEFAULT_QUALITIES))})",
    )
    tune.add_argument(
        "--preset",
        choices=[p.value for p in Preset],
        default=Preset.DEFAULT.value,
        help="the preset to tune and compare with (default: %(default)s; paper: as --paper)",
    )
    tune.add_argument(
        "--paper",
        action="store_true",
        help="search the poster's own space: ratio, kernel 10-50, slope 0-0.15 (--preset paper)",
    )
    tune.add_argument(
        "--seed", type=int, default=0, help="seed of the encodes and of the sampler (default: 0)"
    )
    tune.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        help="where the study is kept: a file (SQLite) or an Optuna storage URL such as "
        "sqlite:///tune.db (default: %(default)s)",
    )
    tune.add_argument("--study-name", help="the study's name in that storage (default: ccnn-tune-PRESET)")
    tune.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        help="the best settings, for --config (default: %(default)s); the report goes beside it (.md)",
    )
    tune.add_argument(
        "-j",
        "--jobs",
        type=int,
        help="trials run at once: local worker processes (default: 1, in this process), or Ray tasks "
        "with --ray (default: two per CPU slot of the cluster)",
    )
    tune.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per encode (default: %(default)s; part of what decides the bytes)",
    )
    tune.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run each trial as a Ray task: no ADDRESS lets ray.init() find or start a cluster, "
        "'auto' joins this machine's, or HOST:PORT / ray://HOST:PORT",
    )
    add_device_option(tune)
    tune.add_argument(
        "-f", "--force", action="store_true", help="replace an output file that ccnn tune did not write"
    )
    tune.add_argument("--quiet", action="store_true", help="no progress bar, failures or report on screen")
    tune.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    preset = Preset.PAPER if args.paper else Preset(args.preset)
    if args.paper and args.preset not in (Preset.DEFAULT.value, Preset.PAPER.value):
        raise ConfigError(f"--paper searches the paper preset, not --preset {args.preset}")
    if preset is Preset.PAPER and args.qualities is not None:
        raise ConfigError("--qualities: the paper preset's rate is its ratio, which --paper searches")
    request = TuneRequest(
        images=tuple(args.images),
        preset=preset,
        qualities=args.qualities or DEFAULT_QUALITIES,
        steps=args.steps,
        seconds=args.budget_seconds,
        seed=args.seed,
    )
    try:
        summary = run_tune(
            request,
            args.trials,
            study=args.study,
            study_name=args.study_name,
            output=args.output,
            force=args.force,
            jobs=args.jobs,
            threads=args.threads,
            ray=False if args.ray is None else (args.ray or True),
            device=device_option(args),
            progress=not args.quiet,
        )
    except (OptunaMissingError, RayMissingError) as exc:
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(summary.report, end="")
    written = " and ".join(str(path) for path in summary.written)
    if summary.interrupted:
        print(
            f"ccnn: interrupted; the study keeps its {summary.finished} finished "
            f"trial{'' if summary.finished == 1 else 's'} ({args.study}), "
            f"{written} describe them; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    if summary.best is None:
        print(f"ccnn: error: no trial produced a score; see {written}", file=sys.stderr)
        return 1
    return 0
