"""ccnn: a per-image neural image codec (Compressing Convolutional Neural Network).

The public API::

    data = ccnn.compress("photo.png", preset="default", quality=4)   # -> bytes of a .ccnn file
    pixels = ccnn.decompress(data)                                   # -> uint8 H x W x C array
    info = ccnn.read_info(data)                                      # -> sizes, network, bpp

Images may be paths, bytes of an image file, binary file objects, PIL images or arrays; a
``.ccnn`` file may be a path, bytes or a binary file object (:mod:`ccnn.sources`).
Decoding (:func:`decompress`, :func:`read_info`) needs numpy and constriction only; torch is
imported when something is first encoded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from .encoder.result import EncodeResult, Progress, ProgressCallback, VideoEncodeResult
from .encoder.threads import require_torch, torch_threads
from .errors import (
    CCNNError,
    ConfigError,
    ConfigFileError,
    FormatError,
    ImageError,
    LimitError,
    OutputExistsError,
)
from .format import FORMAT_VERSION, FileInfo
from .format import decode as _decode
from .format import read_info as _read_info
from .format.video import VideoInfo, YUVFrame, decode_video, is_video
from .format.video import read_video_info as _read_video_info
from .imageio import ImageLike, read_image, split_alpha
from .metrics import block_mean_psnr
from .settings import (
    MAX_QUALITY,
    METADATA_DEFAULT,
    PRESETS,
    VIDEO_PRESETS,
    CodecConfig,
    EncoderOptions,
    Preset,
    TrainingOverrides,
    metadata_kinds,
    video_config,
)
from .sources import Source, read_source
from .videoio import YUVClip, clip_from_yuv444, read_clip, rgb_to_yuv444

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "MAX_QUALITY",
    "PRESETS",
    "VIDEO_PRESETS",
    "CCNNError",
    "CodecConfig",
    "ConfigError",
    "ConfigFileError",
    "EncodeResult",
    "EncoderOptions",
    "FileInfo",
    "FormatError",
    "ImageError",
    "LimitError",
    "OutputExistsError",
    "Preset",
    "Progress",
    "ProgressCallback",
    "TrainingOverrides",
    "VideoEncodeResult",
    "VideoInfo",
    "YUVClip",
    "YUVFrame",
    "compress",
    "compress_image",
    "compress_video",
    "decompress",
    "decompress_video",
    "is_video",
    "read_info",
    "read_video_info",
]


def compress_image(
    image: ImageLike,
    preset: Preset | str = Preset.DEFAULT,
    *,
    options: EncoderOptions | None = None,
    progress: ProgressCallback | None = None,
    device: str | None = None,
    threads: int | None = 1,
    metadata: str | Iterable[str] = METADATA_DEFAULT,
    **settings: Any,
) -> EncodeResult:
    """Compress ``image`` and return the bytes with measurements.

    ``image`` is a path, the bytes of an image file, a binary file object, a PIL image or a
    uint8 array. The settings are those of :class:`EncoderOptions` (``quality``, ``steps``,
    ``seconds``, ``seed``, ``ratio``, ``kernel``, ``slope``), given as keywords or as
    ``options`` (:meth:`EncoderOptions.from_toml_file` reads them from a settings file, with
    the training overrides of :class:`TrainingOverrides`). ``device`` and ``threads`` only say
    where training runs: ``threads`` sets torch's threads for this call, one by default (None
    keeps the process's setting). One thread gives the same bytes on every run; with more,
    torch's kernels may split float sums differently from run to run, and a seeded encode can
    differ in its last bits.
    ``metadata`` says which of the image's ICC profile, EXIF and XMP travel in the file
    (``"all"``, ``"none"``, or kinds such as ``"icc,exif"``); an alpha channel is always kept.
    """
    require_torch()
    from .encoder.encode import encode  # torch: imported on the first encode only

    _check_threads(threads)
    if options is None:
        options = EncoderOptions.create(preset, **settings)
    elif settings:
        raise ConfigError("give the settings either as options= or as keywords, not both")
    loaded = read_image(image, metadata_kinds(metadata))
    pixels, alpha = split_alpha(loaded.pixels)
    config = options.resolve(
        channels=pixels.shape[2], pixels=pixels.shape[0] * pixels.shape[1], block_psnr=block_mean_psnr(pixels)
    )
    try:
        with torch_threads(threads) if threads is not None else contextlib.nullcontext():
            return encode(
                pixels, config, progress=progress, device=device, alpha=alpha, metadata=loaded.metadata
            )
    except MemoryError:
        raise CCNNError("out of memory while encoding") from None
    except RuntimeError as exc:  # torch reports a failed allocation as a RuntimeError
        if "allocate" in str(exc) or "out of memory" in str(exc):
            raise CCNNError(f"out of memory while encoding ({str(exc).splitlines()[0]})") from None
        raise


def compress(image: ImageLike, preset: Preset | str = Preset.DEFAULT, **options: Any) -> bytes:
    """Compress ``image`` into the bytes of a .ccnn file; options as in :func:`compress_image`."""
    return compress_image(image, preset, **options).data


def decompress(source: Source, *, threads: int | None = None) -> np.ndarray:
    """Decode a .ccnn file into a uint8 array of shape H x W x C.

    C is 1 (gray), 3 (RGB), or 2 and 4 when the image has alpha (its last channel). The
    metadata (ICC profile, EXIF, XMP) is in :func:`read_info`'s ``metadata``.
    ``source`` is the file's bytes, a binary file object or a path. ``threads`` caps the BLAS
    threads of the restoring network's matrix products for this call (None keeps BLAS's own
    setting, usually every core). The pixels are the same at any count: the products sum
    integers exactly in float64. One thread is often the fastest on a busy machine.
    """
    _check_threads(threads)
    data = read_source(source)
    try:
        with _blas_threads(threads):
            return _decode(data)
    except MemoryError:
        raise CCNNError("out of memory while decoding") from None


def read_info(source: Source) -> FileInfo:
    """Header, network and byte breakdown of a .ccnn file (bytes, file object or path), not decoded."""
    return _read_info(read_source(source))


def _check_threads(threads: int | None) -> None:
    """A thread count is a positive int (a bool or a float is refused, not rounded)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, not {threads!r}")


