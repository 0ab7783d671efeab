"""The benchmark harness: every codec on every image at every quality point, measured and cached.

A measurement is one encode and one decode of one image at one quality setting. It is cached in
``RESULTS_DIR/cache/<codec>.jsonl`` under a key that hashes the codec's settings and library
versions, the quality and the image's pixels, so an interrupted run continues where it stopped
and a rerun with one codec's settings changed redoes only that codec.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import read_info
from ..encoder.threads import torch_threads
from ..errors import CCNNError
from ..metrics import bpp as bits_per_pixel
from ..metrics import ms_ssim, ms_ssim_min_side, psnr
from .codecs import CcnnCodec, Codec, timed

IMAGE_SUFFIXES = (".png", ".bmp", ".ppm", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class BenchImage:
    """One image of the benchmark: its name, where it is, and a hash of its pixels."""

    name: str
    path: Path
    digest: str
    width: int
    height: int


def load_rgb(path: Path) -> np.ndarray:
    """The pixels of ``path`` as uint8 H x W x 3 (grey images are repeated to three channels)."""
    try:
        with Image.open(path) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    except (OSError, ValueError) as exc:
        raise CCNNError(f"{path}: cannot read image ({exc})") from None


def find_images(directory: Path) -> list[BenchImage]:
    """The images in ``directory`` (sorted by name), or the one image ``directory`` names."""
    if not directory.exists():
        raise CCNNError(f"{directory}: no such folder")
    if directory.is_file():
        paths = [directory]
    else:
        paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CCNNError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for path in paths:
        pixels = load_rgb(path)
        digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
        images.append(BenchImage(path.stem, path, digest, pixels.shape[1], pixels.shape[0]))
    return images


def measurement_key(codec: Codec, quality: float, image: BenchImage) -> str:
    """The cache key of one measurement: codec settings and versions, quality, image content."""
    payload = json.dumps({**codec.key(quality), "image": image.digest}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class Cache:
    """Finished measurements, one JSON line each in ``directory/<codec>.jsonl``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.records: dict[str, dict[str, Any]] = {}
        if directory.is_dir():
            for path in sorted(directory.glob("*.jsonl")):
                for line in path.read_text().splitlines():
                    try:
                        entry = json.loads(line)
                        self.records[entry["key"]] = entry["record"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by an interruption

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, codec: str, key: str, record: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "record": record}, sort_keys=True)
        with open(self.directory / f"{codec}.jsonl", "a") as stream:
            stream.write(line + "\n")
            stream.flush()
        self.records[key] = record


@lru_cache(maxsize=4)
def _pixels(path: str) -> np.ndarray:
    return load_rgb(Path(path))


def measure(codec: Codec, pixels: np.ndarray, quality: float) -> dict[str, Any]:
    """Encode and decode ``pixels`` once at ``quality``; sizes, quality and timings of the file."""
    extra: dict[str, Any] = {}
    if isinstance(codec, CcnnCodec):
        result, encode_seconds = timed(codec.encode_full, pixels, quality)
        data = result.data
        extra = {
            "latent_bytes": read_info(data).latent_bytes,
            "steps": result.steps,
            "train_seconds": result.train_seconds,
        }
    else:
        data, encode_seconds = timed(codec.encode, pixels, quality)
    decoded, decode_seconds = timed(codec.decode, data)
    if decoded.shape != pixels.shape:
        raise CCNNError(f"{codec.name} decoded {decoded.shape}, expected {pixels.shape}")
    height, width = pixels.shape[:2]
    value = psnr(pixels, decoded)
    return {
        "bytes": len(data),
        "bpp": bits_per_pixel(len(data), height, width),
        "psnr": value if math.isfinite(value) else 100.0,
        "ms_ssim": ms_ssim(pixels, decoded) if min(height, width) >= ms_ssim_min_side() else None,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "threads": codec.threads,
        **extra,
    }


@dataclass(frozen=True)
class Task:
    """One measurement to make."""

    codec: Codec
    image: BenchImage
    quality: float
    key: str


