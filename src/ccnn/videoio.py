"""Clips in and out: YUV 4:2:0 frames from video files (PyAV), Y4M files and folders of images.

ccnn codes a clip as YCbCr 4:2:0, 8-bit, BT.601 limited range, as video sources have it
(docs/decisions.md, "Video: latent deltas under one shared network"): a clip is held as three
planes per frame, :class:`YUVClip`. Y4M is read and written here without FFmpeg; other
containers (mp4, mkv, ...) are read through PyAV, the optional ``[video]`` extra, which is
imported only when such a file is read. A folder of PNG frames is converted from RGB with the
BT.601 matrix, and written back so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np

from .errors import ImageError
from .format.video import subsample_chroma
from .install import pip_hint

#: File name endings read as video through PyAV; ``.y4m`` is read by ccnn itself.
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg"})
Y4M_SUFFIX = ".y4m"
#: Still-image endings: given to the video path they are refused with a message that says so.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".ccnn"}
)
#: Most frames a clip may have (in a file and when read), and the default frame rate.
MAX_FRAMES = 1 << 20
DEFAULT_FPS = Fraction(25)

# BT.601, limited range ("studio swing"), the matrix swscale and most players assume for
# standard-definition video without colour tags.
_RGB_TO_YUV = np.array(
    [
        [0.256788, 0.504129, 0.097906],
        [-0.148223, -0.290993, 0.439216],
        [0.439216, -0.367788, -0.071427],
    ]
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0])
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV)


@dataclass(frozen=True)
class YUVClip:
    """Frames as 8-bit YCbCr 4:2:0 planes: ``y`` (N, H, W), ``u`` and ``v`` (N, ceil(H/2), ceil(W/2))."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    fps: Fraction

    def __post_init__(self) -> None:
        n, h, w = self.y.shape
        chroma = (n, (h + 1) // 2, (w + 1) // 2)
        if self.u.shape != chroma or self.v.shape != chroma:
            raise ImageError(f"chroma planes {self.u.shape} do not match luma {self.y.shape} (4:2:0)")

    @property
    def frames(self) -> int:
        return self.y.shape[0]

    @property
    def height(self) -> int:
        return self.y.shape[1]

    @property
    def width(self) -> int:
        return self.y.shape[2]

    def head(self, count: int) -> YUVClip:
        """The first ``count`` frames."""
        return YUVClip(self.y[:count], self.u[:count], self.v[:count], self.fps)

    def yuv444(self) -> np.ndarray:
        """(N, H, W, 3) uint8: the chroma repeated 2x2, what the compressing network sees."""
        h, w = self.height, self.width
        u = np.repeat(np.repeat(self.u, 2, axis=1), 2, axis=2)[:, :h, :w]
        v = np.repeat(np.repeat(self.v, 2, axis=1), 2, axis=2)[:, :h, :w]
        return np.stack([self.y, u, v], axis=-1)


def clip_from_yuv444(frames: np.ndarray, fps: Fraction) -> YUVClip:
    """(N, H, W, 3) uint8 YCbCr 4:4:4 -> 4:2:0 by :func:`subsample_chroma`."""
    return YUVClip(
        np.ascontiguousarray(frames[..., 0]),
        subsample_chroma(frames[..., 1]),
        subsample_chroma(frames[..., 2]),
        fps,
    )


def rgb_to_yuv444(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) uint8 YCbCr, BT.601 limited range."""
    yuv = rgb.astype(np.float64) @ _RGB_TO_YUV.T + _YUV_OFFSET
    return np.clip(np.rint(yuv), 0, 255).astype(np.uint8)


def yuv444_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 YCbCr, BT.601 limited range -> (..., 3) uint8 RGB."""
    rgb = (yuv.astype(np.float64) - _YUV_OFFSET) @ _YUV_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def clip_to_rgb(clip: YUVClip) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB of a clip (chroma repeated 2x2, then BT.601)."""
    return yuv444_to_rgb(clip.yuv444())


def psnr_yuv(reference: YUVClip, decoded: YUVClip) -> dict[str, float]:
    """Mean per-frame PSNR of Y, U, V and PSNR-YUV ((6 Y + U + V) / 8 per frame), in dB.

    The convention of video comparisons (as in the JVET common test conditions): each plane's
    PSNR per frame, the weighted mean per frame, averaged over frames. Identical planes count
    as 100 dB.
    """

    def per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2))
        return np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)), 100.0)

    y, u, v = (per_frame(getattr(reference, p), getattr(decoded, p)) for p in "yuv")
    return {
        "psnr-y": float(y.mean()),
        "psnr-u": float(u.mean()),
        "psnr-v": float(v.mean()),
        "psnr-yuv": float(((6 * y + u + v) / 8).mean()),
    }


def require_av() -> ModuleType:
    """PyAV, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise ImageError(
            f"reading this video needs PyAV: {pip_hint('video')} (or pip install av); "
            "Y4M files and folders of PNG frames need nothing more"
        ) from None
    return av


def is_clip_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``ccnn compress`` should take ``path`` as a clip: a video file or a folder."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES | {Y4M_SUFFIX}


def read_clip(path: str | os.PathLike[str], max_frames: int | None = None) -> YUVClip:
    """A clip from a Y4M file, a video file (PyAV) or a folder of image frames (sorted by name)."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        return _read_folder(p, max_frames)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        raise ImageError(
            f"{p}: a still image, not a clip (compress it as an image, or give a folder of frames)"
        )
    if suffix == Y4M_SUFFIX:
        return read_y4m(p.read_bytes(), max_frames, name=str(p))
    return _read_av(p, max_frames)


def _limit(max_frames: int | None) -> int:
    return MAX_FRAMES if max_frames is None else min(max_frames, MAX_FRAMES)


def av_frame(av: ModuleType, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> object:
    """A PyAV ``yuv420p`` frame holding the planes ``y``, ``u``, ``v`` (rows padded as PyAV wants)."""
    height, width = y.shape
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v)):
        view = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
        view[:, : plane.width] = data
    return frame


def frame_planes(frame: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, U, V planes of a decoded PyAV frame, converted to ``yuv420p`` when it is not."""
    if frame.format.name != "yuv420p":  # type: ignore[attr-defined]
        frame = frame.reformat(format="yuv420p")  # type: ignore[attr-defined]
    arrays = []
    for plane in frame.planes:  # type: ignore[attr-defined]
        data = np.frombuffer(memoryview(plane), dtype=np.uint8)
        arrays.append(data.reshape(plane.height, plane.line_size)[:, : plane.width].copy())
    return arrays[0], arrays[1], arrays[2]


def ffv1_mkv_bytes(frames: Iterable[YUVClip], width: int, height: int, fps: Fraction) -> bytes:
    """A Matroska file of ``frames`` coded losslessly with FFV1 (4:2:0, 8-bit), through PyAV.

    The planes come back bit for bit when the file is read (:func:`read_clip`), and players and
    FFmpeg read it without knowing ccnn; it is several times smaller than the same clip as Y4M.
    """
    import io

    av = require_av()
    buffer = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1 << 16)
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"level": "3", "g": "1", "slicecrc": "1"}
        index = 0
        for clip in frames:
            for i in range(clip.frames):
                frame = av_frame(av, clip.y[i], clip.u[i], clip.v[i])
                frame.pts = index
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _read_av(path: Path, max_frames: int | None) -> YUVClip:
    av = require_av()
    ys: list[np.ndarray] = []
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    limit = _limit(max_frames)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageError(f"{path}: has no video stream")
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise ImageError(f"{path}: a still image, not a clip")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = Fraction(rate) if rate else DEFAULT_FPS
            for frame in container.decode(video=0):
                y, u, v = frame_planes(frame)
                ys.append(y)
                us.append(u)
                vs.append(v)
                if len(ys) >= limit:
                    break
    except ImageError:
        raise
    except Exception as exc:  # PyAV's errors: an unreadable, truncated or foreign file
        if not ys:
            raise ImageError(
                f"{path}: cannot read as video ({str(exc).splitlines()[0] if str(exc) else exc})"
            ) from None
        # a clip truncated mid-stream: keep the frames that decoded, as players do
    if not ys:
        raise ImageError(f"{path}: has no decodable video frames")
    return YUVClip(np.stack(ys), np.stack(us), np.stack(vs), fps)


