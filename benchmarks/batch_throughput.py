"""Throughput of ``ccnn batch compress``: images per minute with 1 and 2 local workers and on Ray.

Per-image training dominates, so the useful number is images per minute at a fixed amount of
training. The script cuts ``--count`` centre crops of ``--size`` pixels from Kodak images,
compresses them with the fast preset at a fixed step count (``--seconds`` is set high so that
the step count ends every run and the bytes are reproducible), and times each way of running:

* ``jobs1``: one local worker with every core's torch threads (``--jobs 1``, the issue's
  workers x threads = cores);
* ``jobs1t1``: one local worker with one thread (a baseline for the two below);
* ``jobs2``: two local workers, one thread each;
* ``ray``: one Ray task per image on a local Ray instance with all cores, one CPU per task
  (started before the clock starts, as a running cluster would be).

It also checks that the runs with one thread per image gave byte-identical files. Wall time
includes starting worker processes (and their ``import torch``), as a user would see it.

    python benchmarks/batch_throughput.py                 # 8 crops of 256x256, 100 steps
    python benchmarks/batch_throughput.py --modes jobs1,jobs2 --steps 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ccnn import EncoderOptions
from ccnn.batch import read_manifest, run_batch
from ccnn.batch.run import cpu_count

REPO = Path(__file__).resolve().parents[1]
MODES = ("jobs1", "jobs1t1", "jobs2", "ray")


def make_crops(kodak: Path, folder: Path, count: int, size: int) -> None:
    """Centre crops of kodim01.png, kodim02.png, ... (the benchmark's fixed input set)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        path = kodak / f"kodim{index:02d}.png"
        if not path.exists():
            sys.exit(f"batch_throughput: {path} not found (use --kodak)")
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        top = (pixels.shape[0] - size) // 2
        left = (pixels.shape[1] - size) // 2
        Image.fromarray(pixels[top : top + size, left : left + size]).save(folder / f"kodim{index:02d}.png")


def outputs(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("*.ccnn"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", type=Path, default=REPO.parent / "shared" / "data" / "kodak")
    parser.add_argument("--count", type=int, default=8, help="number of Kodak crops (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="training steps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {', '.join(unknown)}")

    cores = cpu_count()
    options = EncoderOptions("fast", steps=args.steps, seconds=1e6, seed=args.seed)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ccnn-batch-bench-") as tmp:
        folder = Path(tmp) / "in"
        make_crops(args.kodak, folder, args.count, args.size)
        made: dict[str, dict[str, bytes]] = {}
        for mode in modes:
            run: dict = {"jobs": None, "threads": None, "ray": False}
            if mode == "jobs1":
                run.update(jobs=1, threads=cores)
            elif mode == "jobs1t1":
                run.update(jobs=1, threads=1)
            elif mode == "jobs2":
                run.update(jobs=2, threads=1)
            else:
                import ray

                ray.init(
                    num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="warning"
                )
                run.update(threads=1, ray=True)
            out = Path(tmp) / mode
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            try:
                summary = run_batch("compress", folder, out, options=options, progress=True, **run)
            finally:
                if mode == "ray":
                    ray.shutdown()
            made[mode] = outputs(out)
            rows = read_manifest(out / "manifest.csv").values()
            per_image = [float(row["seconds"]) for row in rows if row["status"] == "ok"]
            result = {
                "mode": mode,
                "workers": summary.workers,
                "images": summary.done,
                "failed": summary.failed,
                "seconds": round(summary.seconds, 2),
                "images_per_minute": round(summary.images_per_minute, 2),
                "worker_seconds_per_image": round(sum(per_image) / max(1, len(per_image)), 2),
                "load_before": round(load, 2),
            }
            results.append(result)
            print(json.dumps(result), flush=True)
        single_thread = [mode for mode in modes if mode != "jobs1"]
        identical = len({tuple(sorted(made[mode].items())) for mode in single_thread}) <= 1
        if "jobs1" in made and single_thread:
            same_as_threaded = made["jobs1"] == made[single_thread[0]]
        else:
            same_as_threaded = None
        first = modes[0]
        for mode in modes[1:]:
            differ = [name for name in made[first] if made[first][name] != made[mode].get(name)]
            print(f"{mode} vs {first}: {len(differ)} of {len(made[first])} files differ {differ}")

    print()
    print(
        f"{args.count} Kodak crops {args.size}x{args.size}, fast preset, {args.steps} steps, "
        f"{cores} cores, {platform.processor() or platform.machine()}"
    )
    print("| run | workers | wall seconds | images/min | worker s/image |")
    print("|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result['mode']} | {result['workers']} | {result['seconds']:.1f} | "
            f"{result['images_per_minute']:.1f} | {result['worker_seconds_per_image']:.2f} |"
        )
    print(f"byte-identical across the one-thread runs ({', '.join(single_thread)}): {identical}")
    if same_as_threaded is not None:
        print(f"jobs1 ({cores} threads per image) identical to them too: {same_as_threaded}")
    if args.json:
        report = {
            "count": args.count,
            "size": args.size,
            "steps": args.steps,
            "cores": cores,
            "results": results,
            "identical_one_thread": identical,
            "identical_jobs1_threaded": same_as_threaded,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