def _run_task(task: Task) -> dict[str, Any]:
    """Measure one task (in this process or a worker); errors come back as a record."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        with torch_threads(task.codec.threads):
            measured = measure(task.codec, _pixels(str(task.image.path)), task.quality)
        return {**measured, "load_average": load}
    except (CCNNError, ValueError, OSError, RuntimeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "threads": task.codec.threads}


@dataclass
class Outcome:
    """What a run measured: records per (codec, image, quality), and what it skipped."""

    codecs: list[Codec]
    images: list[BenchImage]
    records: dict[tuple[str, str, float], dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    measured: int = 0
    cached: int = 0

    def rows(self) -> Iterator[tuple[Codec, BenchImage, float, dict[str, Any]]]:
        for codec in self.codecs:
            for image in self.images:
                for quality in codec.qualities:
                    record = self.records.get((codec.name, image.name, quality))
                    if record is not None:
                        yield codec, image, quality, record


def plan(codecs: Iterable[Codec], images: list[BenchImage], cache: Cache) -> tuple[Outcome, list[Task]]:
    """Split the work into what the cache already holds and the tasks still to run."""
    runnable: list[Codec] = []
    skipped: dict[str, str] = {}
    for codec in codecs:
        reason = codec.missing()
        if reason is None:
            runnable.append(codec)
        else:
            skipped[codec.name] = reason
    outcome = Outcome(runnable, images, skipped=skipped)
    tasks = []
    # fast classical codecs first, so partial results arrive early; ccnn (training) last
    for codec in sorted(runnable, key=lambda c: isinstance(c, CcnnCodec)):
        for image in images:
            for quality in codec.qualities:
                key = measurement_key(codec, quality, image)
                record = cache.get(key)
                if record is not None and "error" not in record:
                    outcome.records[(codec.name, image.name, quality)] = record
                    outcome.cached += 1
                else:
                    tasks.append(Task(codec, image, quality, key))
    return outcome, tasks


#: Called with each task and its record as it finishes.
Finish = Callable[[Task, dict[str, Any]], None]


def _finish(
    task: Task,
    record: dict[str, Any],
    *,
    outcome: Outcome,
    cache: Cache,
    on_done: Finish | None,
) -> None:
    """Keep one measurement: cached unless it failed (so that a rerun tries it again)."""
    if "error" not in record:
        cache.put(task.codec.name, task.key, record)
    outcome.records[(task.codec.name, task.image.name, task.quality)] = record
    outcome.measured += 1
    if on_done is not None:
        on_done(task, record)


def _execute_here(tasks: list[Task], finish: Finish, on_start: Callable[[Task], None] | None) -> None:
    """Run the tasks one after the other in this process (no worker start-up)."""
    for task in tasks:
        if on_start is not None:
            on_start(task)
        finish(task, _run_task(task))


def _execute_on_pool(tasks: list[Task], jobs: int, finish: Finish) -> None:
    """Run the tasks on ``jobs`` fresh interpreters, at most two per worker in flight.

    Each result is kept as it arrives, so that an interrupt loses only the measurements in flight.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: dict[Future, Task] = {}
        queue = iter(tasks)
        try:
            for task in queue:
                pending[pool.submit(_run_task, task)] = task
                if len(pending) >= 2 * jobs:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    finish(task, future.result())
                    following = next(queue, None)
                    if following is not None:
                        pending[pool.submit(_run_task, following)] = following
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def execute(
    tasks: list[Task],
    outcome: Outcome,
    cache: Cache,
    jobs: int = 1,
    on_done: Callable[[Task, dict[str, Any]], None] | None = None,
    on_start: Callable[[Task], None] | None = None,
) -> Outcome:
    """Run ``tasks`` (in ``jobs`` worker processes when more than one), caching each result.

    ``on_start`` is called before each task when running in this process (``jobs`` = 1).
    """
    finish = partial(_finish, outcome=outcome, cache=cache, on_done=on_done)
    if jobs <= 1:
        _execute_here(tasks, finish, on_start)
    else:
        _execute_on_pool(tasks, jobs, finish)
    return outcome


def default_threads(jobs: int) -> int:
    """Threads each job may use so that ``jobs`` jobs fill the machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


@contextlib.contextmanager
def quiet_stderr_warnings() -> Iterator[None]:
    """Silence library warnings (e.g. PyTorch's) that would break the progress bar's line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """The tqdm bar over image x codec x point, on stderr."""
    return tqdm(
        total=total,
        initial=initial,
        desc="bench",
        unit="pt",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )
