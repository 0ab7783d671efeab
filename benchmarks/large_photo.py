"""Time and peak memory of encoding and decoding camera-size photos, each in its own child process.

    python benchmarks/large_photo.py [--kodak DIR] [--size 3072x2048 ...] [--preset P] [--quality Q]
                                     [--steps N] [--tiled 6000x4000 ...] [--tile-source FILE]
                                     [--no-encode] [--keep DIR]

A photo of ``--size`` is made by tiling the Kodak images (``--kodak``, 768x512 each, portrait
ones turned) in name order, row by row, and cropping: 4 x 4 of them make 3072x2048, 8 x 8 cut
to 6000x4000 a 24-megapixel one. Each photo is encoded (``--preset``, ``--quality``,
``--steps``, default the preset's effort, and ``--seconds``, seed 0) in a child process, then
its file decoded in another.
``--tiled WxH`` also makes, from ``--tile-source`` (default: the first photo's file), a file of
that size whose latent is the source's tiled (same network, weights and entropy models: the
decode of a real-size file without its encode) and decodes it.

Each child reports wall and CPU seconds and its peak resident memory (``VmHWM``) with what
it held before the job (the interpreter, numpy, the input), and, for decoding, the peak of
numpy's allocations traced by ``tracemalloc`` in a second decode. ``--blas-threads`` (default
1) sets OpenBLAS's threads in the children.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ccnn
from ccnn.format.container import CCNNFile, pack, unpack
from ccnn.format.decode import decode_file_latent
from ccnn.format.entropy import encode_latent
from ccnn.imageio import load_image
from ccnn.metrics import psnr

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

#: The child's job: read what it needs, note the memory held, run the job, report as JSON.
CHILD = """
import json, sys, time, tracemalloc
from pathlib import Path
import numpy as np
import ccnn
def high_water():
    # VmHWM: this process's peak resident memory, in kB (ru_maxrss would count the parent's
    # memory at the fork)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
