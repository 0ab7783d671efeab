"""Decoding time of .ccnn files: in process (split by stage), ``ccnn info``/``decompress`` wall, imports.

    python benchmarks/decode_time.py [FILE.ccnn ...] [--image IMG] [--runs N] [--keep DIR]

With no file it makes its own: a 768x512 image (``--image``, e.g. a Kodak image, cropped or
mirror-tiled to 768x512; by default the bundled sample mirror-tiled), encoded with the
``default`` preset at ``--qualities`` (1,5,8: the small, medium-or-fine and fine networks)
with ``--steps`` (200) steps and seed 0, so that the network has the real shape even though
its training is short. ``--keep DIR`` keeps those files and reuses them on the next run.

For each file it reports, in ms, the best and median of ``--runs`` in-process decodes split
into the stages of :func:`ccnn.format.decode` (unpack and validate, weight decode, latent
entropy decode, restoring network) and the whole :func:`ccnn.decompress`, wall and CPU time
(the process's, which a busy machine inflates less than the wall time); then the wall
seconds of ``ccnn info FILE`` and ``ccnn decompress FILE -o out.png`` as subprocesses
(start-up included), and the same two jobs done by ``python -c`` with torch made unimportable
(what the commands cost once nothing on their path imports torch). Last, the import time of
numpy, ``ccnn`` and ``ccnn.cli`` in a fresh interpreter. The machine's other work shows in
these figures: best-of-N is the number to compare, the median says how noisy the run was.
``--blas-threads 1`` runs it all with one BLAS thread: on a busy machine OpenBLAS's threads
wait for each other, and the restoring network takes several times longer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ccnn
from ccnn.format.container import unpack
from ccnn.format.decode import decode_file_latent, decode_weights
from ccnn.format.exact import restore_exact
from ccnn.imageio import load_image
from ccnn.settings import RD_NETWORKS

SIZE = (512, 768)  # height, width (Kodak)
SAMPLE = Path(ccnn.__file__).parent / "data" / "sample.png"

#: Makes torch unimportable in a child interpreter, then runs the job given after it.
NO_TORCH = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch blocked by decode_time.py")
        return None
sys.meta_path.insert(0, _Block())
"""
NO_TORCH_INFO = (
    NO_TORCH
    + """
import ccnn
from pathlib import Path
info = ccnn.read_info(Path(sys.argv[1]).read_bytes())
print(info.width, info.height, info.total_bytes, info.bpp)
"""
)
NO_TORCH_DECOMPRESS = (
    NO_TORCH
    + """
import ccnn
from pathlib import Path
from ccnn.files import write_atomic
from ccnn.imageio import encode_image
out = Path(sys.argv[2])
pixels = ccnn.decompress(Path(sys.argv[1]).read_bytes())
write_atomic(out, encode_image(pixels, out), force=True)
assert "torch" not in sys.modules
"""
)


def kodak_size(pixels: np.ndarray) -> np.ndarray:
    """Crop, or mirror-tile and crop, ``pixels`` to 768x512."""
    height, width = SIZE
    while pixels.shape[0] < height:
        pixels = np.concatenate([pixels, pixels[::-1]], axis=0)
    while pixels.shape[1] < width:
        pixels = np.concatenate([pixels, pixels[:, ::-1]], axis=1)
    return np.ascontiguousarray(pixels[:height, :width])


def network_name(data: bytes) -> str:
    """The restoring network's name in ``settings.RD_NETWORKS``, or its layer channels."""
    info = ccnn.read_info(data)
    channels = [layer.channels for layer in info.spec.layers]
    for name, (_, restoring) in RD_NETWORKS.items():
        if [layer.channels for layer in restoring[:-1]] == channels[:-1] and len(restoring) == len(channels):
            return f"{name} ({info.spec.latent_channels} ch, stride {info.spec.latent_stride})"
    return f"layers {channels}, stride {info.spec.latent_stride}"


def make_files(image: Path | None, qualities: list[int], steps: int, folder: Path) -> list[Path]:
    """Encode the 768x512 test image at each quality (default preset, seed 0), reusing earlier files."""
    pixels = kodak_size(load_image(image if image is not None else SAMPLE))
    stem = image.stem if image is not None else "sample"
    files = []
    for quality in qualities:
        path = folder / f"{stem}-768x512-default-q{quality}-{steps}steps.ccnn"
        if not path.exists():
            start = time.perf_counter()
            data = ccnn.compress(pixels, "default", quality=quality, steps=steps, seconds=1e6, seed=0)
            path.write_bytes(data)
            seconds = time.perf_counter() - start
            print(f"made {path.name}: {len(data)} bytes in {seconds:.1f} s", file=sys.stderr)
        files.append(path)
    return files


def stages(data: bytes) -> dict[str, float]:
    """Seconds of each stage of one decode, the same steps as :func:`ccnn.format.decode`."""
    times = {}
    t0 = time.perf_counter()
    contents = unpack(data)
    t1 = time.perf_counter()
    tensors = decode_weights(contents)
    t2 = time.perf_counter()
    latent = decode_file_latent(contents)
    t3 = time.perf_counter()
    restore_exact(contents.spec, tensors, latent, (contents.height, contents.width))
    t4 = time.perf_counter()
    times["unpack"], times["weights"], times["latent"], times["restore"] = t1 - t0, t2 - t1, t3 - t2, t4 - t3
    start, cpu = time.perf_counter(), time.process_time()
    ccnn.decompress(data)
    times["decompress"] = time.perf_counter() - start
    times["decompress_cpu"] = time.process_time() - cpu
    return times


