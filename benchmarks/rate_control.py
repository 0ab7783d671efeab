"""Rate control against its contract: each image and target encoded once, with a plain encode beside it.

For every image, preset and target, prints the achieved bytes, bpp and PSNR, whether the target
counts as reached (``ccnn.settings.RATE_TOLERANCE``), the steps and the seconds, and the time of
a plain encode of the same image at the quality level rate control started from, so that the
cost (issue 21 allows 1.3 times) can be read off. Seeded and step-bounded: the bytes are the
same on any machine; the seconds are this machine's (give ``benchmarks/step_time.py`` beside).

    python benchmarks/rate_control.py ../shared/data/kodak/kodim23.png --preset default \\
        --target-bpp 0.25 0.5 1.0 --target-psnr 30 32 --max-bytes 20000
"""

from __future__ import annotations

import argparse
import time

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
    parser.add_argument("--no-plain", action="store_true", help="skip the plain encodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    targets = [("target_bpp", v) for v in args.target_bpp]
    targets += [("target_psnr", v) for v in args.target_psnr]
    targets += [("max_bytes", v) for v in args.max_bytes]
    print("| image | target | bytes | bpp | PSNR | reached | steps | seconds | plain q | plain seconds |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for path in args.images:
        pixels = load_image(path)
        detail = block_mean_psnr(pixels)
        for name, value in targets:
            options = ccnn.EncoderOptions(args.preset, seed=args.seed, **{name: value})
            start = time.perf_counter()
            result = ccnn.compress_image(pixels, options=options)
            seconds = time.perf_counter() - start
            level = options.resolve(pixels=pixels.shape[0] * pixels.shape[1], block_psnr=detail).quality
            plain = ""
            if not args.no_plain:
                start = time.perf_counter()
                ccnn.compress_image(pixels, args.preset, quality=level, seed=args.seed)
                plain = f"{time.perf_counter() - start:.1f}"
            print(
                f"| {path.rsplit('/', 1)[-1]} | {name.replace('_', ' ')} {value:g} | {len(result.data)} "
                f"| {result.bpp:.4f} | {result.psnr:.2f} | {'yes' if result.target_reached else 'no'} "
                f"| {result.steps} | {seconds:.1f} | {level} | {plain} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
