"""The work of one image, as a self-contained task that can run in any process or on any machine.

A :class:`Task` carries the input file's *bytes*, not its path, and :func:`run_task` returns
the output's bytes instead of writing them. Workers therefore need no access to IN_DIR or
OUT_DIR: the same task runs in the calling process, in a local process pool or as a Ray task
on another node, and only the process that owns the manifest writes files. That keeps outputs
atomic and the manifest consistent whatever happens to a worker.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .. import compress_image, decompress, read_info
from ..encoder.threads import torch_threads
from ..errors import CCNNError
from ..imageio import encode_image


@dataclass(frozen=True)
class Task:
    """One input to compress or decompress.

    ``threads`` is the number of torch threads the task trains with: it is part of what
    decides the output bytes on the CPU (the float reductions split differently), so it
    travels with the task rather than being left to whatever process runs it.
    """

    mode: str  # "compress" or "decompress"
    name: str  # input path relative to IN_DIR, for messages
    data: bytes
    output_name: str  # output path relative to OUT_DIR; its extension picks the image format
    threads: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # compress: ccnn.compress_image's keywords


@dataclass(frozen=True)
class Outcome:
    """What became of a task: the output's bytes, or an error message without the input's name."""

    data: bytes | None
    error: str = ""
    bpp: float | None = None
    psnr: float | None = None
    steps: int | None = None
    seconds: float = 0.0
    threads: int = 1
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None


def _message(exc: BaseException, *paths: Path) -> str:
    """``exc``'s message on one line, without the input's temporary path (the manifest names it)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    for path in paths:
        text = text.replace(f"{path}: ", "").replace(str(path), path.name)
    return text


def _compress(task: Task) -> Outcome:
    # load_image reads paths, and its messages name them: spill the bytes into a private file
    # named like the input so that format detection and messages are those of `ccnn compress`.
    with tempfile.TemporaryDirectory(prefix="ccnn-batch-") as tmp:
        path = Path(tmp) / PurePosixPath(task.name).name
        path.write_bytes(task.data)
        try:
            with torch_threads(task.threads):
                result = compress_image(path, **task.options)
        except CCNNError as exc:
            return Outcome(None, error=_message(exc, path))
    return Outcome(
        result.data,
        bpp=result.bpp,
        psnr=result.psnr,
        steps=result.steps,
        seconds=result.encode_seconds,
    )


def _decompress(task: Task) -> Outcome:
    start = time.perf_counter()
    pixels = decompress(task.data)
    info = read_info(task.data)
    data = encode_image(pixels, PurePosixPath(task.output_name), info.metadata)
    return Outcome(data, bpp=info.bpp, seconds=time.perf_counter() - start)


def run_task(task: Task) -> Outcome:
    """Run ``task`` and return its outcome; an error in this one input never raises.

    Only interrupts (KeyboardInterrupt, SystemExit) propagate: any other failure, including a
    bug that one odd image triggers, is reported in the outcome so that the batch goes on.
    """
    start = time.perf_counter()
    try:
        outcome = _compress(task) if task.mode == "compress" else _decompress(task)
    except CCNNError as exc:
        outcome = Outcome(None, error=_message(exc))
    except MemoryError:
        outcome = Outcome(None, error="out of memory")
    except Exception as exc:
        outcome = Outcome(None, error=f"unexpected error: {type(exc).__name__}: {_message(exc)}")
    return dataclasses.replace(
        outcome,
        seconds=outcome.seconds or time.perf_counter() - start,
        threads=task.threads,
        host=socket.gethostname(),
    )
