"""Clip coding on carphone: ccnn's clip codec against all-intra ccnn and x264, at a few rates.

A quick look at one clip, a preset and a seed (needs the ``[video]`` extra and the clip in
../shared/data/video, or --clip); docs/decisions.md ("Video: the crop phase under a squared
error") quotes its runs, and docs/results/video.md the fuller ``ccnn bench --video``::

    nice .venv/bin/python benchmarks/video_carphone.py --frames 30 --skip intra,x264 --seed 0 -o DIR

The originals are the clip's decoded 4:2:0 frames. ccnn's clip codec codes them as YCbCr;
all-intra ccnn (the still-image codec, ``fast`` preset with its 3000 steps binding, on every
``--intra-stride``-th frame, the per-frame rate and quality being alike over the clip) codes
their BT.601 RGB conversion, and its output is converted back; x264 (PyAV's libx264, preset
medium, tune psnr, no B-frames, one intra frame) codes the planes directly. Rate: coded bytes (the whole .ccnn
file; x264's packets) as bits per frame pixel and kbps at the clip's frame rate. Quality:
PSNR-Y/U/V per frame, PSNR-YUV = (6 Y + U + V) / 8, averaged over frames. Writes
results.json and prints a Markdown table; BD-rates by ``ccnn.bench.bdrate``.
"""

from __future__ import annotations

import os

# one core: numpy's BLAS (the exact decoder's matrix products) on one thread; with several
# threads on a busy machine decoding carphone ran at 19 instead of 90 frames per second
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import ccnn  # noqa: E402
from ccnn.bench.bdrate import bd_rate  # noqa: E402
from ccnn.encoder.threads import set_torch_threads  # noqa: E402
from ccnn.format.video import decode_video  # noqa: E402
from ccnn.videoio import (  # noqa: E402
    YUVClip,
    clip_from_yuv444,
    clip_to_rgb,
    psnr_yuv,
    read_clip,
    require_av,
    rgb_to_yuv444,
)

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "carphone_pristine.mp4"
#: Where the coded clips are kept (the output folder), so that decoding can be timed again.
SAVE: Path | None = None


def measure_ccnn_video(clip: YUVClip, preset: str, quality: int, steps: int | None, seed: int) -> dict:
    start = time.perf_counter()
    result = ccnn.compress_video(clip, preset, quality=quality, steps=steps, seed=seed)
    encode = time.perf_counter() - start
    if SAVE is not None:
        (SAVE / f"carphone-{clip.frames}-{preset}-q{quality}.ccnn").write_bytes(result.data)
    start = time.perf_counter()
    frames = list(decode_video(result.data))
    decode = time.perf_counter() - start
    info = ccnn.read_video_info(result.data)
    pixels = clip.frames * clip.height * clip.width
    return {
        "codec": f"ccnn-video {preset}",
        "setting": f"q{quality}",
        "bytes": len(result.data),
        "bpp": result.bpp,
        "kbps": result.kbps,
        **result.psnr,
        "encode_us_per_pixel": 1e6 * encode / pixels,
        "decode_fps": len(frames) / decode,
        "bytes_shared": info.shared_bytes,
        "bytes_intra": sum(info.frame_bytes["intra"]),
        "bytes_predicted": sum(info.frame_bytes["predicted"]),
        "steps": result.steps,
    }


def measure_all_intra(clip: YUVClip, quality: int, stride: int, steps: int | None, seed: int) -> dict:
    """The still-image codec on every ``stride``-th frame; rates and PSNRs are per-frame means."""
    rgb = clip_to_rgb(clip)
    chosen = list(range(0, clip.frames, stride))
    sizes, y, u, v, yuv, encode, decode = [], [], [], [], [], 0.0, 0.0
    for i in chosen:
        start = time.perf_counter()
        # the step budget binds, not the preset's 13 s, so a busy machine gives the same files
        options = {"quality": quality, "seed": seed, "seconds": 1e6, **({"steps": steps} if steps else {})}
        data = ccnn.compress(rgb[i], "fast", **options)
        encode += time.perf_counter() - start
        start = time.perf_counter()
        out = ccnn.decompress(data)
        decode += time.perf_counter() - start
        decoded = clip_from_yuv444(rgb_to_yuv444(out[None]), clip.fps)
        m = psnr_yuv(_frame(clip, i), decoded)
        sizes.append(len(data))
        y.append(m["psnr-y"])
        u.append(m["psnr-u"])
        v.append(m["psnr-v"])
        yuv.append(m["psnr-yuv"])
    mean_bytes = float(np.mean(sizes))
    pixels = clip.height * clip.width
    return {
        "codec": "ccnn all-intra fast",
        "setting": f"q{quality}",
        "bytes": mean_bytes * clip.frames,
        "bpp": 8 * mean_bytes / pixels,
        "kbps": 8 * mean_bytes * float(clip.fps) / 1000,
        "psnr-y": float(np.mean(y)),
        "psnr-u": float(np.mean(u)),
        "psnr-v": float(np.mean(v)),
        "psnr-yuv": float(np.mean(yuv)),
        "encode_us_per_pixel": 1e6 * encode / (len(chosen) * pixels),
        "decode_fps": len(chosen) / decode,
        "frames_measured": len(chosen),
    }


def _frame(clip: YUVClip, i: int) -> YUVClip:
    return YUVClip(clip.y[i : i + 1], clip.u[i : i + 1], clip.v[i : i + 1], clip.fps)


