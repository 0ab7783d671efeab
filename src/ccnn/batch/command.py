"""``ccnn batch compress|decompress IN_DIR OUT_DIR``: the command-line face of :mod:`ccnn.batch.run`."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..options import add_encoder_options, device_option, encoder_options
from .run import COMPRESS, DECOMPRESS, DECOMPRESS_FORMATS, run_batch
from .runners import RayMissingError

EPILOG = (
    "A manifest.csv in OUT_DIR records every input (status, bytes, bpp, PSNR, seconds, error, "
    "checksums); running the same command again skips what is finished and verified. "
    "Exit codes: 0 all done, 1 some inputs failed, 2 bad usage, 130 interrupted. "
    "Put --ray after the folders (or write --ray=ADDRESS), so that it does not take IN_DIR "
    "for an address. See docs/cluster.md."
)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_dir", metavar="IN_DIR", help="folder of inputs (searched recursively)")
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder for the outputs (same tree) and its manifest.csv"
    )
    parser.add_argument(
        "-j", "--jobs", type=int, help="local worker processes (default: one per core; 1: in this process)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per image (default: cores // jobs locally, 1 per Ray task); "
        "the same seed gives the same bytes only with the same --threads",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run one Ray task per image: no ADDRESS lets ray.init() find or start a cluster, "
        "'auto' joins the cluster this machine belongs to, or HOST:PORT / ray://HOST:PORT",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace existing outputs the manifest does not verify"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_batch_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ccnn batch`` (with ``compress`` and ``decompress``) on the ``ccnn`` parser."""
    batch = commands.add_parser(
        "batch",
        help="compress or decompress a folder tree on all cores or on a Ray cluster",
        description="Compress or decompress a folder tree on all cores, or on a Ray cluster.",
    )
    actions = batch.add_subparsers(dest="batch_command", metavar="ACTION")
    actions.required = True

    compress = actions.add_parser(
        "compress", help="train on every image under IN_DIR, write .ccnn files under OUT_DIR", epilog=EPILOG
    )
    _add_run_options(compress)
    add_encoder_options(compress)
    compress.set_defaults(func=cmd_batch_compress)

    decompress = actions.add_parser(
        "decompress", help="decode every .ccnn file under IN_DIR into images under OUT_DIR", epilog=EPILOG
    )
    _add_run_options(decompress)
    decompress.add_argument(
        "--format", default="png", choices=DECOMPRESS_FORMATS, help="image format (default: %(default)s)"
    )
    decompress.set_defaults(func=cmd_batch_decompress)


def _run(args: argparse.Namespace, mode: str) -> int:
    def report(name: str, message: str) -> None:
        tqdm.write(f"ccnn: error: {name}: {message}", file=sys.stderr)

    compressing = mode == COMPRESS
    # `kill` (SIGTERM) stops the batch as Ctrl-C does (ccnn.cli.main turns it into one): workers
    # stopped, manifest saved
    try:
        summary = run_batch(
            mode,
            args.in_dir,
            args.out_dir,
            options=encoder_options(args) if compressing else None,
            device=device_option(args) if compressing else None,
            image_format=getattr(args, "format", "png"),
            jobs=args.jobs,
            threads=args.threads,
            ray=False if args.ray is None else (args.ray or True),
            force=args.force,
            progress=not args.quiet,
            on_failure=report,
        )
    except RayMissingError as exc:
        print(f"ccnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "ccnn: interrupted; finished outputs are kept and listed in the manifest, no partial file "
            "is left; run the same command again to finish",
            file=sys.stderr,
        )
        return 130
    if not args.quiet:
        print(summary.line())
    return 1 if summary.failed else 0


def cmd_batch_compress(args: argparse.Namespace) -> int:
    return _run(args, COMPRESS)


def cmd_batch_decompress(args: argparse.Namespace) -> int:
    return _run(args, DECOMPRESS)