def best_median(samples: list[float], scale: float = 1.0) -> str:
    """'best / median', in ms with one decimal (``scale`` 1000) or in seconds with three."""
    digits = 1 if scale >= 1000.0 else 3
    return f"{min(samples) * scale:.{digits}f} / {statistics.median(samples) * scale:.{digits}f}"


def wall(command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``command`` run ``runs`` times (it must succeed)."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def import_seconds(module: str, runs: int, block_torch: bool = False) -> list[float]:
    """Seconds to import ``module`` in a fresh interpreter (measured inside it)."""
    code = (NO_TORCH if block_torch else "") + (
        f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    )
    command = [sys.executable, "-c", code]
    runs_out = [subprocess.run(command, check=True, capture_output=True, text=True) for _ in range(runs)]
    return [float(run.stdout) for run in runs_out]


def ccnn_command() -> list[str]:
    """The installed ``ccnn`` script beside this interpreter, else ``python -m ccnn.cli``."""
    script = Path(sys.executable).parent / "ccnn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccnn.cli"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def file_table(path: Path, runs: int, cli_runs: int, scratch: Path) -> str:
    """The in-process stages, the two commands and the two torch-free jobs for one file."""
    data = path.read_bytes()
    stages(data)  # warm-up
    samples = [stages(data) for _ in range(runs)]
    rows = [["measure", "best / median"]]
    for key, label in (
        ("unpack", "unpack + validate (ms)"),
        ("weights", "weight decode (ms)"),
        ("latent", "latent entropy decode (ms)"),
        ("restore", "restoring network (ms)"),
        ("decompress", "ccnn.decompress, whole (ms)"),
        ("decompress_cpu", "ccnn.decompress, CPU time (ms)"),
    ):
        rows.append([label, best_median([sample[key] for sample in samples], 1000.0)])
    out = scratch / "out.png"
    cli = ccnn_command()
    commands = (
        ("ccnn info (s)", [*cli, "info", str(path)]),
        ("ccnn decompress -o out.png (s)", [*cli, "decompress", str(path), "-o", str(out), "-f", "--quiet"]),
        ("info, torch blocked (s)", [sys.executable, "-c", NO_TORCH_INFO, str(path)]),
        ("decompress, torch blocked (s)", [sys.executable, "-c", NO_TORCH_DECOMPRESS, str(path), str(out)]),
    )
    for label, command in commands:
        rows.append([label, best_median(wall(command, cli_runs))])
    return table(rows)


def environment() -> str:
    """What moves these figures besides the code: BLAS threads, bytecode caching, the load."""
    threads = {name: os.environ.get(name, "unset") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, load average {load:.2f} at start; "
        + ", ".join(f"{name}={value}" for name, value in threads.items())
        + f", PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')}"
        + f"; ccnn from {Path(ccnn.__file__).parent}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help=".ccnn files (default: make them)")
    parser.add_argument("--image", type=Path, help="image to make the files from (default: the sample)")
    parser.add_argument("--qualities", default="1,5,8", help="qualities of made files (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the made files")
    parser.add_argument("--keep", type=Path, help="folder that keeps (and reuses) the made files")
    parser.add_argument("--runs", type=int, default=15, help="in-process decodes (default: %(default)s)")
    parser.add_argument("--cli-runs", type=int, default=7, help="runs of each command (default: %(default)s)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="run everything with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set to this (default: as set)",
    )
    args = parser.parse_args(argv)
    if args.blas_threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.blas_threads):
        # numpy has read the variable already: start again with it set
        threads = str(args.blas_threads)
        os.environ.update(OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        os.execv(sys.executable, [sys.executable, *sys.argv])

    scratch = Path(tempfile.mkdtemp(prefix="ccnn-decode-time-"))
    try:
        files = list(args.files)
        if not files:
            folder = args.keep or scratch
            folder.mkdir(parents=True, exist_ok=True)
            files = make_files(args.image, [int(q) for q in args.qualities.split(",")], args.steps, folder)
        print(environment())
        print(f"best / median of {args.runs} in-process decodes and of {args.cli_runs} runs of each command")
        for path in files:
            data = path.read_bytes()
            info = ccnn.read_info(data)
            print(
                f"\n{path.name}: {info.width}x{info.height}, {info.channels} channels, {len(data)} bytes, "
                f"{info.bpp:.3f} bpp, network {network_name(data)}"
            )
            print(file_table(path, args.runs, args.cli_runs, scratch))
        print()
        rows = [["start-up (fresh interpreter)", "best / median"]]
        bare = wall([sys.executable, "-c", "pass"], args.cli_runs)
        rows.append(["python -c pass (s, wall)", best_median(bare)])
        for module, blocked in (("numpy", False), ("ccnn", False), ("ccnn", True), ("ccnn.cli", False)):
            label = f"import {module}{', torch blocked' if blocked else ''} (ms)"
            rows.append([label, best_median(import_seconds(module, args.cli_runs, blocked), 1000.0)])
        print(table(rows))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
