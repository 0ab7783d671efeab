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
    budget_seconds: float | None
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
    #: The steps the settings asked for; fewer were done when a time budget ran out first.
    planned_steps: int = 0
    #: The time budget ended training before its steps were done: the file then depends on the
    #: machine's speed and load.
    stopped_by_time: bool = False

    #: With a rate target: what was reached against it, for the user (else None), and whether
    #: it was reached.
    target: str | None = None
    target_reached: bool = True

    def time_budget_note(self) -> str | None:
        """A line for the user when the time budget, not the steps, ended training, else None."""
        if not self.stopped_by_time:
            return None
        return (
            f"the time budget ended training after {self.steps} of {self.planned_steps} steps, "
            "so another run may give a different file (drop --seconds for a reproducible one)"
        )


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
