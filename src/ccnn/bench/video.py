"""``ccnn bench --video``: ccnn's clip codec against x264, x265, SVT-AV1, all-intra ccnn and MJPEG.

Every codec codes the same originals, the clip's decoded 4:2:0 frames (the first ``--frames``),
at a sweep of quality settings, and is decoded again; the classical codecs run through PyAV
(the ``[video]`` extra, whose wheels carry FFmpeg with libx264, libx265, libsvtav1 and MJPEG),
ccnn through its public API. The codecs that predict frames (ccnn's clip codec, x264, x265,
SVT-AV1) get the same intra period; all-intra ccnn and MJPEG code every frame alone.

- **Rate**: the coded bytes (the whole ``.ccnn`` file; the classical codecs' packets, without a
  container) as bits per frame pixel and kbps at the clip's frame rate.
- **Quality**: per frame PSNR of Y, U and V against the original planes, PSNR-YUV =
  (6 Y + U + V) / 8 per frame (the JVET convention), and PSNR-RGB of the BT.601 conversions;
  each averaged over frames.
- **All-intra ccnn** codes the RGB of every ``--intra-stride``-th frame with the still-image
  codec (its decoded RGB is converted back to 4:2:0 for the YUV measures); its per-frame rate and
  PSNR are averaged over those frames and stand for the clip's, since the frames are alike.
- **Time**: encode CPU seconds (this process's, one thread for every codec) per coded pixel, and
  decode frames per second (wall time, one thread).

Measurements are cached in ``RESULTS_DIR/cache`` (as ``ccnn bench`` does for images) under a key
of the codec's settings and library versions, the quality and the frames' content, so an
interrupted run continues and a changed codec alone is redone. The applications' layering
holds: this module imports the library, never the reverse.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import FORMAT_VERSION, __version__, compress_image, compress_video, decompress, read_video_info
from ..errors import CCNNError, ConfigError, ImageError
from ..files import write_atomic
from ..format.video import decode_video
from ..settings import VIDEO_PRESETS
from ..videoio import (
    YUVClip,
    av_frame,
    clip_from_yuv444,
    clip_to_rgb,
    frame_planes,
    psnr_yuv,
    read_clip,
    require_av,
    rgb_to_yuv444,
)
from .bdrate import MIN_OVERLAP, bd_psnr, bd_rate, overlap_share
from .codecs import _code_fingerprint
from .run import Cache, progress_bar

#: The codecs of ``ccnn bench --video``, in the order they are reported.
VIDEO_CODEC_NAMES: tuple[str, ...] = ("ccnn", "ccnn-intra", "x264", "x265", "svtav1", "mjpeg")
#: The anchors of the report's BD-rate tables, in order.
VIDEO_ANCHORS: tuple[str, ...] = ("x264", "ccnn-intra", "x265", "svtav1", "mjpeg")
#: The CRF sweep of x264 and x265 when none is given (carphone reaches 30-37 dB over it).
DEFAULT_CRFS: tuple[int, ...] = (28, 33, 38, 43, 48)
NARROW_MARK = "⚠"


def _psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR of two uint8 arrays in dB (100 when they are identical)."""
    mse = float(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _psnr_rgb(reference: YUVClip, decoded_rgb: np.ndarray) -> float:
    """Mean per-frame PSNR-RGB of ``decoded_rgb`` (N, H, W, 3) against the BT.601 RGB of ``reference``."""
    original = clip_to_rgb(reference)
    return float(np.mean([_psnr(a, b) for a, b in zip(original, decoded_rgb)]))


def _frame(clip: YUVClip, index: int) -> YUVClip:
    return YUVClip(clip.y[index : index + 1], clip.u[index : index + 1], clip.v[index : index + 1], clip.fps)


@dataclass(frozen=True)
class VideoCodec:
    """The interface of every codec of the video benchmark (subclasses fill it in).

    ``qualities`` are the codec's own settings, swept in order (CRF, quality level, qscale).
    ``intra_period`` is the distance between intra frames of the codecs that predict frames
    (0: the first frame only).
    """

    name: str = "codec"
    label: str = "codec"
    qualities: tuple[float, ...] = ()
    intra_period: int = 0
    sweep: str = "quality"

    def options(self) -> str:
        """Library and encoder settings, without the quality sweep."""
        raise NotImplementedError

    def versions(self) -> str:
        """Versions of the libraries that make the files."""
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why this codec cannot run here, or None when it can."""
        return None

    def key(self, quality: float) -> dict[str, Any]:
        """Everything that decides the coded clip at ``quality``, except the frames."""
        return {
            "codec": self.name,
            "settings": self.options(),
            "versions": self.versions(),
            "quality": float(quality),
            "intra_period": self.intra_period,
        }

    def quality_label(self, quality: float) -> str:
        return f"q{quality:g}"

    def measure(self, clip: YUVClip, quality: float) -> dict[str, Any]:
        """Encode and decode ``clip`` at ``quality``: bytes, rates, PSNRs and times."""
        raise NotImplementedError


def _rates(size: float, frames: int, clip: YUVClip) -> dict[str, float]:
    """bpp per frame pixel and kbps at the clip's rate of ``size`` bytes for ``frames`` frames."""
    return {
        "bytes": size,
        "bpp": 8.0 * size / (frames * clip.height * clip.width),
        "kbps": 8.0 * size * float(clip.fps) / frames / 1000.0,
    }


def _quality(clip: YUVClip, decoded: YUVClip) -> dict[str, float]:
    """PSNR-Y/U/V/YUV of ``decoded`` and its PSNR-RGB (both through BT.601 RGB)."""
    return {**psnr_yuv(clip, decoded), "psnr-rgb": _psnr_rgb(clip, clip_to_rgb(decoded))}


def _timing(cpu_seconds: float, pixels: int, frames: int, decode_seconds: float) -> dict[str, float]:
    return {
        "encode_cpu_seconds": cpu_seconds,
        "encode_us_per_pixel": 1e6 * cpu_seconds / pixels,
        "decode_seconds": decode_seconds,
        "decode_fps": frames / max(decode_seconds, 1e-9),
    }


@dataclass(frozen=True)
class AvCodec(VideoCodec):
    """A classical codec through PyAV: an FFmpeg encoder, its options and the decoder to read it back."""

    encoder: str = ""
    decoder: str = ""
    #: The pixel format given to the encoder (the planes are passed as they are, no conversion).
    pix_fmt: str = "yuv420p"

    def encoder_options(self, quality: float, frames: int) -> dict[str, str]:
        """FFmpeg's options for one point; ``frames`` bounds an intra period of 0 (the first only)."""
        raise NotImplementedError

    def keyint(self, frames: int) -> int:
        """The distance between intra frames: the period, or beyond the last frame when it is 0."""
        return self.intra_period if self.intra_period > 0 else frames + 1

    def options(self) -> str:
        shown = self.encoder_options(0, 0)
        text = ", ".join(f"{k}={v}" for k, v in shown.items() if k not in ("crf", "threads"))
        return f"PyAV {self.encoder}: {text}, one thread"

    def versions(self) -> str:
        try:
            av = require_av()
        except ImageError:
            return "PyAV missing"
        libs = getattr(av, "library_versions", {})
        return f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, libs.get('libavcodec', ())))}"

    def missing(self) -> str | None:
        try:
            av = require_av()
        except ImageError as exc:
            return str(exc)
        try:
            av.codec.Codec(self.encoder, "w")
            av.codec.Codec(self.decoder, "r")
        except Exception:  # PyAV raises its own UnknownCodecError (a ValueError in some versions)
            return f"this PyAV's FFmpeg has no {self.encoder} encoder or {self.decoder} decoder"
        return None

    def configure(self, context: Any, quality: float) -> None:
        """Settings that are attributes of the codec context rather than options."""

    def uncounted(self, packet: bytes) -> int:
        """Bytes of ``packet`` that are not video: none, except x264's text of its settings."""
        return 0

    def measure(self, clip: YUVClip, quality: float) -> dict[str, Any]:
        av = require_av()
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration otherwise
        rate = Fraction(clip.fps).limit_denominator(100000)
        context = av.CodecContext.create(self.encoder, "w")
        context.width, context.height, context.pix_fmt = clip.width, clip.height, self.pix_fmt
        context.time_base = 1 / rate
        context.framerate = rate
        self.configure(context, quality)
        context.options = self.encoder_options(quality, clip.frames)
        packets = []
        start = time.process_time()
        for i in range(clip.frames):
            frame = av_frame(av, clip.y[i], clip.u[i], clip.v[i])
            if self.pix_fmt != "yuv420p":  # same planes, a full-range tag for MJPEG
                frame = _retag(av, frame, self.pix_fmt)
            frame.pts = i
            packets.extend(context.encode(frame))
        packets.extend(context.encode(None))
        cpu = time.process_time() - start
        decoder = av.CodecContext.create(self.decoder, "r")
        decoder.thread_count = 1
        planes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        start = time.perf_counter()
        for packet in [*packets, None]:
            planes.extend(_raw_planes(frame) for frame in decoder.decode(packet))
        decode = time.perf_counter() - start
        if len(planes) != clip.frames:
            raise CCNNError(f"{self.name} decoded {len(planes)} frames of {clip.frames}")
        decoded = YUVClip(*(np.stack([p[k] for p in planes]) for k in range(3)), clip.fps)
        sizes = [p.size - self.uncounted(bytes(p)) for p in packets]
        size = sum(sizes)
        intra = [n for n, p in zip(sizes, packets) if p.is_keyframe]
        return {
            **_rates(size, clip.frames, clip),
            **_quality(clip, decoded),
            **_timing(cpu, clip.frames * clip.height * clip.width, clip.frames, decode),
            "frames": clip.frames,
            "frames_measured": clip.frames,
            "intra_frames": len(intra),
            "bytes_intra": sum(intra),
            "bytes_predicted": size - sum(intra),
        }


