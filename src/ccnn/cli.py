"""The ``ccnn`` command, in the style of cwebp / cjxl / avifenc.

Exit codes: 0 success, 1 bad input (unreadable image, corrupt file, existing output),
2 bad usage (unknown option, out-of-range setting), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

from . import __version__, compress_image, decompress, read_info, videocli
from .batch.command import add_batch_command
from .bench.cli import add_bench_commands
from .demo import run_demo
from .errors import CCNNError, ConfigError, FormatError
from .files import check_writable, write_atomic
from .format.video import is_video
from .imageio import encode_image
from .options import (
    TrainingProgress,
    UsageError,
    add_encoder_options,
    add_threads_option,
    device_option,
    encoder_options,
    set_threads,
)
from .settings import Preset
from .videoio import is_clip_path

#: Output extensions whose format loses detail: decompressing to them re-encodes the pixels.
LOSSY_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k"}
)


def _path(name: str) -> Path:
    """A file named on the command line; ``-`` (standard input or output) is not supported yet."""
    if name == "-":
        raise UsageError("'-' (standard input or output) is not supported; name a file")
    return Path(name)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise CCNNError(f"{path}: no such file")
    if path.is_dir():
        raise CCNNError(f"{path}: is a directory")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CCNNError(f"{path}: cannot read ({exc.strerror})") from None


def cmd_compress(args: argparse.Namespace) -> int:
    set_threads(args)
    source = _path(args.image)
    if is_clip_path(source):  # a video file, a Y4M file or a folder of frames: a clip
        return videocli.compress_clip(args, source)
    for name in ("frames", "intra_period", "prediction"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} applies to clips, and {source} is an image")
    out = _path(args.output) if args.output else source.with_suffix(".ccnn")
    check_writable(out, args.force, inputs=(source,))
    with TrainingProgress(f"compress {source.name}", enabled=not args.quiet) as bar:
        result = compress_image(
            source, options=encoder_options(args), progress=bar, device=device_option(args)
        )
    write_atomic(out, result.data, force=args.force)
    height, width = result.decoded.shape[:2]
    if not args.quiet:
        print(
            f"{source} -> {out}: {len(result.data)} bytes, {result.bpp:.4f} bpp, "
            f"PSNR {result.psnr:.2f} dB, {width}x{height}, "
            f"{result.steps} steps, {result.encode_seconds:.1f} s"
        )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    source = _path(args.file)
    data = _read_bytes(source)
    if is_video(data):
        return videocli.decompress_clip(args, source, data)
    out = _path(args.output) if args.output else source.with_name(f"{source.stem}-ccnn.png")
    check_writable(out, args.force, inputs=(source,))
    start = time.perf_counter()
    pixels = decompress(data)
    seconds = time.perf_counter() - start
    write_atomic(out, encode_image(pixels, out), force=args.force)
    if out.suffix.lower() in LOSSY_SUFFIXES:
        print(f"ccnn: note: {out} is a lossy format: the decoded pixels were re-encoded", file=sys.stderr)
    if not args.quiet:
        print(f"{source} -> {out}: {pixels.shape[1]}x{pixels.shape[0]}, {seconds:.3f} s")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    data = _read_bytes(_path(args.file))
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
    ):
        print(f"{name:<13} {size:>9} bytes  {100.0 * size / total:5.1f}%")
    print(f"{'total':<13} {total:>9} bytes  {info.bpp:.4f} bpp")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    set_threads(args)
    with TrainingProgress("demo", enabled=not args.quiet) as bar:
        report = run_demo(
            Path(args.output), preset=args.preset, force=args.force, progress=bar, seconds=args.seconds
        )
    print("\n".join(report.lines()))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit code 2 (``main`` prints it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccnn", description="CCNN: a per-image neural image codec.")
    parser.add_argument("--version", action="version", version=f"ccnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    compress = commands.add_parser("compress", help="train on an image or a clip and write a .ccnn file")
    compress.add_argument(
        "image", help="input image (PNG, JPEG, BMP, TIFF, ...) or clip (.mp4, .mkv, .y4m, a folder of frames)"
    )
    compress.add_argument("-o", "--output", help="output .ccnn file (default: IMAGE with .ccnn)")
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
    dec.add_argument("file", help="input .ccnn file")
    dec.add_argument(
        "-o",
        "--output",
        help="output image; format from the extension (default: FILE's name with -ccnn.png, "
        "so that it cannot replace the original photo.png); a clip: OUT.y4m or a folder OUT/ of PNG frames",
    )
    dec.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    dec.add_argument("--quiet", action="store_true", help="no summary")
    dec.set_defaults(func=cmd_decompress)

    info = commands.add_parser("info", help="show a .ccnn file's header and byte breakdown")
    info.add_argument("file", help="input .ccnn file")
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

    add_bench_commands(commands)
    add_batch_command(commands)
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = argparse.Namespace()
    try:
        args = build_parser().parse_args(argv)
        with _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 2
    except FormatError as exc:
        print(f"ccnn: error: {getattr(args, 'file', '')}: {exc}", file=sys.stderr)
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
