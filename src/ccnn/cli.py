"""The ``ccnn`` command, in the style of cwebp / cjxl / avifenc.

Exit codes: 0 success, 1 bad input (unreadable image, corrupt file, existing output),
2 bad usage (unknown option, out-of-range setting), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from PIL import Image

from . import __version__, compress_image, decompress, read_info, videocli
from .demo import run_demo
from .errors import CCNNError, ConfigError, ConfigFileError, FormatError
from .files import check_writable, write_atomic, writes_in_place
from .format.video import is_video
from .imageio import ConversionWarning, encode_image
from .options import (
    TrainingProgress,
    UsageError,
    add_encoder_options,
    add_threads_option,
    device_option,
    encoder_options,
    set_threads,
)
from .presetinfo import describe_presets, preset_toml
from .settings import METADATA_CHOICES, METADATA_DEFAULT, Preset
from .sources import Source, read_source
from .videoio import is_clip_path

#: Output extensions whose format loses detail: decompressing to them re-encodes the pixels.
LOSSY_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k"}
)


#: The name of standard input (as an input) and standard output (as ``-o``), as in cwebp or cjxl.
STDIO = "-"
#: What ``decompress`` writes to standard output when ``--format`` does not say.
DEFAULT_PIPE_FORMAT = "png"


def _input(name: str) -> Source:
    """The input ``name`` as the API takes it: a path, or standard input's binary stream for ``-``."""
    if name != STDIO:
        return Path(name)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("refusing to read binary data from a terminal: pipe a file into '-'")
    return sys.stdin.buffer  # its name, <stdin>, is what messages about it say


def _input_label(name: str) -> str:
    return "<stdin>" if name == STDIO else name


def _check_output(name: str, force: bool, source: str) -> None:
    """Refuse early, before any long work: a terminal as standard output, or a file not to replace."""
    if name == STDIO:
        if sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal: redirect it or use -o FILE")
        return
    check_writable(Path(name), force, inputs=() if source == STDIO else (Path(source),))


def _write_output(name: str, data: bytes, force: bool) -> None:
    """Write ``data`` to the output ``name``: standard output for ``-``, else a file (files.py rules)."""
    if name == STDIO:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(Path(name), data, force=force)


def _summary(text: str, output: str) -> None:
    """The one-line summary: on stderr when stdout carries the output, so that it stays clean."""
    print(text, file=sys.stderr if output == STDIO else sys.stdout)


def cmd_compress(args: argparse.Namespace) -> int:
    set_threads(args)
    if args.image != STDIO and is_clip_path(Path(args.image)):  # a video, a Y4M file or a folder of frames
        return videocli.compress_clip(args, Path(args.image))
    for name in ("frames", "intra_period", "prediction"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} applies to clips, and {args.image} is an image")
    if args.output:
        out = args.output
    elif args.image == STDIO:
        out = STDIO  # a filter, as gzip and zstd are: standard input to standard output
    else:
        out = str(Path(args.image).with_suffix(".ccnn"))
    _check_output(out, args.force, args.image)
    label = _input_label(args.image)
    with TrainingProgress(f"compress {Path(label).name}", enabled=not args.quiet) as bar:
        result = compress_image(
            _input(args.image),
            options=encoder_options(args),
            progress=bar,
            device=device_option(args),
            metadata=args.metadata or METADATA_DEFAULT,
        )
    _write_output(out, result.data, args.force)
    note = result.time_budget_note()
    if note:
        print(f"ccnn: note: {note}", file=sys.stderr)
    if result.target is not None and not result.target_reached:
        # the closest file is written, and the miss is never silent: a message and exit 1
        print(f"ccnn: error: {result.target}", file=sys.stderr)
    elif result.target is not None and not args.quiet:
        print(f"ccnn: {result.target}", file=sys.stderr)
    height, width = result.decoded.shape[:2]
    if not args.quiet:
        _summary(
            f"{label} -> {'<stdout>' if out == STDIO else out}: {len(result.data)} bytes, "
            f"{result.bpp:.4f} bpp, PSNR {result.psnr:.2f} dB, {width}x{height}, "
            f"{result.steps} steps, {result.encode_seconds:.1f} s",
            out,
        )
    return 0 if result.target_reached else 1


def _decompress_format(args: argparse.Namespace, out: str) -> str:
    """The output's image format as a file extension (``.png``): ``--format``, else ``-o``'s extension."""
    if args.format:
        suffix = "." + args.format.lower().lstrip(".")
        Image.preinit()
        if suffix not in Image.EXTENSION:
            Image.init()
        if suffix not in Image.EXTENSION:
            raise UsageError(f"--format {args.format}: unknown image format (use png, bmp, tiff, ppm, ...)")
        return suffix
    suffix = Path(out).suffix.lower()
    if out == STDIO or (not suffix and writes_in_place(out)):  # a pipe or a device has no extension
        return "." + DEFAULT_PIPE_FORMAT
    return suffix