job, source, target = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
options = json.loads(sys.argv[4])
if job == "encode":
    pixels = np.load(source)
    held = high_water()
    wall, cpu = time.perf_counter(), time.process_time()
    data = ccnn.compress(pixels, options.pop("preset"), seed=0, **options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    target.write_bytes(data)
    traced = None
else:
    data = source.read_bytes()
    held = high_water()
    wall, cpu = time.perf_counter(), time.process_time()
    pixels = ccnn.decompress(data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = high_water()
    del pixels
    tracemalloc.start()
    ccnn.decompress(data)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
peak = high_water() if job == "encode" else peak
print(json.dumps({"wall": wall, "cpu": cpu, "held_kb": held, "peak_kb": peak, "traced": traced,
                  "bytes": len(data)}))
"""


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (height, width)."""
    width, height = (int(part) for part in text.lower().split("x"))
    return height, width


def kodak_photo(folder: Path, height: int, width: int) -> np.ndarray:
    """Kodak's 768x512 images (portrait ones turned) tiled row by row in name order, cropped."""
    images = []
    for path in sorted(folder.glob("kodim*.png")):
        pixels = load_image(path)
        images.append(pixels if pixels.shape[1] >= pixels.shape[0] else np.rot90(pixels))
    if not images:
        raise SystemExit(f"no Kodak images in {folder} (--kodak)")
    tile_h, tile_w = images[0].shape[:2]
    rows, cols = -(-height // tile_h), -(-width // tile_w)
    grid = [
        np.concatenate([images[(r * cols + c) % len(images)] for c in range(cols)], axis=1)
        for r in range(rows)
    ]
    return np.ascontiguousarray(np.concatenate(grid, axis=0)[:height, :width])


def tiled_file(data: bytes, height: int, width: int) -> bytes:
    """A file of ``height`` x ``width`` whose latent is that of ``data`` tiled (same network and models)."""
    contents = unpack(data)
    latent = decode_file_latent(contents)
    stride = contents.spec.latent_stride
    rows, cols = -(-height // stride), -(-width // stride)
    reps = (1, -(-rows // latent.shape[1]), -(-cols // latent.shape[2]))
    tiled = np.ascontiguousarray(np.tile(latent, reps)[:, :rows, :cols])
    models = list(contents.latent_models)
    latent_data = encode_latent(tiled, models, contents.latent_context, tabled=True)
    fields = {**contents.__dict__, "height": height, "width": width, "latent_data": latent_data}
    return pack(CCNNFile(**fields))


def child(job: str, source: Path, target: Path, options: dict, threads: int) -> dict:
    """Run one job in a fresh interpreter and return its report."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", CHILD, job, str(source), str(target), json.dumps(options)]
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{job} failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def line(label: str, report: dict) -> str:
    """One result line: times, peak memory and what the job itself added to it."""
    mib = 1 / 1024
    text = (
        f"{label}: {report['wall']:.2f} s wall, {report['cpu']:.2f} s CPU; peak RSS "
        f"{report['peak_kb'] * mib:.0f} MiB ({(report['peak_kb'] - report['held_kb']) * mib:.0f} MiB "
        f"above the {report['held_kb'] * mib:.0f} MiB held before)"
    )
    if report.get("traced") is not None:
        text += f"; numpy's traced peak {report['traced'] / 2**20:.0f} MiB"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kodak", type=Path, default=KODAK, help="folder of kodim*.png (default: %(default)s)"
    )
    parser.add_argument(
        "--size", action="append", help="WxH of a photo to encode and decode (default 3072x2048)"
    )
    parser.add_argument("--tiled", action="append", default=[], help="WxH of a tiled-latent file to decode")
    parser.add_argument("--tile-source", type=Path, help="file whose latent --tiled tiles")
    parser.add_argument("--no-encode", action="store_true", help="only the --tiled files")
    parser.add_argument("--preset", default="default", help="encoder preset (default: %(default)s)")
    parser.add_argument("--quality", type=int, help="quality (default: the preset's)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's effort)")
    parser.add_argument("--seconds", type=float, help="training time limit (default: none)")
    parser.add_argument("--blas-threads", type=int, default=1, help="OpenBLAS threads (default: %(default)s)")
    parser.add_argument("--keep", type=Path, help="folder that keeps the photos and files (and reuses files)")
    args = parser.parse_args(argv)
    sizes = [] if args.no_encode else [parse_size(size) for size in (args.size or ["3072x2048"])]
    options: dict = {"preset": args.preset}
    for name in ("quality", "steps", "seconds"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="ccnn-large-photo-"))
    folder.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}; ccnn from {Path(ccnn.__file__).parent}")
    print(f"encoder: {json.dumps(options)}, seed 0; {args.blas_threads} BLAS thread(s)")
    first = args.tile_source
    for height, width in sizes:
        name = f"kodak-{width}x{height}"
        effort = "effort" if args.steps is None else f"{args.steps}steps"
        photo, coded = folder / f"{name}.npy", folder / f"{name}-{args.preset}-{effort}.ccnn"
        pixels = kodak_photo(args.kodak, height, width)
        np.save(photo, pixels)
        if coded.exists() and args.keep:
            print(f"{name}: reusing {coded}")
        else:
            print(line(f"{name} encode", child("encode", photo, coded, dict(options), args.blas_threads)))
        info = ccnn.read_info(coded.read_bytes())
        quality = psnr(pixels, ccnn.decompress(coded.read_bytes()))
        print(
            f"  {info.total_bytes} bytes, {info.bpp:.3f} bpp, {quality:.2f} dB, "
            f"latent stride {info.spec.latent_stride}"
        )
        print(line(f"{name} decode", child("decode", coded, coded, {}, args.blas_threads)), flush=True)
        first = first or coded
    for size in args.tiled:
        height, width = parse_size(size)
        if first is None:
            raise SystemExit("--tiled needs an encoded photo or --tile-source")
        tiled = folder / f"tiled-{width}x{height}-from-{first.stem}.ccnn"
        start = time.perf_counter()
        tiled.write_bytes(tiled_file(first.read_bytes(), height, width))
        made = time.perf_counter() - start
        print(
            f"tiled {width}x{height} from {first.name}: {tiled.stat().st_size} bytes (made in {made:.1f} s)"
        )
        print(line(f"tiled-{width}x{height} decode", child("decode", tiled, tiled, {}, args.blas_threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