@contextlib.contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    """Inside the block, BLAS (numpy's matrix products) uses at most ``threads`` threads."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits  # only when asked: it inspects the loaded libraries

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


ClipLike = str | os.PathLike | YUVClip | np.ndarray


def load_clip(clip: ClipLike, max_frames: int | None = None, fps: Fraction | int | None = None) -> YUVClip:
    """A :class:`YUVClip` from a path (video file, Y4M, folder of frames), a clip or RGB frames.

    An array is RGB frames, uint8 (N, H, W, 3), converted with BT.601 to 4:2:0; ``fps``
    (default 25) applies to arrays only.
    """
    if isinstance(clip, YUVClip):
        return clip.head(max_frames) if max_frames else clip
    if isinstance(clip, np.ndarray):
        if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1:
            raise ImageError(f"frames must be uint8 N x H x W x 3 (RGB), not {clip.dtype} {clip.shape}")
        frames = clip[:max_frames] if max_frames else clip
        return clip_from_yuv444(rgb_to_yuv444(frames), Fraction(fps or 25))
    return read_clip(clip, max_frames)


def compress_video(
    clip: ClipLike,
    preset: str = "default",
    *,
    quality: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    intra_period: int | None = None,
    prediction: str | None = None,
    max_frames: int | None = None,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> VideoEncodeResult:
    """Compress a clip into a version-6 .ccnn file; the result holds its bytes and measurements.

    ``clip`` is a video file (read with PyAV, the ``[video]`` extra), a Y4M file, a folder of
    image frames, a :class:`YUVClip` or RGB frames (N, H, W, 3). Training stops after the
    preset's step count (``steps`` overrides it), so a seed gives the same bytes on any load.
    ``prediction`` is ``"latent"`` (the presets': each latent a difference from the previous
    one) or ``"pixels"`` (each frame a residual on the previous decoded frame); see
    :class:`ccnn.settings.VideoConfig`.
    """
    require_torch()
    config = video_config(
        preset, quality=quality, steps=steps, seed=seed, intra_period=intra_period, prediction=prediction
    )
    from .encoder.video import encode_video  # torch: imported on the first encode only

    loaded = load_clip(clip, max_frames)
    try:
        return encode_video(loaded, config, progress=progress, device=device)
    except MemoryError:
        raise CCNNError("out of memory while encoding") from None


def decompress_video(data: bytes | bytearray | memoryview, start: int = 0) -> Iterator[YUVFrame]:
    """The frames of a clip file from frame ``start`` on, as :class:`YUVFrame` (Y, U, V planes, 4:2:0).

    The file is checked whole before the first frame is yielded; decoding starts at the intra
    frame before ``start``. ``ccnn.videoio.yuv444_to_rgb`` turns a frame into RGB.
    """
    return decode_video(bytes(data), start)


def read_video_info(data: bytes | bytearray | memoryview) -> VideoInfo:
    """Frames, frame rate, network and bytes per frame type of a clip file, without decoding it."""
    return _read_video_info(bytes(data))
