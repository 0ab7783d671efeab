"""The command line's clip paths: ``ccnn compress CLIP``, ``ccnn decompress CLIP.ccnn``, ``ccnn info``.

:mod:`ccnn.cli` hands a command over here when its input is a clip (a video file, a Y4M file or
a folder of frames) or a version-6 file, so the image commands stay as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from . import compress_video, decompress_video, read_video_info
from .errors import CCNNError, ConfigError
from .files import check_writable, write_atomic
from .format.video import FRAME_TYPE_NAMES, VideoInfo, YUVFrame
from .options import TrainingProgress
from .videoio import YUVClip, ffv1_mkv_bytes, require_av, y4m_bytes, yuv444_to_rgb

#: The lossless files a clip decompresses to, by ending: the decoder's own 4:2:0 planes, bit for bit.
_CLIP_OUTPUTS = {".y4m": "Y4M 4:2:0", ".mkv": "FFV1 4:2:0 in Matroska"}
#: Image settings that mean nothing for a clip; the clip presets stop on a step count only.
_IMAGE_ONLY = ("seconds", "ratio", "kernel", "slope", "target_bpp", "max_bytes", "target_psnr", "config")


def compress_clip(args: argparse.Namespace, source: Path) -> int:
    """``ccnn compress CLIP``: train on the clip, write a version-6 file."""
    for name in _IMAGE_ONLY:
        if getattr(args, name, None) is not None:
            raise ConfigError(f"{name} does not apply to clips (clip presets stop on a step count)")
    preset = args.preset or "default"  # --preset has no argparse default (a --config may set it)
    if preset == "paper":
        raise ConfigError("the paper preset codes still images only; use fast or default for clips")
    out = Path(args.output) if args.output else source.with_suffix(".ccnn")
    if source.is_dir() and not args.output:
        out = source.parent / f"{source.name}.ccnn"
    check_writable(out, args.force, inputs=(source,))
    with TrainingProgress(f"compress {source.name}", enabled=not args.quiet) as bar:
        result = compress_video(
            source,
            preset,
            quality=args.quality,
            steps=args.steps,
            seed=args.seed,
            intra_period=args.intra_period,
            prediction=args.prediction,
            max_frames=args.frames,
            progress=bar,
            device=None if args.device == "auto" else args.device,
        )
    write_atomic(out, result.data, force=args.force)
    if not args.quiet:
        frames = len(result.frame_kinds)
        seconds = result.encode_seconds
        print(
            f"{source} -> {out}: {len(result.data)} bytes, {frames} frames, {result.bpp:.4f} bpp, "
            f"{result.kbps:.1f} kbps, PSNR-YUV {result.psnr['psnr-yuv']:.2f} dB "
            f"(Y {result.psnr['psnr-y']:.2f}), {result.steps} steps, {seconds:.1f} s"
        )
    return 0


def _is_folder_output(name: str) -> bool:
    return name.endswith(("/", os.sep)) or Path(name).is_dir() or not Path(name).suffix


def decompress_clip(args: argparse.Namespace, source: Path, data: bytes) -> int:
    """``ccnn decompress CLIP.ccnn``: Y4M or FFV1 in Matroska (lossless: the decoder's own 4:2:0
    planes), or PNG frames (RGB by BT.601)."""
    name = args.output or str(source.with_name(f"{source.stem}-ccnn.y4m"))
    start = time.perf_counter()
    info = read_video_info(data)
    frames = decompress_video(data)
    if _is_folder_output(name):
        count = _write_frames(Path(name), frames, args.force)
        what = f"{count} PNG frames"
    else:
        out = Path(name)
        suffix = out.suffix.lower()
        if suffix not in _CLIP_OUTPUTS:
            raise CCNNError(
                f"{out}: clips decompress to .y4m, to .mkv (FFV1) or to a folder of PNG frames "
                "(end the name with /)"
            )
        if suffix == ".mkv":
            require_av()  # before the existing-output check and the decoding: say what is missing first
        check_writable(out, args.force, inputs=(source,))
        clips = (YUVClip(f.y[None], f.u[None], f.v[None], info.fps) for f in frames)
        if suffix == ".mkv":
            write_atomic(out, ffv1_mkv_bytes(clips, info.width, info.height, info.fps), force=args.force)
        else:
            write_atomic(out, b"".join(y4m_bytes(clips, info.width, info.height, info.fps)), force=args.force)
        what = f"{info.frames} frames, {_CLIP_OUTPUTS[suffix]}"
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(
            f"{source} -> {name}: {info.width}x{info.height}, {what}, {seconds:.2f} s "
            f"({info.frames / max(seconds, 1e-9):.1f} frames/s)"
        )
    return 0


def _write_frames(folder: Path, frames: Iterator[YUVFrame], force: bool) -> int:
    """PNG frames (RGB by BT.601) into ``folder``, made whole in a temporary folder and moved in place."""
    from PIL import Image

    if folder.exists() and not folder.is_dir():
        raise CCNNError(f"{folder}: is a file, not a folder")
    if folder.exists() and any(folder.iterdir()) and not force:
        raise CCNNError(f"{folder}: already exists and is not empty (use -f/--force to overwrite)")
    parent = folder.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    count = 0
    try:
        for count, frame in enumerate(frames, start=1):
            rgb = yuv444_to_rgb(YUVClip(frame.y[None], frame.u[None], frame.v[None], Fraction(1)).yuv444())[0]
            Image.fromarray(rgb).save(staging / f"frame_{count - 1:06d}.png")
        if folder.exists():
            for item in staging.iterdir():
                os.replace(item, folder / item.name)
        else:
            os.replace(staging, folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return count


def shared_parts(info: VideoInfo) -> dict[str, int]:
    """The shared bytes split: restoring network's weights, intra and delta entropy models, the rest.

    The rest (``container``) is the clip's and the network's headers, the frame records' tags
    and the checksum.
    """
    network = info.network.as_dict()["bytes"]
    weights, intra = network["decoder_weights"], network["entropy_model"]
    return {
        "restoring_weights": weights,
        "intra_model": intra,
        "container": info.shared_bytes - weights - intra - info.delta_model_bytes,
    }


def print_info(data: bytes, as_json: bool) -> int:
    """``ccnn info CLIP.ccnn``: frames, rate, network and bytes per frame type."""
    info: VideoInfo = read_video_info(data)
    parts = shared_parts(info)
    if as_json:
        document = info.as_dict()
        document["bytes"].update(parts)
        seconds = info.frames / float(info.fps)
        document["kbps_by_type"] = {
            kind: 8.0 * sum(sizes) / seconds / 1000.0 for kind, sizes in info.frame_bytes.items()
        }
        print(json.dumps(document, indent=2))
        return 0
    spec = info.network.spec
    layers = ", ".join(f"tconv {s.kernel}x{s.kernel}/{s.stride} -> {s.channels}" for s in spec.layers)
    total = info.total_bytes
    print(f"format        ccnn version {info.version} (clip)")
    print(
        f"clip          {info.width}x{info.height}, {info.frames} frames at {float(info.fps):.3f} fps, "
        "YCbCr 4:2:0 BT.601"
    )
    predicted = "residuals on the previous frame" if info.residual else "latent deltas"
    channels, stride = spec.latent_channels, spec.latent_stride
    print(f"latent        {channels} channels at stride {stride}, predicted as {predicted}")
    print(f"restoring     {layers}; {info.network.decoder_parameters} parameters")
    print(
        f"{'shared':<13} {info.shared_bytes:>9} bytes  {100.0 * info.shared_bytes / total:5.1f}%  "
        f"(restoring network {parts['restoring_weights']}, intra model {parts['intra_model']}, "
        f"delta model {info.delta_model_bytes}, headers, records and checksum {parts['container']})"
    )
    seconds = info.frames / float(info.fps)
    for kind in FRAME_TYPE_NAMES.values():
        sizes = info.frame_bytes[kind]
        if sizes:
            print(
                f"{kind:<13} {sum(sizes):>9} bytes  {100.0 * sum(sizes) / total:5.1f}%  "
                f"({len(sizes)} {kind} frame{'s' if len(sizes) > 1 else ''}, "
                f"{sum(sizes) / len(sizes):.1f} bytes each, {8.0 * sum(sizes) / seconds / 1000.0:.1f} kbps)"
            )
    print(f"{'total':<13} {total:>9} bytes  {info.bpp:.4f} bpp, {info.kbps:.1f} kbps")
    return 0