def cmd_decompress(args: argparse.Namespace) -> int:
    data = read_source(_input(args.file))
    if is_video(data):
        if args.file == STDIO:
            raise UsageError("a clip read from standard input cannot be decompressed yet; name the file")
        return videocli.decompress_clip(args, Path(args.file), data)
    if args.output:
        out = args.output
    elif args.file == STDIO:
        out = STDIO
    else:
        source_path = Path(args.file)
        out = str(source_path.with_name(f"{source_path.stem}-ccnn.png"))
    suffix = _decompress_format(args, out)
    threads = _decode_threads(args)
    _check_output(out, args.force, args.file)
    start = time.perf_counter()
    pixels = decompress(data, threads=threads)
    seconds = time.perf_counter() - start
    # encode_image names the format by a file name's extension; a pipe has none of its own
    shown = "<stdout>" if out == STDIO else out
    target = Path(out).with_suffix(suffix) if out != STDIO else Path(shown + suffix)
    encoded = encode_image(pixels, target, read_info(data).metadata)
    _write_output(out, encoded, args.force)
    if suffix in LOSSY_SUFFIXES:
        print(f"ccnn: note: {shown} is a lossy format: the decoded pixels were re-encoded", file=sys.stderr)
    if not args.quiet:
        _summary(
            f"{_input_label(args.file)} -> {shown}: {pixels.shape[1]}x{pixels.shape[0]}, {seconds:.3f} s", out
        )
    return 0


