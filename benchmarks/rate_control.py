"""Rate control against its contract: each image and target encoded once, with a plain encode beside it.

For every image, preset and target, prints the achieved bytes, bpp and PSNR, whether the target
counts as reached (``ccnn.settings.RATE_TOLERANCE``), the steps and the seconds, and the time of
a plain encode of the same image at the quality level rate control started from, so that the
cost (issue 21 allows 1.3 times) can be read off. Seeded and step-bounded: the bytes are the
same on any machine; the seconds are CPU seconds of this process on ``--threads`` torch threads
(default 1), this machine's (give ``benchmarks/step_time.py`` beside). ``--max-bpp`` sets a byte
limit per image from its size, for images of several sizes. A summary follows the table.

    python benchmarks/rate_control.py ../shared/data/kodak/kodim23.png --preset default \\
        --target-bpp 0.25 0.5 1.0 --target-psnr 30 32 --max-bytes 20000 --max-bpp 0.5
"""

from __future__ import annotations

import argparse
import time

import torch

import ccnn
from ccnn.imageio import load_image
from ccnn.metrics import block_mean_psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--preset", default="default", choices=["fast", "default"])
    parser.add_argument("--target-bpp", type=float, nargs="*", default=[])
    parser.add_argument("--target-psnr", type=float, nargs="*", default=[])
    parser.add_argument("--max-bytes", type=int, nargs="*", default=[])
    parser.add_argument("--max-bpp", type=float, nargs="*", default=[], help="byte limits as bpp")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain encodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    targets = [("target_bpp", v) for v in args.target_bpp]
    targets += [("target_psnr", v) for v in args.target_psnr]
    targets += [("max_bytes", v) for v in args.max_bytes]
    targets += [("max_bpp", v) for v in args.max_bpp]
    reached, ratios = [], []
    print("| image | target | bytes | bpp | PSNR | reached | steps | CPU s | plain q | plain CPU s |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for path in args.images:
        pixels = load_image(path)
        detail = block_mean_psnr(pixels)
        area = pixels.shape[0] * pixels.shape[1]
        # a plain encode's CPU seconds by quality level: the same steps, so timed once per image
        plain_seconds: dict[int, float] = {}
        for name, value in targets:
            label = f"{name.replace('_', ' ')} {value:g}"
            if name == "max_bpp":
                name, value = "max_bytes", int(value * area / 8)
                label += f" ({value} B)"
            options = ccnn.EncoderOptions(args.preset, seed=args.seed, **{name: value})
            start = time.process_time()
            result = ccnn.compress_image(pixels, options=options)
            seconds = time.process_time() - start
            level = options.resolve(pixels=area, block_psnr=detail).quality
            plain = ""
            if not args.no_plain:
                if level not in plain_seconds:
                    start = time.process_time()
                    ccnn.compress_image(pixels, args.preset, quality=level, seed=args.seed)
                    plain_seconds[level] = time.process_time() - start
                plain = f"{plain_seconds[level]:.1f}"
                ratios.append(seconds / plain_seconds[level])
            reached.append(result.target_reached)
            print(
                f"| {path.rsplit('/', 1)[-1]} | {label} | {len(result.data)} "
                f"| {result.bpp:.4f} | {result.psnr:.2f} | {'yes' if result.target_reached else 'no'} "
                f"| {result.steps} | {seconds:.1f} | {level} | {plain} |",
                flush=True,
            )
    summary = f"\n{sum(reached)} of {len(reached)} targets reached"
    if ratios:
        ratios.sort()
        summary += (
            f"; CPU time against a plain encode: median {ratios[len(ratios) // 2]:.2f}x, "
            f"most {ratios[-1]:.2f}x, {sum(r <= 1.3 for r in ratios)} of {len(ratios)} within 1.3x"
        )
    print(summary)


if __name__ == "__main__":
    main()
