"""Command-line entry points of the benchmarks (``ccnn bench``, ``ccnn reproduce``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import CCNNError, ConfigError
from ..options import add_device_option, add_encoder_options, device_option, encoder_options
from ..paths import sample_path
from .codecs import CLASSICAL, CODEC_NAMES, CcnnCodec, Codec
from .report import NARROW_MARK, RunInfo, bd_table, narrow_overlaps, write_results
from .reproduce import run_reproduce
from .run import Cache, Outcome, Task, default_threads, execute, find_images, plan, progress_bar

#: Where the benchmarks write when no folder is given: below the current folder, named after them.
DEFAULT_BENCH_DIR = "ccnn-bench"
DEFAULT_REPRODUCE_DIR = "ccnn-reproduce"
DEFAULT_REPRODUCE_CACHE = "ccnn-reproduce/cache"


def _usage_error(message: str) -> Exception:
    """Bad usage found after parsing: ``ccnn`` exits with code 2 and this one-line message."""
    return ConfigError(message)


def parse_numbers(text: str) -> tuple[float, ...]:
    """``"1,2,5"`` or ``"10:90:10"`` (inclusive range) or a mix of both, as numbers."""
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                pieces = [float(p) for p in part.split(":")]
                if len(pieces) not in (2, 3) or (len(pieces) == 3 and pieces[2] <= 0):
                    raise ValueError
                start, stop = pieces[0], pieces[1]
                step = pieces[2] if len(pieces) == 3 else 1.0
                count = int((stop - start) / step + 1e-9) + 1
                values.extend(round(start + i * step, 9) for i in range(max(0, count)))
            else:
                values.append(float(part))
        except ValueError:
            raise _usage_error(f"bad quality list {text!r} (use e.g. 1,2,5 or 10:90:10)") from None
    if not values:
        raise _usage_error(f"empty quality list {text!r}")
    return tuple(int(v) if float(v).is_integer() else v for v in values)


def parse_qualities(specs: list[str], codecs: list[str]) -> dict[str, tuple[float, ...]]:
    """``--qualities`` values: ``CODEC=LIST`` each, or a bare ``LIST`` for ccnn (or the only codec)."""
    result: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        if "=" in spec:
            name, _, values = spec.partition("=")
            name = name.strip().lower()
            if name not in codecs:
                raise _usage_error(f"--qualities {spec}: {name!r} is not among the codecs run")
        else:
            if "ccnn" in codecs:
                name = "ccnn"
            elif len(codecs) == 1:
                name = codecs[0]
            else:
                raise _usage_error(f"--qualities {spec}: say which codec, e.g. jpeg={spec}")
            values = spec
        result[name] = parse_numbers(values)
    return result


def build_codecs(args: argparse.Namespace) -> list[Codec]:
    """The codecs of a ``ccnn bench`` run, with their quality sweeps and threads."""
    names = [n.strip().lower() for n in args.codecs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CODEC_NAMES]
    if unknown or not names:
        raise _usage_error(
            f"unknown codec {', '.join(unknown) or '(none)'} (choose from {', '.join(CODEC_NAMES)})"
        )
    if args.jobs < 1:
        raise _usage_error(f"--jobs must be at least 1, not {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise _usage_error(f"--threads must be at least 1, not {args.threads}")
    threads = args.threads or default_threads(args.jobs)
    qualities = parse_qualities(args.qualities or [], names)
    codecs: list[Codec] = []
    for name in dict.fromkeys(names):
        if name == "ccnn":
            codec: Codec = CcnnCodec(
                encoder=encoder_options(args), device=device_option(args), threads=threads
            )
        else:
            codec = CLASSICAL[name](threads=threads)
        if name in qualities:
            codec = dataclasses.replace(codec, qualities=qualities[name])
        if isinstance(codec, CcnnCodec):
            for quality in codec.qualities:
                codec.config(quality)  # range-checks, ConfigError -> exit 2
        codecs.append(codec)
    return codecs


def _execute_with_progress(tasks: list[Task], outcome: Outcome, cache: Cache, jobs: int, quiet: bool) -> bool:
    """Run ``tasks`` under a progress bar; False when Ctrl-C stopped them.

    An interruption is not an error: what finished is cached and the same command continues.
    """
    bar = progress_bar(outcome.cached + len(tasks), outcome.cached, enabled=not quiet)

    def start(task: Task) -> None:
        bar.set_postfix_str(f"{task.codec.name} {task.image.name} {task.codec.quality_label(task.quality)}")

    def done(task: Task, record: dict) -> None:
        if jobs > 1:
            start(task)
        bar.update(1)
        if "error" in record:
            bar.write(f"ccnn bench: {task.codec.name} {task.image.name}: {record['error']}", file=sys.stderr)

    try:
        execute(tasks, outcome, cache, jobs=jobs, on_done=done, on_start=start)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"ccnn bench: interrupted; {outcome.measured + outcome.cached} measurements are cached "
            f"in {cache.directory}, run the same command to continue",
            file=sys.stderr,
        )
        return False
    finally:
        bar.close()
    return True


#: Image-codec settings that mean nothing to ``ccnn bench --video`` (its clips stop on steps).
_IMAGE_ONLY = ("config", "seconds", "ratio", "kernel", "slope", "target_bpp", "max_bytes", "target_psnr")


def cmd_video(args: argparse.Namespace) -> int:
    """``ccnn bench --video CLIPS``: the clip benchmark (:mod:`ccnn.bench.video`)."""
    from .video import VIDEO_CODEC_NAMES, cmd_video_bench  # PyAV and the clip codec: only when asked

    if args.images:
        raise _usage_error(f"{args.images}: give the clips after --video, not an image folder")
    for name in _IMAGE_ONLY:
        if getattr(args, name, None) is not None:
            raise _usage_error(f"--{name.replace('_', '-')} does not apply to --video")
    names = [n.strip().lower() for n in (args.codecs or ",".join(VIDEO_CODEC_NAMES)).split(",") if n.strip()]
    qualities = parse_qualities(args.qualities or [], names)
    if args.crfs:
        args.crfs = parse_numbers(args.crfs)
    return cmd_video_bench(args, qualities)


def cmd_bench(args: argparse.Namespace) -> int:
    """``ccnn bench``: measure what the cache lacks, then write the results and print BD-rates."""
    if args.video is not None:
        return cmd_video(args)
    for name in ("frames", "fps", "crfs", "intra_period", "intra_steps"):
        if getattr(args, name) is not None:
            raise _usage_error(f"--{name.replace('_', '-')} applies to --video only")
    if args.codecs is None:
        args.codecs = ",".join(CODEC_NAMES)
    codecs = build_codecs(args)
    images_dir = Path(args.images) if args.images else sample_path()
    images = find_images(images_dir)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CCNNError(f"{out_dir}: is not a folder")
    cache = Cache(Path(args.cache) if args.cache else out_dir / "cache")
    outcome, tasks = plan(codecs, images, cache)
    for name, reason in outcome.skipped.items():
        print(f"ccnn bench: skipping {name}: {reason}", file=sys.stderr)
    threads = codecs[0].threads if codecs else 1
    info = RunInfo(
        command="ccnn bench " + " ".join(shlex.quote(a) for a in args.argv),
        image_set=image_set_name(images_dir),
        jobs=args.jobs,
        threads=threads,
    )
    if not _execute_with_progress(tasks, outcome, cache, args.jobs, args.quiet):
        return 130
    if not outcome.codecs:
        raise CCNNError("no codec could run (see the notes above)")
    curves = write_results(outcome, info, out_dir)
    for note in narrow_overlaps(curves):  # even with --quiet: it changes what the numbers mean
        print(f"ccnn bench: warning: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {out_dir / 'report.md'}, {out_dir / 'rd.png'}, {out_dir / 'results.csv'} and JSONs")
        if "jpeg" in curves:
            for row in bd_table(curves, "jpeg"):
                value = "—" if row["bd_rate"] is None else f"{row['bd_rate']:+.1f}% over {row['overlap']}"
                if row["narrow"]:
                    value += f" {NARROW_MARK} ({row['overlap_share']:.0%} of the narrower curve's range)"
                print(f"  BD-rate vs JPEG  {curves[row['codec']].codec.label:<10} {value}")
    return 0


def image_set_name(images: Path) -> str:
    """How titles and reports name the images: the folder's (or file's) name, never its path."""
    if images.resolve() == sample_path().resolve():
        return "the bundled sample"
    return images.resolve().name or "/"


def cmd_reproduce(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise _usage_error(f"--threads must be at least 1, not {args.threads}")
    if args.seconds is not None and args.seconds <= 0:
        raise _usage_error(f"--seconds must be positive, not {args.seconds}")
    budgets = parse_numbers(args.curve_seconds) if args.curve_seconds else None
    if budgets is not None and min(budgets) <= 0:
        raise _usage_error("--curve-seconds must be positive")
    return run_reproduce(
        out_dir=Path(args.output),
        cache_dir=Path(args.cache),
        image=Path(args.image),
        seconds=args.seconds,
        curve_seconds=budgets,
        ratios=parse_numbers(args.ratios) if args.ratios else None,
        device=device_option(args),
        command="ccnn reproduce " + " ".join(shlex.quote(a) for a in args.argv),
        quiet=args.quiet,
        threads=args.threads,
        from_cache=args.from_cache,
    )


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``ccnn bench`` and ``ccnn reproduce`` on the ``ccnn`` parser."""
    _add_bench_parser(commands)
    _add_reproduce_parser(commands)


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    """``ccnn bench``: the images, the codecs and their sweeps, the encoder's options, the jobs."""
    bench = commands.add_parser(
        "bench",
        help="rate-distortion benchmark against JPEG, WebP, JPEG 2000, HEIF, AVIF and JPEG XL",
        description=(
            "Encode and decode every image with every codec at each quality point; write a per-image "
            "CSV, one CompressAI-style JSON per codec, report.md (BD-rates, PSNR at fixed rates) and "
            "rd.png into RESULTS_DIR. Finished measurements are cached there: rerun to continue."
        ),
    )
    bench.add_argument(
        "images",
        nargs="?",
        help="folder of images (default: the sample image bundled with ccnn)",
    )
    bench.add_argument(
        "--codecs",
        help=f"comma-separated codecs (default: {','.join(CODEC_NAMES)}; with --video: "
        "ccnn,ccnn-intra,x264,x265,svtav1,mjpeg)",
    )
    bench.add_argument(
        "--qualities",
        action="append",
        metavar="[CODEC=]LIST",
        help="quality points of a codec, e.g. ccnn=1,2,4 or jpeg=10:90:10 (repeatable; "
        "a bare LIST is for ccnn). ccnn: --quality levels, or λ for --preset paper; "
        "jpeg2000: target bpp; jpegxl: distance; others: quality 0-100",
    )
    add_encoder_options(bench, skip=("quality", "ratio"))  # a sweep takes --qualities instead
    video = bench.add_argument_group(
        "clips (--video)",
        "ccnn's clip codec (--preset fast|default, --steps, --seed) against x264, x265, SVT-AV1, "
        "all-intra ccnn and MJPEG through PyAV, on the clips' decoded 4:2:0 frames; "
        "--qualities takes ccnn=, ccnn-intra=, x264=, x265=, svtav1= (CRF) and mjpeg= (qscale 2-31)",
    )
    video.add_argument(
        "--video", nargs="+", metavar="CLIP", help="benchmark these clips (mp4, mkv, y4m, folders of frames)"
    )
    video.add_argument("--frames", type=int, help="the first N frames of each clip (default: all)")
    video.add_argument("--fps", type=float, help="frame rate for kbps and the codecs (default: the clip's)")
    video.add_argument("--crfs", metavar="LIST", help="x264 and x265 CRFs (default: 28,33,38,43,48)")
    video.add_argument(
        "--intra-period",
        type=int,
        help="an intra frame every N frames for ccnn clip, x264, x265 and SVT-AV1 "
        "(default 0: the first only)",
    )
    video.add_argument(
        "--intra-stride",
        type=int,
        default=1,
        help="all-intra ccnn codes every Nth frame only and averages their rate and PSNR (default: 1)",
    )
    video.add_argument("--intra-preset", default="fast", choices=("fast", "default"), help="all-intra ccnn's")
    video.add_argument(
        "--intra-steps", type=int, help="all-intra ccnn's training steps (default: the preset's)"
    )
    bench.add_argument("-j", "--jobs", type=int, default=1, help="parallel worker processes (default: 1)")
    bench.add_argument("--threads", type=int, help="threads per job (default: cores / jobs)")
    bench.add_argument(
        "-o", "--output", default=DEFAULT_BENCH_DIR, metavar="RESULTS_DIR", help="default: %(default)s"
    )
    bench.add_argument("--cache", help="measurement cache folder (default: RESULTS_DIR/cache)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    bench.set_defaults(func=_with_argv(cmd_bench))


def _add_reproduce_parser(commands: argparse._SubParsersAction) -> None:
    """``ccnn reproduce``: the image, the budgets and λ sweep of the poster's experiments, the cache."""
    reproduce = commands.add_parser(
        "reproduce",
        help="recreate the poster's experiments on kodim08 and write poster.md",
        description=(
            "Train the poster's network (--preset paper) on kodim08 over a λ sweep with 10x10 and "
            "35x35 filters, compare with JPEG, measure learning speed, and write DIR/poster.md with "
            "plots and a verdict on each of the poster's claims. Trainings are cached: rerun to continue."
        ),
    )
    reproduce.add_argument(
        "-o", "--output", default=DEFAULT_REPRODUCE_DIR, metavar="DIR", help="default: %(default)s"
    )
    reproduce.add_argument(
        "--image", required=True, help="the image to use (the poster used Kodak's kodim08.png)"
    )
    reproduce.add_argument(
        "--seconds", type=float, help="training budget of each sweep point in seconds (default: 120)"
    )
    reproduce.add_argument(
        "--curve-seconds",
        metavar="LIST",
        help="training budgets of the learning-speed runs (default: 15,30,60,120,300,600)",
    )
    reproduce.add_argument("--ratios", metavar="LIST", help="λ sweep (default: 2,3,4,6,8,12,16)")
    add_device_option(reproduce)
    reproduce.add_argument(
        "--cache", default=DEFAULT_REPRODUCE_CACHE, help="cache of finished trainings (default: %(default)s)"
    )
    reproduce.add_argument("--threads", type=int, help="torch threads for training (default: all cores)")
    reproduce.add_argument(
        "--from-cache",
        action="store_true",
        help="train nothing: write poster.md from the cached trainings, even ones made by an earlier "
        "version of the encoder's code (the report says so)",
    )
    reproduce.add_argument("--quiet", action="store_true", help="no progress bar")
    reproduce.set_defaults(func=_with_argv(cmd_reproduce))


def _with_argv(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so it knows its options as words (written at the top of its report)."""

    def run(args: argparse.Namespace) -> int:
        args.argv = _reconstruct(args)
        return function(args)

    return run


def _reconstruct(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` that differ from their defaults, as command-line words."""
    words: list[str] = []
    skip = {"func", "command", "argv", "quiet"}
    defaults = {
        "preset": "default",
        "device": "auto",
        "jobs": 1,
        "intra_stride": 1,
        "intra_preset": "fast",
        "cache": DEFAULT_REPRODUCE_CACHE,
    }
    for name, value in vars(args).items():
        if name in skip or value is None or value is False or defaults.get(name) == value:
            continue
        if name == "output" and value in (DEFAULT_BENCH_DIR, DEFAULT_REPRODUCE_DIR):
            continue
        if name in ("images",):
            words.append(str(value))
        elif name == "video":
            words += ["--video", *map(str, value)]
        elif value is True:
            words.append(f"--{name.replace('_', '-')}")
        elif isinstance(value, list):
            for item in value:
                words += [f"--{name.replace('_', '-')}", str(item)]
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
            words += [f"--{name.replace('_', '-')}", text]
    return words
