"""The command-line pieces that several commands share: encoder flags, threads, progress.

The encoder flags are generated from :class:`ccnn.settings.EncoderOptions`, so that a setting
is described once and every command (compress, demo, batch, bench) offers it the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from tqdm import tqdm

from .encoder.result import Progress
from .encoder.threads import set_torch_threads
from .errors import ConfigError
from .settings import DEVICES, PRESETS, EncoderOptions, Preset, option_infos, option_type


class UsageError(Exception):
    """Bad usage discovered after parsing: exit code 2."""


def flag(name: str) -> str:
    """The command-line flag of setting ``name`` (``seconds`` -> ``--seconds``)."""
    return "--" + name.replace("_", "-")


#: Size suffixes ``--max-bytes`` accepts, as cwebp's and avifenc's users write sizes.
SIZE_SUFFIXES = {"": 1, "k": 1000, "m": 1000**2}


def parse_size(text: str) -> int:
    """``50000``, ``50k`` or ``1.5M`` as a number of bytes (decimal units, as file sizes are shown)."""
    cleaned = text.strip().lower().removesuffix("b")
    suffix = cleaned[-1:] if cleaned[-1:] in SIZE_SUFFIXES else ""
    try:
        value = float(cleaned[: len(cleaned) - len(suffix)]) * SIZE_SUFFIXES[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or with a k or M suffix)") from None
    if not math.isfinite(value) or value != round(value):
        raise argparse.ArgumentTypeError(f"not a whole number of bytes: {text!r}")
    return int(value)


#: Command-line spellings beside an option's own flag, and options whose values are parsed
#: differently from their type (sizes with suffixes).
FLAG_ALIASES = {"max_bytes": ("--target-size",)}
FLAG_PARSERS = {"max_bytes": parse_size}


def add_encoder_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """``--config``, ``--preset``, one flag per encoder setting (except ``skip``) and ``--device``.

    ``--preset`` has no argparse default, so that :func:`encoder_options` can tell a preset
    given on the command line (which overrides the file's) from none.
    """
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="read every encoder setting from a TOML file (ccnn presets --toml NAME writes one); "
        "the flags below override it",
    )
    parser.add_argument(
        "--preset",
        choices=[p.value for p in Preset],
        help=f"codec preset (default: the --config file's, else {Preset.DEFAULT.value})",
    )
    for name, info in option_infos().items():
        if name in skip:
            continue
        applies = (
            "" if len(info.presets) == len(Preset) else f"; {' or '.join(p.value for p in info.presets)} only"
        )
        flags = [info.short, flag(name)] if info.short else [flag(name)]
        flags += FLAG_ALIASES.get(name, ())
        if name in ("quality", "steps", "seconds"):
            values = [(p.value, getattr(PRESETS[p], name)) for p in info.presets]
            defaults = ", ".join(f"{p} {'none' if v is None else format(v, 'g')}" for p, v in values)
            applies += f" (default: {defaults})"
        kind = FLAG_PARSERS.get(name, option_type(name))
        parser.add_argument(*flags, dest=name, type=kind, help=(info.help + applies).replace("%", "%%"))
    add_device_option(parser)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: where training runs."""
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="where training runs (default: %(default)s)"
    )


def encoder_options(args: argparse.Namespace) -> EncoderOptions:
    """The :class:`EncoderOptions` that :func:`add_encoder_options` parsed (range-checked).

    With ``--config``, the file's settings, each overridden by its flag when one is given.
    """
    flags = {name: getattr(args, name) for name in option_infos() if getattr(args, name, None) is not None}
    config = getattr(args, "config", None)
    if not config:
        return EncoderOptions(args.preset or Preset.DEFAULT, **flags)
    loaded = EncoderOptions.from_toml_file(config)
    preset = args.preset or loaded.preset
    EncoderOptions(preset, **flags)  # a bad flag is named as such, before the file comes in
    # a skipped flag (bench's --quality) must not come in through the file either
    skipped = {name: None for name in option_infos() if not hasattr(args, name)}
    try:
        return dataclasses.replace(loaded, preset=preset, **{**skipped, **flags})
    except ConfigError as exc:  # a setting of the file that the flags make wrong: bad usage
        raise ConfigError(f"{config}, with the flags given: {exc}") from None


def device_option(args: argparse.Namespace) -> str | None:
    """``--device``, with ``auto`` as None (the library's own choice)."""
    return None if args.device == "auto" else args.device


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads`` for commands that train one image at a time in this process."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training (default: %(default)s; a second thread helps on an idle "
        "machine and can make training many times slower when another process is busy)",
    )


def set_threads(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, not {args.threads}")
    set_torch_threads(args.threads)


class TrainingProgress:
    """A tqdm bar over the training budget: steps, elapsed seconds, PSNR and the estimated bpp
    (an image's whole file; a clip's latents).

    Training stops after its steps, or earlier when a time budget is given and runs out, so the
    bar's percentage is that of the budget nearer its end.
    """

    def __init__(self, description: str, enabled: bool = True) -> None:
        self.description = description
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(
                total=100,
                desc=self.description,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        budget = "" if event.budget_seconds is None else f"/{event.budget_seconds:.0f}"
        self.bar.set_postfix_str(
            f"step {event.step}/{event.steps}, {event.seconds:.0f}{budget} s, "
            f"PSNR {event.psnr:.2f} dB, ~{event.bpp:.3f} bpp",
            refresh=False,
        )
        self.bar.update(budget_percent(event) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def budget_percent(event: Progress) -> int:
    """How far training is through whichever of its budgets (steps, seconds) is nearer its end."""
    fraction = event.step / max(event.steps, 1)
    if event.budget_seconds is not None:
        fraction = max(fraction, event.seconds / max(event.budget_seconds, 1e-9))
    return min(100, int(100 * fraction))