def _decode_threads(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, not {args.threads}")
    return args.threads


def cmd_info(args: argparse.Namespace) -> int:
    data = read_source(_input(args.file))
    if is_video(data):
        return videocli.print_info(data, args.json)
    info = read_info(data)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    spec = info.spec
    layers = ", ".join(f"tconv {s.kernel}x{s.kernel}/{s.stride} -> {s.channels}" for s in spec.layers)
    total = info.total_bytes
    print(f"format        ccnn version {info.version}")
    print(
        f"image         {info.width}x{info.height}, {info.channels} channel{'s' if info.channels > 1 else ''}"
        f"{' and alpha' if info.alpha else ''}"
    )
    print(
        f"latent        {spec.latent_channels} channels at stride {spec.latent_stride} ({spec.latent_mode}"
        f"{', spatial context' if spec.latent_context else ''})"
    )
    print(f"restoring     {layers}; Leaky ReLU slope {spec.slope:g}; {info.decoder_parameters} parameters")
    for name, size in (
        ("header", info.header_bytes),
        ("weights", info.weight_bytes),
        ("entropy", info.entropy_bytes),
        ("latent", info.latent_bytes),
        *((("alpha", info.alpha_bytes),) if info.alpha else ()),
        *((kind.upper(), size) for kind, size in info.metadata_bytes.items() if size),
        *((("note", len(info.note.encode())),) if info.note else ()),
    ):
        print(f"{name:<13} {size:>9} bytes  {100.0 * size / total:5.1f}%")
    print(f"{'total':<13} {total:>9} bytes  {info.bpp:.4f} bpp")
    if info.note:
        print(f"{'encoder':<13} {info.note}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    set_threads(args)
    with TrainingProgress("demo", enabled=not args.quiet) as bar:
        report = run_demo(
            Path(args.output), preset=args.preset, force=args.force, progress=bar, seconds=args.seconds
        )
    print("\n".join(report.lines()))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """``ccnn presets``: the built-in presets, or one as a settings file (``--toml NAME``)."""
    if args.toml:
        print(preset_toml(args.toml), end="")
    else:
        print(describe_presets())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit code 2 (``main`` prints it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


#: Commands whose modules load only when one of them runs, or for the whole help: each brings
#: its own dependencies (the benchmark's codecs, the batch pool, the tuner's Optuna glue), which
#: ``ccnn info`` and ``ccnn decompress`` never need, and which took some 80 ms of their start-up.
#: Command -> (module, the function that registers its commands on the ``ccnn`` parser).
EXTENSION_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("ccnn.bench.cli", "add_bench_commands"),
    "reproduce": ("ccnn.bench.cli", "add_bench_commands"),
    "batch": ("ccnn.batch.command", "add_batch_command"),
    "tune": ("ccnn.tune.command", "add_tune_command"),
}
#: The commands this module defines itself.
CORE_COMMANDS = ("compress", "decompress", "info", "demo", "presets")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ccnn`` parser; given the ``command`` about to run, without the other commands' modules.

    A core command leaves every extension out, an extension command brings its own module only;
    no command, or a word that is none of them, builds the whole parser (its help, its error).
    """
    parser = _Parser(prog="ccnn", description="CCNN: a per-image neural image codec.")
    parser.add_argument("--version", action="version", version=f"ccnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    compress = commands.add_parser("compress", help="train on an image or a clip and write a .ccnn file")
    compress.add_argument(
        "image",
        help="input image (PNG, JPEG, BMP, TIFF, ...; - reads standard input) or clip (.mp4, .mkv, "
        ".y4m, a folder of frames)",
    )
    compress.add_argument(
        "-o",
        "--output",
        help="output .ccnn file; - writes standard output (default: IMAGE with .ccnn, "
        "standard output when IMAGE is -)",
    )
    compress.add_argument(
        "--metadata",
        action="append",
        metavar="KINDS",
        help=f"metadata to keep: {', '.join(METADATA_CHOICES)}, or a comma list; repeatable "
        f"(default: {METADATA_DEFAULT}; the bytes count in the file's size)",
    )
    add_encoder_options(compress)
    compress.add_argument("--frames", type=int, help="clips: code only the first N frames")
    compress.add_argument(
        "--intra-period", type=int, help="clips: an intra frame every N frames (default 0: the first only)"
    )
    compress.add_argument(
        "--prediction",
        choices=("latent", "pixels"),
        help="clips: code each frame's latent as a delta (latent, the default) or each frame as a "
        "residual on the previous one (pixels; slower to encode)",
    )
    add_threads_option(compress)
    compress.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    compress.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    compress.set_defaults(func=cmd_compress)

    dec = commands.add_parser("decompress", help="decode a .ccnn file into an image or a clip")
    dec.add_argument("file", help="input .ccnn file; - reads standard input")
    dec.add_argument(
        "-o",
        "--output",
        help="output image; format from the extension; - writes standard output (default: FILE's "
        "name with -ccnn.png, so that it cannot replace the original photo.png; standard output "
        "when FILE is -); a clip: OUT.y4m, OUT.mkv (FFV1, lossless; needs PyAV) or a folder OUT/ "
        "of PNG frames",
    )
    dec.add_argument(
        "--format",
        metavar="EXT",
        help=f"output image format as an extension (png, bmp, tiff, ppm, ...), whatever -o's name "
        f"(default: -o's extension; {DEFAULT_PIPE_FORMAT} on standard output)",
    )
    dec.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads for the restoring network (default: %(default)s; the pixels are the same "
        "at any count, and more threads are slower on a busy machine)",
    )
    dec.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    dec.add_argument("--quiet", action="store_true", help="no summary")
    dec.set_defaults(func=cmd_decompress)

    info = commands.add_parser("info", help="show a .ccnn file's header and byte breakdown")
    info.add_argument("file", help="input .ccnn file; - reads standard input")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    demo = commands.add_parser("demo", help="compress the bundled sample and compare with JPEG")
    demo.add_argument("-o", "--output", default="ccnn-demo", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--preset",
        default=Preset.FAST.value,
        choices=[p.value for p in Preset],
        help="preset (default: %(default)s)",
    )
    demo.add_argument("--seconds", type=float, help="training time budget in seconds")
    add_threads_option(demo)
    demo.add_argument("-f", "--force", action="store_true", help="overwrite the demo's earlier outputs")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

    presets = commands.add_parser(
        "presets",
        help="list the built-in presets and their settings",
        description="List the built-in presets: effort, network by quality, loss and training phases.",
    )
    presets.add_argument(
        "--toml",
        metavar="NAME",
        choices=[p.value for p in Preset],
        help="print preset NAME as a complete settings file for --config (it encodes as --preset NAME)",
    )
    presets.set_defaults(func=cmd_presets)

    if command in CORE_COMMANDS:
        return parser
    wanted = [EXTENSION_COMMANDS[command]] if command in EXTENSION_COMMANDS else EXTENSION_COMMANDS.values()
    for module, function in dict.fromkeys(wanted):  # in order, each once
        getattr(importlib.import_module(module), function)(commands)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (None: none)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) stops a command as Ctrl-C does: cleanly, exit 130, nothing half-written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_show_warning = warnings.showwarning


def _show_note(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """ccnn's notes (a 16-bit input coded at 8 bits, ...) as one line: ``ccnn: note: ...``."""
    if issubclass(category, ConversionWarning):
        print(f"ccnn: note: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, *args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    args = argparse.Namespace()
    try:
        words = sys.argv[1:] if argv is None else argv
        args = build_parser(_command_word(words)).parse_args(words)
        with _terminate_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = _show_note
            return int(args.func(args) or 0)
    except ConfigFileError as exc:  # the fix is in the file: bad input
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, UsageError) as exc:
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 2
    except FormatError as exc:
        print(f"ccnn: error: {_input_label(getattr(args, 'file', ''))}: {exc}", file=sys.stderr)
        return 1
    except CCNNError as exc:
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ccnn: interrupted; no output written", file=sys.stderr)
        return 130
    except MemoryError:
        print("ccnn: error: out of memory", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader of our output went away (`ccnn info f.ccnn | head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # a full disk, a folder that vanished: one line, not a traceback
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
