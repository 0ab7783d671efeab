"""One trial's work, as a self-contained task: encode every image at every quality level.

A :class:`TrialTask` carries the pixels and the encoder options, and :func:`run_trial` returns
the measured points, so that the same trial runs in the tuning process, in a local worker
process or as a Ray task on another node (through :mod:`ccnn.batch.runners`), while only the
tuning process talks to the study. Nothing here imports Optuna.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import compress_image
from ..errors import CCNNError
from ..settings import EncoderOptions


@dataclass(frozen=True)
class TuneImage:
    """One image of the search: its name (for reports) and its RGB pixels."""

    name: str
    pixels: np.ndarray


@dataclass(frozen=True)
class TrialTask:
    """One trial: ``options`` on every image at every quality of ``qualities``.

    ``qualities`` is ``(None,)`` for the paper preset, whose rate is its ratio (a searched
    setting): one point per image. ``seconds`` caps each encode's training on top of its
    steps (``--budget-seconds``); ``threads`` and ``device`` say where training runs (the
    threads are part of what decides the bytes on the CPU, so they travel with the task).
    """

    number: int
    options: EncoderOptions
    images: tuple[TuneImage, ...]
    qualities: tuple[int | None, ...]
    seconds: float | None = None
    threads: int = 1
    device: str | None = None

    @property
    def encodes(self) -> int:
        return len(self.images) * len(self.qualities)


@dataclass(frozen=True)
class Point:
    """One encode's measurements: the whole file's size and the decoded file's PSNR."""

    image: str
    quality: int | None
    bytes: int
    bpp: float
    psnr: float
    seconds: float
    steps: int
    stopped_by_time: bool


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial measured, or why it could not (``error``, one line)."""

    points: tuple[Point, ...] = ()
    error: str = ""
    host: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def failed_trial(message: str) -> TrialOutcome:
    """The outcome of a trial whose worker died or that Ray gave up on."""
    return TrialOutcome(error=message)


def on_cpu(task: TrialTask) -> TrialTask:
    """``task`` pinned to the CPU where Ray gives it no GPU (its bytes are then a CPU run's)."""
    return task if task.device == "cpu" else dataclasses.replace(task, device="cpu")


#: Called before each encode of a trial run in this process: (image, quality, index, count).
EncodeStart = Callable[[str, "int | None", int, int], None]


def run_trial(task: TrialTask, on_encode: EncodeStart | None = None) -> TrialOutcome:
    """Encode every image of ``task`` at every quality; an error ends the trial, never the search.

    Only interrupts (KeyboardInterrupt, SystemExit) propagate: settings the encoder refuses,
    an image too large for a network, or a bug one combination triggers all come back as the
    outcome's ``error``, so that the study records the trial as failed and goes on.
    """
    points = []
    index = 0
    try:
        for image in task.images:
            for quality in task.qualities:
                if on_encode is not None:
                    on_encode(image.name, quality, index, task.encodes)
                index += 1
                options = dataclasses.replace(task.options, quality=quality, seconds=task.seconds)
                start = time.perf_counter()
                result = compress_image(
                    image.pixels, options=options, device=task.device, threads=task.threads
                )
                points.append(
                    Point(
                        image=image.name,
                        quality=quality,
                        bytes=len(result.data),
                        bpp=result.bpp,
                        psnr=result.psnr,
                        seconds=time.perf_counter() - start,
                        steps=result.steps,
                        stopped_by_time=result.stopped_by_time,
                    )
                )
    except CCNNError as exc:
        return TrialOutcome(tuple(points), error=_first_line(exc), host=socket.gethostname())
    except MemoryError:
        return TrialOutcome(tuple(points), error="out of memory", host=socket.gethostname())
    except Exception as exc:
        message = f"unexpected error: {type(exc).__name__}: {_first_line(exc)}"
        return TrialOutcome(tuple(points), error=message, host=socket.gethostname())
    return TrialOutcome(tuple(points), host=socket.gethostname())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