def _read_folder(folder: Path, max_frames: int | None) -> YUVClip:
    from PIL import Image  # Pillow is a core dependency; imported here to keep start-up light

    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES - {".ccnn"})
    if not names:
        raise ImageError(f"{folder}: holds no image frames (PNG, JPEG, ...)")
    names = names[: _limit(max_frames)]
    frames = []
    for name in names:
        try:
            with Image.open(name) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except OSError as exc:
            raise ImageError(f"{name}: cannot read as an image ({exc})") from None
        if frames[-1].shape != frames[0].shape:
            raise ImageError(f"{name}: {frames[-1].shape[1]}x{frames[-1].shape[0]}, unlike the first frame")
    return clip_from_yuv444(rgb_to_yuv444(np.stack(frames)), DEFAULT_FPS)


# --- Y4M (YUV4MPEG2) --------------------------------------------------------------------------

_Y4M_MAGIC = b"YUV4MPEG2 "
_Y4M_FRAME = b"FRAME"


def read_y4m(data: bytes, max_frames: int | None = None, name: str = "y4m") -> YUVClip:
    """Frames of an 8-bit 4:2:0 (or 4:4:4, subsampled here) Y4M file.

    A file cut short inside a frame is refused: frames are the rate's denominator, and a
    half-frame has no meaning.
    """
    if not data.startswith(_Y4M_MAGIC):
        raise ImageError(f"{name}: not a Y4M file")
    end = data.find(b"\n")
    if end < 0:
        raise ImageError(f"{name}: truncated Y4M header")
    fields = data[len(_Y4M_MAGIC) : end].decode("ascii", "replace").split()
    width = height = 0
    fps = DEFAULT_FPS
    colour = "420jpeg"
    for item in fields:
        key, value = item[0], item[1:]
        try:
            if key == "W":
                width = int(value)
            elif key == "H":
                height = int(value)
            elif key == "F":
                num, den = value.split(":")
                fps = Fraction(int(num), int(den))
            elif key == "C":
                colour = value
        except (ValueError, ZeroDivisionError):
            raise ImageError(f"{name}: bad Y4M header field {item!r}") from None
    if not (1 <= width <= 1 << 15 and 1 <= height <= 1 << 15):
        raise ImageError(f"{name}: Y4M size {width}x{height} out of range")
    if not re.fullmatch(r"420(jpeg|paldv|mpeg2)?|444|mono", colour):
        raise ImageError(f"{name}: Y4M colour space C{colour} is not supported (8-bit 4:2:0, 4:4:4, mono)")
    cw, ch = (width + 1) // 2, (height + 1) // 2
    sizes = {"444": (width * height, width * height), "mono": (0, 0)}.get(colour, (cw * ch, cw * ch))
    frame_size = width * height + sum(sizes)
    ys, us, vs = [], [], []
    offset = end + 1
    limit = _limit(max_frames)
    while offset < len(data) and len(ys) < limit:
        if not data.startswith(_Y4M_FRAME, offset):
            raise ImageError(f"{name}: corrupt Y4M (no FRAME marker at byte {offset})")
        line_end = data.find(b"\n", offset)
        if line_end < 0 or line_end + 1 + frame_size > len(data):
            raise ImageError(f"{name}: truncated Y4M (frame {len(ys)} is incomplete)")
        raw = np.frombuffer(data, dtype=np.uint8, count=frame_size, offset=line_end + 1)
        y = raw[: width * height].reshape(height, width)
        if colour == "mono":
            u = v = np.full((ch, cw), 128, dtype=np.uint8)
        elif colour == "444":
            u = subsample_chroma(raw[width * height : 2 * width * height].reshape(height, width))
            v = subsample_chroma(raw[2 * width * height :].reshape(height, width))
        else:
            u = raw[width * height : width * height + cw * ch].reshape(ch, cw)
            v = raw[width * height + cw * ch :].reshape(ch, cw)
        ys.append(y)
        us.append(u)
        vs.append(v)
        offset = line_end + 1 + frame_size
    if not ys:
        raise ImageError(f"{name}: Y4M file has no frames")
    return YUVClip(np.stack(ys), np.stack(us), np.stack(vs), fps)


def y4m_bytes(frames: Iterable[YUVClip], width: int, height: int, fps: Fraction) -> Iterator[bytes]:
    """The Y4M file (4:2:0) of ``frames`` (clips of any length), header first, a frame at a time."""
    yield f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg\n".encode()
    for clip in frames:
        for i in range(clip.frames):
            yield _Y4M_FRAME + b"\n" + clip.y[i].tobytes() + clip.u[i].tobytes() + clip.v[i].tobytes()
