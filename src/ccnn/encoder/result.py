"""What encoding reports: progress events while it trains, and the result at the end.

Kept apart from the torch code so that the command line and the public API can name these
types without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Progress:
    """One progress event: where training is, and the last whole-image measurement."""

    step: int
    steps: int
    seconds: float
    budget_seconds: float
    psnr: float
    bpp: float
    phase: str


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class EncodeResult:
    """A coded image and what it cost: the bytes, the decoded pixels and the measurements."""

    data: bytes
    decoded: np.ndarray
    psnr: float
    bpp: float
    steps: int
    train_seconds: float
    encode_seconds: float


@dataclass(frozen=True)
class VideoEncodeResult:
    """A coded clip and what it cost: the bytes, the decoded clip, PSNR-YUV and rates.

    ``decoded`` is a :class:`ccnn.videoio.YUVClip`; ``psnr`` holds ``psnr-y``, ``psnr-u``,
    ``psnr-v`` and ``psnr-yuv`` (6:1:1) in dB, per frame averaged; ``frame_kinds`` the type of
    each frame (0 intra, 1 predicted) and ``frame_bytes`` its latent's bytes.
    """

    data: bytes
    decoded: object
    psnr: dict[str, float]
    bpp: float
    kbps: float
    frame_bytes: tuple[int, ...]
    frame_kinds: tuple[int, ...]
    steps: int
    train_seconds: float
    encode_seconds: float