def _retag(av: Any, frame: Any, pix_fmt: str) -> Any:
    """A copy of a ``yuv420p`` frame under another 4:2:0 pixel format (``yuvj420p``), planes unchanged."""
    out = av.VideoFrame(frame.width, frame.height, pix_fmt)
    for source, target in zip(frame.planes, out.planes):
        src = np.frombuffer(memoryview(source), dtype=np.uint8).reshape(source.height, source.line_size)
        dst = np.frombuffer(memoryview(target), dtype=np.uint8).reshape(target.height, target.line_size)
        dst[:, : target.width] = src[:, : source.width]
    return out


def _raw_planes(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three planes of a decoded 4:2:0 frame as stored (``yuvj420p`` is not range-converted)."""
    if frame.format.name in ("yuv420p", "yuvj420p"):
        arrays = [
            np.frombuffer(memoryview(p), dtype=np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy()
            for p in frame.planes
        ]
        return arrays[0], arrays[1], arrays[2]
    return frame_planes(frame)


@dataclass(frozen=True)
class X264Codec(AvCodec):
    """libx264: preset medium, tune psnr, no B-frames, scene cuts off (intra frames only by the period)."""

    name: str = "x264"
    label: str = "x264 medium psnr"
    encoder: str = "libx264"
    decoder: str = "h264"
    sweep: str = "CRF"
    qualities: tuple[float, ...] = DEFAULT_CRFS

    def encoder_options(self, quality: float, frames: int) -> dict[str, str]:
        keyint = self.keyint(frames) if frames else "PERIOD"
        return {
            "preset": "medium",
            "tune": "psnr",
            "crf": f"{quality:g}",
            "bf": "0",
            "threads": "1",
            "x264-params": f"bframes=0:keyint={keyint}:min-keyint={keyint}:scenecut=0",
        }

    def quality_label(self, quality: float) -> str:
        return f"crf{quality:g}"

    def uncounted(self, packet: bytes) -> int:
        """The SEI units (NAL type 6) of ``packet``: x264 writes its version and settings as text
        there (about 600 bytes in the first packet, no option turns it off), and with no B-frames
        and tune psnr it writes no other SEI. The decoder still gets them."""
        return sum(len(unit) + 3 for unit in _annex_b_units(packet) if unit and unit[0] & 0x1F == 6)

    def options(self) -> str:
        return super().options() + ", its settings SEI not counted"


def _annex_b_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream, without their 3-byte start codes (header byte first)."""
    starts = []
    index = data.find(b"\x00\x00\x01")
    while index >= 0:
        starts.append(index)
        index = data.find(b"\x00\x00\x01", index + 3)
    units = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        units.append(data[start + 3 : end])
    return units


@dataclass(frozen=True)
class X265Codec(AvCodec):
    """libx265: preset medium, tune psnr, no B-frames, scene cuts off, one thread.

    ``info=0`` leaves out the SEI with x265's settings as text (about 2.3 KB, more than carphone's
    30 coded frames at CRF 45).
    """

    name: str = "x265"
    label: str = "x265 medium psnr"
    encoder: str = "libx265"
    decoder: str = "hevc"
    sweep: str = "CRF"
    qualities: tuple[float, ...] = DEFAULT_CRFS

    def encoder_options(self, quality: float, frames: int) -> dict[str, str]:
        keyint = self.keyint(frames) if frames else "PERIOD"
        params = f"bframes=0:keyint={keyint}:min-keyint={keyint}:scenecut=0:pools=1:frame-threads=1"
        return {
            "preset": "medium",
            "tune": "psnr",
            "crf": f"{quality:g}",
            "x265-params": params + ":info=0:log-level=error",
        }

    def quality_label(self, quality: float) -> str:
        return f"crf{quality:g}"

    def measure(self, clip: YUVClip, quality: float) -> dict[str, Any]:
        # PyAV 18.1's libx265 corrupted its heap (the process aborted) after a few encodes of
        # 48x32 frames, smaller than its 64x64 coding tree unit; 64x96 ran clean
        if clip.width < 64 or clip.height < 64:
            raise CCNNError(f"x265 is not run on frames smaller than 64x64 ({clip.width}x{clip.height})")
        return super().measure(clip, quality)


@dataclass(frozen=True)
class SvtAv1Codec(AvCodec):
    """libsvtav1: preset 8, tune PSNR (tune=1), low delay (pred-struct=1), one thread (lp=1)."""

    name: str = "svtav1"
    label: str = "SVT-AV1 p8 psnr"
    encoder: str = "libsvtav1"
    decoder: str = "libdav1d"
    sweep: str = "CRF"
    qualities: tuple[float, ...] = (35, 43, 50, 57, 63)

    def encoder_options(self, quality: float, frames: int) -> dict[str, str]:
        keyint = self.keyint(frames) if frames else "PERIOD"
        return {
            "preset": "8",
            "crf": f"{quality:g}",
            "g": str(keyint),
            "svtav1-params": "tune=1:pred-struct=1:lp=1",
        }

    def quality_label(self, quality: float) -> str:
        return f"crf{quality:g}"


@dataclass(frozen=True)
class MjpegCodec(AvCodec):
    """FFmpeg's MJPEG: every frame a baseline JPEG of the 4:2:0 planes at a fixed qscale (2 to 31)."""

    name: str = "mjpeg"
    label: str = "MJPEG"
    encoder: str = "mjpeg"
    decoder: str = "mjpeg"
    pix_fmt: str = "yuvj420p"
    sweep: str = "qscale"
    qualities: tuple[float, ...] = (3, 6, 12, 24)

    def encoder_options(self, quality: float, frames: int) -> dict[str, str]:
        return {"threads": "1"}

    def configure(self, context: Any, quality: float) -> None:
        context.qmin = context.qmax = int(quality)

    def options(self) -> str:
        return "PyAV mjpeg: qmin=qmax=qscale, every frame intra, one thread"

    def quality_label(self, quality: float) -> str:
        return f"qs{quality:g}"


@dataclass(frozen=True)
class CcnnClipCodec(VideoCodec):
    """ccnn's clip codec (``ccnn.compress_video``): one network per clip, the whole ``.ccnn`` file."""

    name: str = "ccnn"
    label: str = "ccnn clip"
    preset: str = "default"
    steps: int | None = None
    seed: int = 1
    device: str | None = None
    qualities: tuple[float, ...] = (3, 6, 9)
    fingerprint: str = field(default_factory=_code_fingerprint)

    def options(self) -> str:
        steps = f", {self.steps} steps" if self.steps else " (the preset's steps)"
        return f"ccnn clip --preset {self.preset}{steps}, seed {self.seed}, whole .ccnn file"

    def versions(self) -> str:
        return f"ccnn {__version__}, code {self.fingerprint}"

    def key(self, quality: float) -> dict[str, Any]:
        return {**super().key(quality), "device": self.device or "auto"}

    def measure(self, clip: YUVClip, quality: float) -> dict[str, Any]:
        start = time.process_time()
        result = compress_video(
            clip,
            self.preset,
            quality=int(quality),
            steps=self.steps,
            seed=self.seed,
            intra_period=self.intra_period,
            device=self.device,
        )
        cpu = time.process_time() - start
        start = time.perf_counter()
        frames = list(decode_video(result.data))
        decode = time.perf_counter() - start
        decoded = YUVClip(*(np.stack([getattr(f, p) for f in frames]) for p in "yuv"), clip.fps)
        info = read_video_info(result.data)
        return {
            **_rates(len(result.data), clip.frames, clip),
            **_quality(clip, decoded),
            **_timing(cpu, clip.frames * clip.height * clip.width, clip.frames, decode),
            "frames": clip.frames,
            "frames_measured": clip.frames,
            "intra_frames": len(info.frame_bytes.get("intra", [])),
            "bytes_intra": sum(info.frame_bytes.get("intra", [])),
            "bytes_predicted": sum(info.frame_bytes.get("predicted", [])),
            "bytes_shared": info.shared_bytes,
            "bytes_network": info.network_bytes,
            "bytes_delta_model": info.delta_model_bytes,
            "steps": result.steps,
        }


@dataclass(frozen=True)
class CcnnIntraCodec(VideoCodec):
    """All-intra ccnn: the still-image codec on every ``stride``-th frame's RGB, per frame averaged."""

    name: str = "ccnn-intra"
    label: str = "all-intra ccnn"
    preset: str = "fast"
    steps: int | None = None
    seed: int = 1
    stride: int = 1
    device: str | None = None
    qualities: tuple[float, ...] = (1, 3, 6)
    fingerprint: str = field(default_factory=_code_fingerprint)

    def options(self) -> str:
        steps = f", {self.steps} steps" if self.steps else " (the preset's steps)"
        every = "every frame" if self.stride == 1 else f"one frame in {self.stride}, per-frame means"
        return f"ccnn image --preset {self.preset}{steps}, seed {self.seed}, {every}, whole .ccnn files"

    def versions(self) -> str:
        return f"ccnn {__version__}, format {FORMAT_VERSION}, code {self.fingerprint}"

    def key(self, quality: float) -> dict[str, Any]:
        key = super().key(quality)
        key.pop("intra_period")  # every frame is intra whatever the period
        return {**key, "device": self.device or "auto"}

    def measure(self, clip: YUVClip, quality: float) -> dict[str, Any]:
        rgb = clip_to_rgb(clip)
        chosen = list(range(0, clip.frames, self.stride))
        sizes: list[int] = []
        psnrs: list[dict[str, float]] = []
        cpu = decode = 0.0
        for i in chosen:
            start = time.process_time()
            # a step budget far below the time limit: the same files on any machine load
            options: dict[str, Any] = {"quality": int(quality), "seed": self.seed, "seconds": 1e6}
            if self.steps:
                options["steps"] = self.steps
            result = compress_image(rgb[i], self.preset, device=self.device, **options)
            cpu += time.process_time() - start
            start = time.perf_counter()
            out = decompress(result.data)
            decode += time.perf_counter() - start
            decoded = clip_from_yuv444(rgb_to_yuv444(out[None]), clip.fps)
            psnrs.append({**psnr_yuv(_frame(clip, i), decoded), "psnr-rgb": _psnr(rgb[i], out)})
            sizes.append(len(result.data))
        mean = float(np.mean(sizes))
        return {
            **_rates(mean, 1, clip),
            "bytes": mean * clip.frames,  # the clip's bytes at the measured frames' mean
            **{name: float(np.mean([p[name] for p in psnrs])) for name in psnrs[0]},
            **_timing(cpu, len(chosen) * clip.height * clip.width, len(chosen), decode),
            "frames": clip.frames,
            "frames_measured": len(chosen),
            "intra_frames": clip.frames,
            "bytes_intra": mean * clip.frames,
            "bytes_predicted": 0,
        }


# --- clips, tasks, cache ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchClip:
    """One clip of the benchmark: its name, file, the frames used and a hash of their planes."""

    name: str
    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int
    digest: str


@lru_cache(maxsize=2)
def _load(path: str, frames: int | None, fps: Fraction | None) -> YUVClip:
    clip = read_clip(path, max_frames=frames)
    return replace(clip, fps=fps) if fps is not None else clip


def load_clips(paths: Sequence[str], frames: int | None, fps: Fraction | None) -> list[BenchClip]:
    """The clips to measure (their first ``frames`` frames, at ``fps`` when given)."""
    clips = []
    names: set[str] = set()
    for text in paths:
        path = Path(text)
        clip = _load(str(path), frames, fps)
        digest = hashlib.sha256(
            repr((clip.y.shape, clip.fps)).encode() + clip.y.tobytes() + clip.u.tobytes() + clip.v.tobytes()
        ).hexdigest()
        name = path.stem if path.stem not in names else f"{path.stem}-{len(names)}"
        names.add(name)
        clips.append(BenchClip(name, path, clip.frames, clip.fps, clip.width, clip.height, digest))
    return clips


@dataclass(frozen=True)
class VideoTask:
    """One measurement: a codec at one quality on one clip."""

    codec: VideoCodec
    clip: BenchClip
    quality: float
    key: str
    fps: Fraction | None


def task_key(codec: VideoCodec, quality: float, clip: BenchClip) -> str:
    payload = json.dumps({**codec.key(quality), "clip": clip.digest}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_task(task: VideoTask) -> dict[str, Any]:
    """Measure one task (here or in a worker process); an error comes back as a record."""
    from ..encoder.threads import set_torch_threads

    set_torch_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        clip = _load(str(task.clip.path), task.clip.frames, task.fps)
        return {**task.codec.measure(clip, task.quality), "load_average": load}
    except (CCNNError, ValueError, OSError, RuntimeError) as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def execute(
    tasks: list[VideoTask],
    jobs: int,
    finish: Callable[[VideoTask, dict[str, Any]], None],
    start: Callable[[VideoTask], None] | None = None,
) -> None:
    """Run ``tasks`` here (``jobs`` = 1, calling ``start`` before each) or on ``jobs`` fresh
    worker processes, calling ``finish`` as each one ends."""
    if jobs <= 1:
        for task in tasks:
            if start is not None:
                start(task)
            finish(task, run_task(task))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: dict[Future, VideoTask] = {pool.submit(run_task, task): task for task in tasks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(pending.pop(future), future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# --- results --------------------------------------------------------------------------------------


@dataclass
class VideoOutcome:
    """Every record of a run, by (clip, codec, quality)."""

    clips: list[BenchClip]
    codecs: list[VideoCodec]
    records: dict[tuple[str, str, float], dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per measurement, in report order."""
        rows = []
        for clip in self.clips:
            for codec in self.codecs:
                for quality in codec.qualities:
                    record = self.records.get((clip.name, codec.name, quality))
                    if record is None or "error" in record:
                        continue
                    rows.append(
                        {
                            "clip": clip.name,
                            "codec": codec.name,
                            "label": codec.label,
                            "quality": quality,
                            "setting": codec.quality_label(quality),
                            **record,
                        }
                    )
        return rows

    def curve(self, clip: str, codec: str) -> tuple[list[float], list[float]]:
        """bpp and PSNR-YUV of one codec's points on one clip."""
        points = [(r["bpp"], r["psnr-yuv"]) for r in self.rows() if r["clip"] == clip and r["codec"] == codec]
        return [p[0] for p in points], [p[1] for p in points]


def bd_rows(outcome: VideoOutcome) -> list[dict[str, Any]]:
    """BD-rate and BD-PSNR (PSNR-YUV against bpp) of every codec against every anchor, per clip."""
    rows = []
    names = [c.name for c in outcome.codecs]
    for clip in outcome.clips:
        for anchor in (a for a in VIDEO_ANCHORS if a in names):
            base = outcome.curve(clip.name, anchor)
            for test in names:
                curve = outcome.curve(clip.name, test)
                if test == anchor or len(base[0]) < 2 or len(curve[0]) < 2:
                    continue
                share = overlap_share(base[1], curve[1])
                lo, hi = max(min(base[1]), min(curve[1])), min(max(base[1]), max(curve[1]))
                rows.append(
                    {
                        "clip": clip.name,
                        "codec": test,
                        "anchor": anchor,
                        "bd_rate": bd_rate(base[0], base[1], curve[0], curve[1]),
                        "bd_psnr": bd_psnr(base[0], base[1], curve[0], curve[1]),
                        "overlap": f"{lo:.2f}–{hi:.2f} dB" if hi > lo else "none",
                        "overlap_share": share,
                        "narrow": share is not None and 0 < share < MIN_OVERLAP,
                    }
                )
    return rows


_CSV_FIELDS = (
    "clip", "codec", "label", "setting", "quality", "frames", "frames_measured", "bytes", "bpp", "kbps",
    "psnr-y", "psnr-u", "psnr-v", "psnr-yuv", "psnr-rgb", "encode_cpu_seconds", "encode_us_per_pixel",
    "decode_seconds", "decode_fps", "intra_frames", "bytes_intra", "bytes_predicted", "bytes_shared",
    "bytes_network", "bytes_delta_model", "steps", "load_average",
)  # fmt: skip


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_atomic(path, buffer.getvalue().encode(), force=True)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _bd_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if row["bd_rate"] is None:
        return "no overlap"
    return f"{row['bd_rate']:+.1f}%" + (f" {NARROW_MARK}" if row["narrow"] else "")


def report_text(outcome: VideoOutcome, command: str, plot: str | None) -> str:
    """report.md: the run, each codec's settings, and per clip the points and BD-rate tables."""
    rows = outcome.rows()
    bd = bd_rows(outcome)
    codecs = {c.name: c for c in outcome.codecs}
    lines = [
        "# ccnn bench --video",
        "",
        f"Command: `{command}`",
        "",
        f"ccnn {__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores. Originals: the clips' decoded 4:2:0 frames. Rate: coded bytes "
        "(the whole .ccnn file; the classical codecs' packets) per frame pixel and kbps at the "
        "clip's frame rate. Quality: per-frame PSNR-YUV (6 Y + U + V) / 8, PSNR-Y and PSNR-RGB "
        "(BT.601), averaged over frames. Encode: CPU seconds of one thread per coded pixel; "
        "decode: frames per second, wall time, one thread.",
        "",
        "| codec | settings | sweep | versions |",
        "|---|---|---|---|",
    ]
    for codec in outcome.codecs:
        sweep = ", ".join(codec.quality_label(q) for q in codec.qualities)
        period = "" if codec.name in ("ccnn-intra", "mjpeg") else _period_text(codec.intra_period)
        lines.append(f"| {codec.label} | {codec.options()}{period} | {sweep} | {codec.versions()} |")
    for name, reason in outcome.skipped.items():
        lines.append(f"\nSkipped {name}: {reason}")
    if "ccnn-intra" in codecs and isinstance(codecs["ccnn-intra"], CcnnIntraCodec):
        stride = codecs["ccnn-intra"].stride  # type: ignore[attr-defined]
        if stride > 1:
            lines += [
                "",
                f"All-intra ccnn was measured on one frame in {stride} only (frames 0, {stride}, ...): "
                "its rate and PSNRs are the means over those frames, standing for the whole clip's.",
            ]
    for clip in outcome.clips:
        lines += [
            "",
            f"## {clip.name}: {clip.width}×{clip.height}, {clip.frames} frames at {float(clip.fps):.3f} fps",
            "",
            "| codec | setting | bpp | kbps | PSNR-Y | PSNR-YUV | PSNR-RGB | encode µs/px | decode fps "
            "| bytes: intra / predicted / shared |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in (r for r in rows if r["clip"] == clip.name):
            shared = row.get("bytes_shared")
            split = f"{row['bytes_intra']:.0f} / {row['bytes_predicted']:.0f}"
            split += f" / {shared}" if shared is not None else ""
            if row["frames_measured"] != row["frames"]:
                split += f" (mean of {row['frames_measured']} frames)"
            lines.append(
                f"| {row['label']} | {row['setting']} | {row['bpp']:.4f} | {row['kbps']:.1f} "
                f"| {row['psnr-y']:.2f} | {row['psnr-yuv']:.2f} | {row['psnr-rgb']:.2f} "
                f"| {row['encode_us_per_pixel']:.3g} | {row['decode_fps']:.0f} | {split} |"
            )
        anchors = [a for a in VIDEO_ANCHORS if a in codecs]
        clip_bd = [r for r in bd if r["clip"] == clip.name]
        if not anchors or not clip_bd:
            continue
        lines += [
            "",
            "BD-rate (PSNR-YUV against bpp; negative: fewer bits at equal quality), row against column:",
            "",
            "| codec | " + " | ".join(f"vs {codecs[a].label}" for a in anchors) + " |",
            "|---|" + "---:|" * len(anchors),
        ]
        for codec in outcome.codecs:
            cells = []
            for anchor in anchors:
                found = [r for r in clip_bd if r["codec"] == codec.name and r["anchor"] == anchor]
                cells.append("" if anchor == codec.name else _bd_cell(found[0] if found else None))
            lines.append(f"| {codec.label} | " + " | ".join(cells) + " |")
        ours = [r for r in clip_bd if r["codec"] == "ccnn"]
        if ours:
            lines += [
                "",
                "ccnn clip against each anchor: BD-rate, BD-PSNR and the PSNR-YUV range both curves cover:",
                "",
                "| anchor | BD-rate | BD-PSNR | overlap (share of the narrower range) |",
                "|---|---:|---:|---|",
            ]
            for row in ours:
                share = "" if row["overlap_share"] is None else f" ({row['overlap_share']:.0%})"
                lines.append(
                    f"| {codecs[row['anchor']].label} | {_bd_cell(row)} | {_fmt(row['bd_psnr'], '+.2f')} dB "
                    f"| {row['overlap']}{share} |"
                )
    if any(r["narrow"] for r in bd):
        lines += [
            "",
            f"{NARROW_MARK} The two curves share less than {MIN_OVERLAP:.0%} of the narrower one's "
            "PSNR-YUV range: the figure averages over that part only.",
        ]
    if plot:
        lines += ["", f"![rate-distortion curves]({plot})"]
    return "\n".join(lines) + "\n"


def _period_text(period: int) -> str:
    return ", one intra frame (the first)" if period == 0 else f", an intra frame every {period}"


def plot_curves(outcome: VideoOutcome, path: Path) -> bool:
    """rd.png: PSNR-YUV against bpp (log), one panel per clip. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    count = len(outcome.clips)
    figure, axes = plt.subplots(1, count, figsize=(7 * count, 5.2), squeeze=False)
    for axis, clip in zip(axes[0], outcome.clips):
        for codec in outcome.codecs:
            rate, quality = outcome.curve(clip.name, codec.name)
            if not rate:
                continue
            order = np.argsort(rate)
            width = 2.4 if codec.name == "ccnn" else 1.4
            axis.plot(
                np.asarray(rate)[order], np.asarray(quality)[order], marker="o", markersize=3,
                linewidth=width, label=codec.label,
            )  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("bits per frame pixel (coded bytes, log)")
        axis.set_ylabel("PSNR-YUV 6:1:1 (dB)")
        axis.set_title(f"{clip.name}, {clip.width}×{clip.height}, {clip.frames} frames")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue(), force=True)
    return True


def write_results(outcome: VideoOutcome, command: str, out_dir: Path) -> list[dict[str, Any]]:
    """results.csv, results.json, report.md and rd.png in ``out_dir``; returns the BD rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = outcome.rows()
    bd = bd_rows(outcome)
    write_csv(rows, out_dir / "results.csv")
    document = {
        "command": command,
        "clips": [
            {
                "name": c.name,
                "width": c.width,
                "height": c.height,
                "frames": c.frames,
                "fps": float(c.fps),
                "digest": c.digest,
            }
            for c in outcome.clips
        ],
        "codecs": [
            {"name": c.name, "label": c.label, "settings": c.options(), "versions": c.versions()}
            for c in outcome.codecs
        ],
        "skipped": outcome.skipped,
        "results": rows,
        "bd_rates": bd,
    }
    write_atomic(out_dir / "results.json", (json.dumps(document, indent=2) + "\n").encode(), force=True)
    plotted = plot_curves(outcome, out_dir / "rd.png")
    text = report_text(outcome, command, "rd.png" if plotted else None)
    write_atomic(out_dir / "report.md", text.encode(), force=True)
    return bd


# --- the command ------------------------------------------------------------------------------------


def build_video_codecs(args: Any, qualities: dict[str, tuple[float, ...]]) -> list[VideoCodec]:
    """The codecs of a ``ccnn bench --video`` run from its options (range-checked)."""
    names = [n.strip().lower() for n in (args.codecs or ",".join(VIDEO_CODEC_NAMES)).split(",") if n.strip()]
    unknown = [n for n in names if n not in VIDEO_CODEC_NAMES]
    if unknown or not names:
        raise ConfigError(
            f"unknown video codec {', '.join(unknown) or '(none)'} "
            f"(choose from {', '.join(VIDEO_CODEC_NAMES)})"
        )
    preset = args.preset or "default"
    if preset not in VIDEO_PRESETS:
        raise ConfigError(f"--preset {preset}: clips take {' or '.join(VIDEO_PRESETS)}")
    period = args.intra_period or 0
    if period < 0 or args.intra_stride < 1:
        raise ConfigError("--intra-period must be 0 or more and --intra-stride 1 or more")
    device = None if args.device == "auto" else args.device
    seed = 1 if args.seed is None else args.seed
    made: dict[str, VideoCodec] = {
        "ccnn": CcnnClipCodec(preset=preset, steps=args.steps, seed=seed, device=device),
        "ccnn-intra": CcnnIntraCodec(
            preset=args.intra_preset,
            steps=args.intra_steps,
            seed=seed,
            stride=args.intra_stride,
            device=device,
        ),
        "x264": X264Codec(),
        "x265": X265Codec(),
        "svtav1": SvtAv1Codec(),
        "mjpeg": MjpegCodec(),
    }
    codecs = []
    for name in dict.fromkeys(names):
        codec = replace(made[name], intra_period=period)
        if name in ("x264", "x265") and args.crfs:
            codec = replace(codec, qualities=args.crfs)
        if name in qualities:
            codec = replace(codec, qualities=qualities[name])
        _check_sweep(codec)
        codecs.append(codec)
    return codecs


def _check_sweep(codec: VideoCodec) -> None:
    limits = {
        "ccnn": (1, 9),
        "ccnn-intra": (1, 9),
        "x264": (0, 51),
        "x265": (0, 51),
        "svtav1": (1, 63),
        "mjpeg": (2, 31),
    }
    low, high = limits[codec.name]
    for value in codec.qualities:
        if not low <= value <= high or (codec.name != "x264" and not float(value).is_integer()):
            raise ConfigError(f"{codec.name} quality {value:g} is out of range ({low} to {high})")


def cmd_video_bench(args: Any, qualities: dict[str, tuple[float, ...]]) -> int:
    """``ccnn bench --video CLIPS``: measure what the cache lacks, write the results, print BD-rates."""
    codecs = build_video_codecs(args, qualities)
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, not {args.frames}")
    fps = None
    if args.fps is not None:
        if not 0 < args.fps <= 1000:
            raise ConfigError(f"--fps must be between 0 and 1000, not {args.fps:g}")
        fps = Fraction(args.fps).limit_denominator(1001)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {args.jobs}")
    clips = load_clips(args.video, args.frames, fps)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CCNNError(f"{out_dir}: is not a folder")
    cache = Cache(Path(args.cache) if args.cache else out_dir / "cache")
    outcome = VideoOutcome(clips, [])
    for codec in codecs:
        reason = codec.missing()
        if reason is None:
            outcome.codecs.append(codec)
        else:
            outcome.skipped[codec.name] = reason
            print(f"ccnn bench: skipping {codec.name}: {reason}", file=sys.stderr)
    if not outcome.codecs:
        raise CCNNError("no codec could run (see the notes above)")
    tasks = []
    for clip in clips:
        for codec in outcome.codecs:
            for quality in codec.qualities:
                key = task_key(codec, quality, clip)
                record = cache.get(key)
                if record is not None and "error" not in record:
                    outcome.records[(clip.name, codec.name, quality)] = record
                else:
                    tasks.append(VideoTask(codec, clip, quality, key, fps))
    # the classical codecs first (seconds), then ccnn's (training) one clip after the other, so
    # that an interrupted run has whole clips in its cache
    order = {clip.name: i for i, clip in enumerate(clips)}
    tasks.sort(
        key=lambda t: (
            t.codec.name.startswith("ccnn"),
            order[t.clip.name] if t.codec.name.startswith("ccnn") else 0,
        )
    )
    command = "ccnn bench " + " ".join(shlex.quote(a) for a in args.argv)
    bar = progress_bar(len(outcome.records) + len(tasks), len(outcome.records), enabled=not args.quiet)

    def finish(task: VideoTask, record: dict[str, Any]) -> None:
        if "error" in record:
            bar.write(f"ccnn bench: {task.codec.name} {task.clip.name}: {record['error']}", file=sys.stderr)
        else:
            cache.put(task.codec.name, task.key, record)
        outcome.records[(task.clip.name, task.codec.name, task.quality)] = record
        if args.jobs > 1:
            show(task)
        bar.update(1)

    def show(task: VideoTask) -> None:
        bar.set_postfix_str(f"{task.codec.name} {task.clip.name} {task.codec.quality_label(task.quality)}")

    try:
        execute(tasks, args.jobs, finish, show)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"ccnn bench: interrupted; finished measurements are cached in {cache.directory}, "
            "run the same command to continue",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
    bd = write_results(outcome, command, out_dir)
    for row in bd:
        if row["narrow"] and "ccnn" in (row["codec"], row["anchor"]):
            print(
                f"ccnn bench: warning: {row['clip']}: {row['codec']} against {row['anchor']} overlaps over "
                f"{row['overlap']} only ({row['overlap_share']:.0%} of the narrower range)",
                file=sys.stderr,
            )
    if not args.quiet:
        print(
            f"wrote {out_dir / 'report.md'}, {out_dir / 'rd.png'}, {out_dir / 'results.csv'} and results.json"
        )
        for row in bd:
            if row["codec"] == "ccnn":
                print(f"  {row['clip']}: BD-rate of ccnn clip vs {row['anchor']:<10} {_bd_cell(row)}")
    return 0
