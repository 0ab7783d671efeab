"""ccnn: a per-image neural image codec (Compressing Convolutional Neural Network).

The public API::

    data = ccnn.compress("photo.png", preset="default", quality=4)   # -> bytes of a .ccnn file
    pixels = ccnn.decompress(data)                                   # -> uint8 H x W x C array
    info = ccnn.read_info(data)                                      # -> sizes, network, bpp

Decoding (:func:`decompress`, :func:`read_info`) needs numpy and constriction only; torch is
imported when something is first encoded.
"""

from __future__ import annotations

import numpy as np

from .encoder.result import EncodeResult, Progress, ProgressCallback
from .errors import CCNNError, ConfigError, FormatError, ImageError, LimitError, OutputExistsError
from .format import FORMAT_VERSION, FileInfo
from .format import decode as _decode
from .format import read_info as _read_info
from .imageio import ImageLike, load_image
from .metrics import block_mean_psnr
from .settings import MAX_QUALITY, PRESETS, CodecConfig, make_config

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "MAX_QUALITY",
    "PRESETS",
    "CCNNError",
    "CodecConfig",
    "ConfigError",
    "EncodeResult",
    "FileInfo",
    "FormatError",
    "ImageError",
    "LimitError",
    "OutputExistsError",
    "Progress",
    "ProgressCallback",
    "compress",
    "compress_image",
    "decompress",
    "make_config",
    "read_info",
]


def compress_image(
    image: ImageLike,
    preset: str = "default",
    *,
    quality: int | None = None,
    steps: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    ratio: int | None = None,
    kernel: int | None = None,
    slope: float | None = None,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> EncodeResult:
    """Compress ``image`` (a path, a PIL image or a uint8 array) and return the bytes with measurements."""
    from .encoder.encode import encode  # torch: imported on the first encode only

    pixels = load_image(image)
    config = make_config(
        preset,
        channels=pixels.shape[2],
        pixels=pixels.shape[0] * pixels.shape[1],
        block_psnr=block_mean_psnr(pixels),
        quality=quality,
        steps=steps,
        seconds=seconds,
        seed=seed,
        ratio=ratio,
        kernel=kernel,
        slope=slope,
    )
    return encode(pixels, config, progress=progress, device=device)


def compress(image: ImageLike, preset: str = "default", **options) -> bytes:
    """Compress ``image`` into the bytes of a .ccnn file; options as in :func:`compress_image`."""
    return compress_image(image, preset, **options).data


def decompress(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode the bytes of a .ccnn file into a uint8 array of shape H x W x C (C is 1 or 3)."""
    return _decode(bytes(data))


def read_info(data: bytes | bytearray | memoryview) -> FileInfo:
    """Header, network and byte breakdown of a .ccnn file, without decoding it."""
    return _read_info(bytes(data))