def measure_x264(clip: YUVClip, crf: int) -> dict:
    """libx264 through PyAV: preset medium, tune psnr, no B-frames, one intra frame (low delay)."""
    av = require_av()
    rate = Fraction(clip.fps).limit_denominator(100000)
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = clip.width, clip.height, "yuv420p"
    codec.time_base = 1 / rate
    codec.framerate = rate
    codec.options = {
        "preset": "medium",
        "tune": "psnr",
        "crf": str(crf),
        "bf": "0",
        "g": str(clip.frames + 1),
        "x264-params": f"bframes=0:keyint={clip.frames + 1}:min-keyint={clip.frames + 1}:scenecut=0",
    }
    packets = []
    start = time.perf_counter()
    for i in range(clip.frames):
        frame = av.VideoFrame(clip.width, clip.height, "yuv420p")
        for plane, data in zip(frame.planes, (clip.y[i], clip.u[i], clip.v[i])):
            view = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
            view[:, : plane.width] = data
        frame.pts = i
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    encode = time.perf_counter() - start
    size = sum(p.size for p in packets)
    decoder = av.CodecContext.create("h264", "r")
    ys, us, vs = [], [], []
    start = time.perf_counter()
    for packet in [*packets, None]:
        for frame in decoder.decode(packet):
            planes = [
                np.frombuffer(memoryview(p), dtype=np.uint8)
                .reshape(p.height, p.line_size)[:, : p.width]
                .copy()
                for p in frame.planes
            ]
            ys.append(planes[0])
            us.append(planes[1])
            vs.append(planes[2])
    decode = time.perf_counter() - start
    decoded = YUVClip(np.stack(ys), np.stack(us), np.stack(vs), clip.fps)
    pixels = clip.frames * clip.height * clip.width
    return {
        "codec": "x264 medium psnr",
        "setting": f"crf{crf}",
        "bytes": size,
        "bpp": 8 * size / pixels,
        "kbps": 8 * size * float(clip.fps) / clip.frames / 1000,
        **psnr_yuv(clip, decoded),
        "encode_us_per_pixel": 1e6 * encode / pixels,
        "decode_fps": clip.frames / decode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(CLIP))
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--qualities", default="3,6,9")
    parser.add_argument("--steps", type=int, help="override the clip preset's steps")
    parser.add_argument("--intra-qualities", default="1,3,6")
    parser.add_argument("--intra-stride", type=int, default=6)
    parser.add_argument("--intra-steps", type=int, help="override the image preset's steps")
    parser.add_argument("--crfs", default="28,33,38,43,48")
    parser.add_argument("--skip", default="", help="comma-separated: video,intra,x264")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--output", default="video-results")
    args = parser.parse_args()
    set_torch_threads(1)
    clip = read_clip(args.clip, max_frames=args.frames)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    global SAVE
    SAVE = out
    skip = set(filter(None, args.skip.split(",")))
    path = out / "results.json"
    rows: list[dict] = json.loads(path.read_text()) if path.exists() else []
    done = {(r["codec"], r["setting"]) for r in rows}

    def add(row: dict) -> None:
        rows.append(row)
        path.write_text(json.dumps(rows, indent=2))
        print(json.dumps(row), flush=True)

    if "x264" not in skip:
        for crf in map(int, args.crfs.split(",")):
            if ("x264 medium psnr", f"crf{crf}") not in done:
                add(measure_x264(clip, crf))
    if "video" not in skip:
        for q in map(int, args.qualities.split(",")):
            if (f"ccnn-video {args.preset}", f"q{q}") not in done:
                add(measure_ccnn_video(clip, args.preset, q, args.steps, args.seed))
    if "intra" not in skip:
        for q in map(int, args.intra_qualities.split(",")):
            if ("ccnn all-intra fast", f"q{q}") not in done:
                add(measure_all_intra(clip, q, args.intra_stride, args.intra_steps, args.seed))
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| codec | setting | bpp | kbps | PSNR-Y | PSNR-YUV | encode µs/px | decode fps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["codec"], r["bpp"])):
        lines.append(
            f"| {r['codec']} | {r['setting']} | {r['bpp']:.4f} | {r['kbps']:.1f} | {r['psnr-y']:.2f} | "
            f"{r['psnr-yuv']:.2f} | {r['encode_us_per_pixel']:.1f} | {r['decode_fps']:.0f} |"
        )
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        curves.setdefault(r["codec"], ([], []))
        curves[r["codec"]][0].append(r["bpp"])
        curves[r["codec"]][1].append(r["psnr-yuv"])
    lines.append("")
    for anchor in ("x264 medium psnr", "ccnn all-intra fast"):
        if anchor not in curves:
            continue
        for name, (rate, quality) in curves.items():
            if name == anchor or len(rate) < 2 or len(curves[anchor][0]) < 2:
                continue
            try:
                value = bd_rate(curves[anchor][0], curves[anchor][1], rate, quality)
            except Exception as exc:  # curves that do not overlap
                lines.append(f"BD-rate of {name} against {anchor}: not measurable ({exc})")
                continue
            if value is None:
                lines.append(f"BD-rate of {name} against {anchor}: not measurable (no overlap in PSNR-YUV)")
            else:
                lines.append(f"BD-rate (PSNR-YUV) of {name} against {anchor}: {value:+.1f}%")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
