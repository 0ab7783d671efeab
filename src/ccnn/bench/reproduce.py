"""``ccnn reproduce``: the poster's experiments on kodim08, re-run and checked claim by claim.

(a) PSNR against data size for the poster's network (``--preset paper``, 10x10 filters) over a
λ sweep, against JPEG; sizes counted as the poster did (the latent only) and honestly (the whole
.ccnn file, with the restoring network's weights). (b) The same with 35x35 filters. (c) Learning
speed: PSNR after training budgets from seconds to minutes, both filter sizes. (d) A crop of the
original, CCNN and JPEG at the same file size. (e) ``poster.md`` with the plots and a verdict on
each claim, computed from the measurements.

Every training is cached (its record and its .ccnn file) under a key that hashes the codec's
code and configuration, the budget and the image, so an interrupted run continues.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import EncoderOptions, Preset, compress_image, decompress, read_info
from ..encoder.threads import set_torch_threads, torch_thread_count
from ..errors import CCNNError
from ..files import write_atomic
from ..imageio import encode_image
from ..metrics import psnr
from .bdrate import bd_psnr, bd_rate, quality_at_rate
from .codecs import CcnnCodec, JpegCodec
from .report import RunInfo
from .run import load_rgb
from .sheet import side_by_side

DEFAULT_RATIOS: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16)
DEFAULT_SECONDS = 120.0
DEFAULT_CURVE_SECONDS: tuple[float, ...] = (15, 30, 60, 120, 300, 600)
KERNELS: tuple[int, int] = (10, 35)
CURVE_RATIO = 4
CROP_RATIO = 8
#: Training stops on time, not steps: the poster trained for minutes.
UNLIMITED_STEPS = 10_000_000
#: "Acceptable": within this many dB of the PSNR of the longest training.
ACCEPTABLE_DB = 0.5
#: The poster's claimed extremes of the compression ratio.
HIGH_RATIO, LOW_RATIO = 10.0, 2.5


@dataclass(frozen=True)
class Training:
    """One training of the poster's network: filter size, λ and time budget."""

    kernel: int
    ratio: int
    seconds: float

    @property
    def label(self) -> str:
        return f"k{self.kernel} λ{self.ratio} {self.seconds:g}s"


class TrainingCache:
    """Finished trainings: ``<key>.json`` (measurements) and ``<key>.ccnn`` (the file) in a folder.

    With ``any_code`` a training missing under its exact key is looked up by what it trained
    (image, filter size, λ, budget) among records made by other versions of the encoder's code.
    """

    def __init__(self, directory: Path, codec: CcnnCodec, image_digest: str, any_code: bool = False) -> None:
        self.directory = directory
        self.codec = codec
        self.image_digest = image_digest
        self.any_code = any_code
        self.found: dict[Training, str] = {}

    def codec_for(self, training: Training) -> CcnnCodec:
        encoder = dataclasses.replace(self.codec.encoder, kernel=training.kernel, seconds=training.seconds)
        return dataclasses.replace(self.codec, encoder=encoder)

    def key(self, training: Training) -> str:
        payload = {**self.codec_for(training).key(training.ratio), "image": self.image_digest}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def get(self, training: Training) -> dict[str, Any] | None:
        record = self._read(self.directory / f"{self.key(training)}.json")
        if record is not None or not self.any_code:
            return record
        matches = []
        for path in self.directory.glob("*.json"):
            other = self._read(path)
            if (
                other is not None
                and other.get("image", self.image_digest) == self.image_digest
                and (other.get("kernel"), other.get("ratio"), other.get("seconds"))
                == (training.kernel, training.ratio, training.seconds)
            ):
                matches.append((path.stat().st_mtime, path.stem, other))
        if not matches:
            return None
        _, key, record = max(matches, key=lambda m: m[0])
        self.found[training] = key
        return record

    def data(self, training: Training) -> bytes | None:
        path = self.directory / f"{self.found.get(training) or self.key(training)}.ccnn"
        return path.read_bytes() if path.exists() else None

    def put(self, training: Training, record: dict[str, Any], data: bytes | None) -> dict[str, Any]:
        """Store a training; returns its record with the image and code hashes added."""
        record = {**record, "image": self.image_digest, "code": self.codec.fingerprint}
        key = self.key(training)
        if data is not None:
            write_atomic(self.directory / f"{key}.ccnn", data, force=True)
        write_atomic(self.directory / f"{key}.json", json.dumps(record, indent=1).encode(), force=True)
        return record


def train_one(
    codec: CcnnCodec, pixels: np.ndarray, training: Training, on_progress: Callable[[Any], None] | None = None
) -> tuple[dict[str, Any], bytes | None]:
    """Train, encode and decode once; the measurements (or the error) and the file's bytes."""
    height, width = pixels.shape[:2]
    start = time.perf_counter()
    try:
        options = codec.point(training.ratio)
        result = compress_image(pixels, options=options, device=codec.device, progress=on_progress)
    except CCNNError as exc:
        return {
            **dataclasses.asdict(training),
            "error": f"{type(exc).__name__}: {exc}",
            "wall_seconds": time.perf_counter() - start,
        }, None
    decoded = decompress(result.data)
    info = read_info(result.data)
    latent_raw = (
        info.spec.latent_channels * math.ceil(height / training.ratio) * math.ceil(width / training.ratio)
    )
    return {
        **dataclasses.asdict(training),
        "bytes": len(result.data),
        "latent_bytes": info.latent_bytes,
        "latent_raw_bytes": latent_raw,
        "weight_bytes": info.weight_bytes,
        "header_bytes": info.header_bytes,
        "entropy_bytes": info.entropy_bytes,
        "decoder_parameters": info.decoder_parameters,
        "psnr": psnr(pixels, decoded),
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "encode_seconds": result.encode_seconds,
    }, result.data


@dataclass(frozen=True)
class JpegCurve:
    """JPEG on the same image, every quality from 1 to 100."""

    quality: list[int]
    bytes: list[int]
    psnr: list[float]

    def psnr_at(self, size: float) -> float | None:
        return quality_at_rate(self.bytes, self.psnr, size)


def jpeg_curve(pixels: np.ndarray) -> tuple[JpegCurve, JpegCodec]:
    codec = JpegCodec(qualities=tuple(range(1, 101)))
    sizes, values = [], []
    for quality in codec.qualities:
        data = codec.encode(pixels, quality)
        sizes.append(len(data))
        values.append(psnr(pixels, codec.decode(data)))
    return JpegCurve(list(codec.qualities), sizes, values), codec


# ----------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class Comparison:
    """A CCNN point against JPEG at the same size."""

    ratio_setting: int
    size: int
    compression: float
    psnr: float
    jpeg_psnr: float | None
    outcome: str  # "ccnn", "jpeg" or "n/a"


def compare_with_jpeg(
    points: list[dict[str, Any]], size_field: str, jpeg: JpegCurve, raw: int
) -> list[Comparison]:
    """Each CCNN point against JPEG's PSNR at the same size (PCHIP between JPEG qualities).

    Outside JPEG's size range: a file larger than JPEG's largest wins only with a higher PSNR
    than JPEG's best; a file smaller than JPEG's smallest is "n/a" (no JPEG to compare with).
    """
    result = []
    for point in points:
        size = point[size_field]
        reference = jpeg.psnr_at(size)
        if reference is not None:
            outcome = "ccnn" if point["psnr"] > reference else "jpeg"
        elif size > max(jpeg.bytes):
            reference = max(jpeg.psnr)
            outcome = "ccnn" if point["psnr"] > reference else "jpeg"
        else:
            outcome = "n/a"
        result.append(Comparison(point["ratio"], size, raw / size, point["psnr"], reference, outcome))
    return result


def verdict_extremes(comparisons: list[Comparison]) -> tuple[str, str]:
    """The claim "CCNN beats JPEG at compression ratio > 10 or < 2.5", judged on ``comparisons``."""
    high = [c for c in comparisons if c.compression > HIGH_RATIO and c.outcome != "n/a"]
    low = [c for c in comparisons if c.compression < LOW_RATIO and c.outcome != "n/a"]
    middle = [c for c in comparisons if LOW_RATIO <= c.compression <= HIGH_RATIO and c.outcome != "n/a"]

    def wins(group: list[Comparison]) -> int:
        return sum(c.outcome == "ccnn" for c in group)

    detail = (
        f"CCNN wins {wins(high)}/{len(high)} points above ratio {HIGH_RATIO:g}, "
        f"{wins(low)}/{len(low)} below {LOW_RATIO:g}, {wins(middle)}/{len(middle)} in between"
    )
    if not high and not low:
        return "untested", detail + " (no measured point in either extreme)"
    all_high = bool(high) and wins(high) == len(high)
    all_low = bool(low) and wins(low) == len(low)
    if all_high and all_low:
        return "supported", detail
    if wins(high) + wins(low) > 0:
        return "partly supported", detail
    return "not supported", detail


def time_to_reach(budgets: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The smallest training budget (log-interpolated) at which the PSNR first reaches ``target``."""
    for i, (budget, value) in enumerate(zip(budgets, values)):
        if value >= target:
            if i == 0:
                return float(budget)
            b0, v0 = budgets[i - 1], values[i - 1]
            fraction = (target - v0) / (value - v0) if value != v0 else 1.0
            return float(math.exp(math.log(b0) + fraction * (math.log(budget) - math.log(b0))))
    return None


# ----------------------------------------------------------------------------------------------
# plots


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(figure: Any, path: Path) -> None:
    plt = _plt()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue(), force=True)


def _shade_extremes(axis: Any, raw: int) -> None:
    axis.axvspan(1e-9, raw / HIGH_RATIO / 1000, color="tab:green", alpha=0.07)
    axis.axvspan(raw / LOW_RATIO / 1000, 1e9, color="tab:green", alpha=0.07)
    for ratio in (HIGH_RATIO, LOW_RATIO):
        axis.axvline(raw / ratio / 1000, color="tab:green", alpha=0.5, linestyle=":", linewidth=1)


def plot_sizes(
    series: list[tuple[str, list[dict[str, Any]], str, dict[str, Any]]], jpeg: JpegCurve, raw: int, path: Path
) -> bool:
    """PSNR against data size (KB, log scale) for CCNN series and JPEG."""
    plt = _plt()
    if plt is None:
        return False
    figure, axis = plt.subplots(figsize=(8.5, 5.2))
    axis.plot(
        np.array(jpeg.bytes) / 1000, jpeg.psnr, color="black", linewidth=1.4, label="JPEG (q 1-100, 4:2:0)"
    )
    sizes = list(jpeg.bytes)
    for label, points, field, style in series:
        ok = sorted((p for p in points if "error" not in p), key=lambda p: p[field])
        if ok:
            sizes += [p[field] for p in ok]
            axis.plot(
                [p[field] / 1000 for p in ok], [p["psnr"] for p in ok], marker="o", label=label, **style
            )
    _shade_extremes(axis, raw)
    axis.set_xscale("log")
    axis.set_xlim(min(sizes) / 1000 * 0.8, max(max(sizes) * 1.25, raw / 1.8) / 1000)
    axis.set_xlabel("data size (KB, log scale); shaded: compression ratio > 10 or < 2.5")
    axis.set_ylabel("PSNR-RGB (dB)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    _save(figure, path)
    return True


def plot_learning(curves: dict[int, list[dict[str, Any]]], path: Path) -> bool:
    """PSNR against training budget for each filter size."""
    plt = _plt()
    if plt is None:
        return False
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for kernel, points in curves.items():
        ok = [p for p in points if "error" not in p]
        axis.plot(
            [p["train_seconds"] for p in ok],
            [p["psnr"] for p in ok],
            marker="o",
            label=f"{kernel}x{kernel} filters",
        )
    axis.set_xscale("log")
    budgets = sorted({p["seconds"] for points in curves.values() for p in points})
    axis.set_xticks(budgets, [f"{b:g}" for b in budgets])
    axis.minorticks_off()
    axis.set_xlabel("training time (s, log scale), one full training per point")
    axis.set_ylabel("PSNR-RGB (dB)")
    axis.set_title(f"λ = {CURVE_RATIO}")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    _save(figure, path)
    return True


# ----------------------------------------------------------------------------------------------
# the command


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _f(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


@dataclass
class Measurements:
    """Everything the poster's experiments measured on one image."""

    source: Path
    pixels: np.ndarray
    seconds: float
    budgets: list[float]
    ratios: list[int]
    threads: int
    sweeps: dict[int, list[dict[str, Any]]]
    curves: dict[int, list[dict[str, Any]]]
    jpeg: JpegCurve
    code: str = ""
    #: Whether some trainings were found by what they trained rather than by their exact key.
    fallback: bool = False

    @property
    def raw(self) -> int:
        """Bytes of the image as 24-bit RGB."""
        return int(self.pixels.shape[0] * self.pixels.shape[1] * 3)


#: How sizes are counted in the claims: label -> field of a training record.
COUNTS: dict[str, str] = {"latent only (as the poster)": "latent_bytes", "whole file": "bytes"}


def _ok(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if "error" not in p]


def _valid(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trained points whose filter covers the stride (λ <= k): the others leave pixels unwritten."""
    return [p for p in _ok(points) if p["ratio"] <= p["kernel"]]


def _gap_note(m: Measurements) -> str:
    gaps = sorted({p["ratio"] for k in KERNELS for p in _ok(m.sweeps[k]) if p["ratio"] > p["kernel"]})
    return f" (λ = {', '.join(map(str, gaps))} with 10x10 filters left out: see (a))" if gaps else ""


def _bd_10_vs_35(m: Measurements, field: str) -> tuple[float | None, float | None]:
    a, b = _valid(m.sweeps[35]), _valid(m.sweeps[10])
    if len(a) < 2 or len(b) < 2:
        return None, None
    args = ([p[field] for p in a], [p["psnr"] for p in a], [p[field] for p in b], [p["psnr"] for p in b])
    return bd_rate(*args), bd_psnr(*args)


#: A claim of the poster, our verdict on it, and the numbers behind the verdict.
Claim = tuple[str, str, str]


def _extremes_claims(m: Measurements) -> list[Claim]:
    """The claim "beats JPEG at the extremes", once per way of counting sizes.

    The poster counted the latent only; the whole file is what a user stores, so both are judged.
    """
    claims = []
    for name, field in COUNTS.items():
        verdict, detail = verdict_extremes(compare_with_jpeg(_valid(m.sweeps[10]), field, m.jpeg, m.raw))
        detail += _gap_note(m)
        claim = f"Beats JPEG at compression ratio > {HIGH_RATIO:g} or < {LOW_RATIO:g} — sizes counted {name}"
        claims.append((claim, verdict, detail))
    return claims


def _filter_size_claim(m: Measurements) -> Claim:
    """The claim "10x10 beats 35x35": PSNR at each λ both trained validly, BD-PSNR over the sweep.

    Points whose filter is smaller than the stride are left out: they measure unwritten pixels.
    """
    claim = "Smaller (10x10) filters are better overall than 35x35"
    valid = {id(p) for k in KERNELS for p in _valid(m.sweeps[k])}
    pairs = [(a, b) for a, b in zip(m.sweeps[10], m.sweeps[35]) if id(a) in valid and id(b) in valid]
    if not pairs:
        return claim, "untested", "no λ with both filter sizes trained"
    better = sum(a["psnr"] > b["psnr"] for a, b in pairs)
    bd = {name: _bd_10_vs_35(m, field) for name, field in COUNTS.items()}
    whole = bd["whole file"][1]
    if better == len(pairs) and (whole is None or whole > 0):
        verdict = "supported"
    elif better > len(pairs) / 2 or (whole is not None and whole > 0):
        verdict = "partly supported"
    else:
        verdict = "not supported"
    detail = (
        f"10x10 has the higher PSNR at {better}/{len(pairs)} λ values{_gap_note(m)}; BD-PSNR of 10x10 "
        "against 35x35: "
        + ", ".join(f"{_f(v[1], '+.2f')} dB ({n})" for n, v in bd.items())
        + " (— where the two curves' size ranges do not overlap)"
    )
    return claim, verdict, detail


def _reach(points: list[dict[str, Any]], target: float) -> float | None:
    """The training seconds after which ``points`` (one per budget) first reach ``target`` dB."""
    return time_to_reach([p["train_seconds"] for p in points], [p["psnr"] for p in points], target)


def _learning_speed_claim(m: Measurements, learn: dict[int, list[dict[str, Any]]]) -> Claim:
    """The claim "smaller filters learn faster": the time each size needs to near the weaker's best.

    The target is the weaker filter's best so that both sizes can reach it.
    """
    claim = "Models with smaller filters learn faster"
    if not all(learn[k] for k in KERNELS):
        return claim, "untested", "the learning-speed runs failed"
    target = min(max(p["psnr"] for p in learn[k]) for k in KERNELS) - ACCEPTABLE_DB
    t10, t35 = _reach(learn[10], target), _reach(learn[35], target)
    if t10 is None or t35 is None:
        verdict, detail = "inconclusive", f"a filter size never reached {target:.2f} dB"
    else:
        verdict = "supported" if t10 < 0.8 * t35 else "not supported" if t10 > 1.25 * t35 else "inconclusive"
        detail = (
            f"time to reach {target:.2f} dB (the weaker filter's best minus {ACCEPTABLE_DB} dB): "
            f"10x10 {t10:.0f} s, 35x35 {t35:.0f} s"
        )
    gaps = [
        a["psnr"] - b["psnr"]
        for a, b in zip(m.curves[10], m.curves[35])
        if "error" not in a and "error" not in b
    ]
    detail += "; PSNR of 10x10 minus 35x35 per budget: " + ", ".join(f"{d:+.2f} dB" for d in gaps)
    return claim, verdict, detail


def _near_best(points: list[dict[str, Any]]) -> tuple[float, float | None]:
    """The best PSNR of ``points`` and the training seconds after which they come within
    :data:`ACCEPTABLE_DB` of it: "acceptable" is measured against the image's own best."""
    best = max(p["psnr"] for p in points)
    return best, _reach(points, best - ACCEPTABLE_DB)


def _training_time_detail(m: Measurements, learn: dict[int, list[dict[str, Any]]]) -> str:
    """How long each filter size needs to come near its best, and from which budget 10x10 beats
    JPEG at the same whole-file size (``learn[10]`` must not be empty)."""
    longest = learn[10][-1]["seconds"]
    best, needed = _near_best(learn[10])
    beats = [
        p["seconds"] for p in learn[10] if (ref := m.jpeg.psnr_at(p["bytes"])) is not None and p["psnr"] > ref
    ]
    detail = (
        f"10x10, λ={CURVE_RATIO}: within {ACCEPTABLE_DB} dB of the {longest:g} s result ({best:.2f} dB) "
        f"after {_f(needed, '.0f')} s of training; "
        + (f"beats JPEG at the same whole-file size from the {min(beats):g} s budget on" if beats
           else "never beats JPEG at the same whole-file size at this λ")
    )  # fmt: skip
    if learn[35]:
        best35, needed35 = _near_best(learn[35])
        detail += (
            f"; 35x35: within {ACCEPTABLE_DB} dB of its {learn[35][-1]['seconds']:g} s result "
            f"({best35:.2f} dB) after {_f(needed35, '.0f')} s"
        )
    return detail


def _training_time_claim(m: Measurements, learn: dict[int, list[dict[str, Any]]]) -> Claim:
    """The claim "about 10 minutes is needed": untested unless the longest 10x10 budget is 10 minutes
    or more, refuted when 10x10 comes within :data:`ACCEPTABLE_DB` of its best in under 5."""
    claim = "About 10 minutes of training is needed for acceptable results"
    if not learn[10]:
        return claim, "untested", "the learning-speed runs failed"
    longest = learn[10][-1]["seconds"]
    _, needed = _near_best(learn[10])
    detail = _training_time_detail(m, learn)
    if longest < 600:
        return claim, "untested", detail + f"; the longest training here was {longest:g} s, under 10 minutes"
    if needed is not None and needed >= 300:
        return claim, "supported", detail
    return claim, "not supported", detail + " (less than 5 minutes is enough on this machine)"


def judge(m: Measurements) -> list[Claim]:
    """Each claim of the poster with our verdict and the numbers behind it."""
    learn = {k: _ok(m.curves[k]) for k in KERNELS}
    return [
        *_extremes_claims(m),
        _filter_size_claim(m),
        _learning_speed_claim(m, learn),
        _training_time_claim(m, learn),
    ]


def _trainings(seconds: float, budgets: list[float], ratios: list[int]) -> list[Training]:
    """Every training the experiments need, each once: the λ sweeps, then the learning-speed budgets.

    A learning-speed run at the sweep's budget is the sweep's own point, so it is not trained twice.
    """
    trainings = [Training(k, r, seconds) for k in KERNELS for r in ratios]
    trainings += [Training(k, CURVE_RATIO, b) for k in KERNELS for b in budgets]
    return list(dict.fromkeys(trainings))


@dataclass
class _TrainingProgress:
    """A training's progress on the bar, redrawn at most once a second of training."""

    bar: Any
    training: Training
    last: float = 0.0

    def __call__(self, event: Any) -> None:
        if event.seconds - self.last >= 1.0:
            self.last = event.seconds
            self.bar.set_postfix_str(
                f"{self.training.label}: {event.seconds:.0f}/{event.budget_seconds:.0f} s"
            )


def _train_and_store(
    training: Training, cache: TrainingCache, pixels: np.ndarray, threads: int, bar: Any
) -> dict[str, Any]:
    """Train once and cache the record at once, so an interruption loses only the training under way.

    The threads and the load average go into the record: they explain slow or unusual timings.
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    record, data = train_one(cache.codec_for(training), pixels, training, _TrainingProgress(bar, training))
    record["threads"] = threads
    record["load_average"] = load
    return cache.put(training, record, data)


def _train_missing(
    todo: list[Training],
    records: dict[Training, dict[str, Any]],
    cache: TrainingCache,
    pixels: np.ndarray,
    threads: int,
    bar: Any,
) -> bool:
    """Run the trainings in ``todo``, adding their records to ``records``; False when interrupted.

    Ctrl-C is not an error: what finished stays cached and the same command continues.
    """
    try:
        for training in todo:
            record = records[training] = _train_and_store(training, cache, pixels, threads, bar)
            if "error" in record:
                bar.write(f"ccnn reproduce: {training.label}: {record['error']}", file=sys.stderr)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"ccnn reproduce: interrupted; {len(records)} trainings are cached in {cache.directory}, "
            "run the same command to continue",
            file=sys.stderr,
        )
        return False
    bar.close()
    return True


def gather(
    source: Path,
    cache: TrainingCache,
    seconds: float,
    budgets: list[float],
    ratios: list[int],
    threads: int,
    quiet: bool,
) -> Measurements | None:
    """Run every training not in the cache (None when interrupted), then measure JPEG."""
    pixels = load_rgb(source)
    trainings = _trainings(seconds, budgets, ratios)
    records = {t: r for t in trainings if (r := cache.get(t)) is not None}
    todo = [t for t in trainings if t not in records]
    if todo and cache.any_code:
        missing = ", ".join(t.label for t in todo)
        raise CCNNError(f"--from-cache: no cached training for {missing} in {cache.directory}")
    bar = tqdm(total=len(trainings), initial=len(records), desc="reproduce", unit="training",
               file=sys.stderr, disable=quiet, dynamic_ncols=True)  # fmt: skip
    if todo:
        bar.write(
            f"ccnn reproduce: {len(todo)} trainings to run (about "
            f"{sum(t.seconds for t in todo) / 60:.0f} min), {len(records)} cached in {cache.directory}",
            file=sys.stderr,
        )
    if not _train_missing(todo, records, cache, pixels, threads, bar):
        return None
    return Measurements(
        source=source,
        pixels=pixels,
        seconds=seconds,
        budgets=budgets,
        ratios=ratios,
        threads=threads,
        sweeps={k: [records[Training(k, r, seconds)] for r in ratios] for k in KERNELS},
        curves={k: [records[Training(k, CURVE_RATIO, b)] for b in budgets] for k in KERNELS},
        jpeg=jpeg_curve(pixels)[0],
        code=cache.codec.fingerprint,
        fallback=bool(cache.found),
    )


FIGURES = {
    "a": "poster-a-size.png",
    "b": "poster-b-filters.png",
    "c": "poster-c-learning.png",
    "d": "poster-d-crop.png",
}


def _plot_size_figures(m: Measurements, out_dir: Path) -> None:
    """Figures (a) and (b): PSNR against size, counted the poster's way and the whole file's.

    (a) shows how much the counting matters for 10x10 filters; (b) sets the two filter sizes side
    by side.
    """
    red, blue = {"color": "tab:red"}, {"color": "tab:blue"}
    counted = [
        ("CCNN 10x10, whole file", m.sweeps[10], "bytes", red),
        ("CCNN 10x10, latent only (as the poster)", m.sweeps[10], "latent_bytes", {**red, "linestyle": "--"}),
        ("CCNN 10x10, raw byte latent", m.sweeps[10], "latent_raw_bytes", {**red, "linestyle": ":"}),
    ]
    plot_sizes(counted, m.jpeg, m.raw, out_dir / FIGURES["a"])
    filters = [
        ("10x10, whole file", m.sweeps[10], "bytes", red),
        ("10x10, latent only", m.sweeps[10], "latent_bytes", {**red, "linestyle": "--"}),
        ("35x35, whole file", m.sweeps[35], "bytes", blue),
        ("35x35, latent only", m.sweeps[35], "latent_bytes", {**blue, "linestyle": "--"}),
    ]
    plot_sizes(filters, m.jpeg, m.raw, out_dir / FIGURES["b"])


def _write_crop(m: Measurements, cache: TrainingCache, out_dir: Path) -> str:
    """Figure (d): the original, CCNN and JPEG at about the same size, for the kind of artifacts.

    Returns its caption, empty when the CCNN training for it has no file (it failed).
    """
    crop = Training(10, min(m.ratios, key=lambda r: abs(r - CROP_RATIO)), m.seconds)
    data = cache.data(crop)
    if data is None:
        return ""
    decoded = decompress(data)
    # the JPEG nearest in size, from the sweep already made for the curves
    nearest = min(range(len(m.jpeg.bytes)), key=lambda i: abs(m.jpeg.bytes[i] - len(data)))
    jpeg_quality, jpeg_bytes = m.jpeg.quality[nearest], m.jpeg.bytes[nearest]
    codec = JpegCodec()
    jpeg_decoded = codec.decode(codec.encode(m.pixels, jpeg_quality))
    sheet = side_by_side(
        [
            (m.pixels, "original"),
            (decoded, f"CCNN lambda={crop.ratio}: {len(data)} B, {psnr(m.pixels, decoded):.2f} dB"),
            (jpeg_decoded, f"JPEG q={jpeg_quality}: {jpeg_bytes} B, {psnr(m.pixels, jpeg_decoded):.2f} dB"),
        ],
        crop=176,
    )
    write_atomic(out_dir / FIGURES["d"], encode_image(sheet, Path("crop.png")), force=True)
    return (
        f"CCNN 10x10 at λ={crop.ratio} ({len(data):,} bytes, whole file) and the JPEG nearest in size "
        f"(quality {jpeg_quality}, {jpeg_bytes:,} bytes); centre 176x176 crops enlarged 2x."
    )


def write_figures(m: Measurements, cache: TrainingCache, out_dir: Path) -> str:
    """The four figures; returns the caption of the crop (empty when it could not be made)."""
    _plot_size_figures(m, out_dir)
    plot_learning(m.curves, out_dir / FIGURES["c"])
    return _write_crop(m, cache, out_dir)


def _point_row(m: Measurements, point: dict[str, Any]) -> list[str]:
    if "error" in point:
        return [str(point["ratio"]), "error: " + point["error"]] + [""] * 8
    cells = [str(point["ratio"])]
    for field in ("bytes", "latent_bytes"):
        cells.append(f"{point[field]:,} (ratio {m.raw / point[field]:.1f})")
    cells += [f"{point['latent_raw_bytes']:,}", f"{point['weight_bytes']:,}", f"{point['psnr']:.2f}"]
    for field in ("bytes", "latent_bytes"):
        (c,) = compare_with_jpeg([point], field, m.jpeg, m.raw)
        cells.append("n/a" if c.outcome == "n/a" else f"{_f(c.jpeg_psnr, '.2f')} ({c.outcome} better)")
    cells += [f"{point['steps']:,}", f"{point['train_seconds']:.0f}"]
    return cells


def _loads(m: Measurements) -> str:
    loads = [p.get("load_average") for k in KERNELS for p in m.sweeps[k] + m.curves[k]]
    known = [v for v in loads if v is not None]
    if not known:
        return ""
    return (
        f"; 1-minute load average when the trainings started: {min(known):.1f} to {max(known):.1f} "
        "(above the thread count, other work shared the cores and training saw less CPU)"
        if max(known) > m.threads + 0.5
        else f"; 1-minute load average when the trainings started: {min(known):.1f} to {max(known):.1f}"
    )


def _setup_paragraph(m: Measurements) -> str:
    """Image, network, budgets, threads and machine: what the numbers below depend on."""
    height, width = m.pixels.shape[:2]
    poster_size = ': the poster\'s "788 KB"' if m.source.name == "kodim08.png" else ""
    reduced = " — a reduced budget (the poster trained for about 10 minutes)" if m.seconds < 600 else ""
    return (
        f"Image: `{m.source.name}` ({width}x{height}; {m.raw:,} bytes as 24-bit RGB, "
        f"{m.source.stat().st_size:,} bytes as a file{poster_size}). Network: `--preset paper` (one "
        "strided convolution, one transposed convolution, Leaky ReLU, byte latent), seed 0, training stopped "
        f"by time. Each sweep point trained for **{m.seconds:g} s**{reduced}. Learning-speed budgets: "
        f"{', '.join(f'{b:g}' for b in m.budgets)} s at λ = {CURVE_RATIO}. Torch threads: {m.threads}; "
        f"{RunInfo.machine()}{_loads(m)}."
    )


def _code_note(m: Measurements) -> list[str]:
    """A warning when the trainings were made by other encoder code than the current one.

    ``--from-cache`` may reuse such trainings; the reader must know the poster is not fresh.
    """
    codes = sorted({str(p.get("code", "unrecorded")) for k in KERNELS for p in m.sweeps[k] + m.curves[k]})
    if not m.fallback and codes == [m.code]:
        return []
    made = ", ".join(c if c != "unrecorded" else "hash not recorded" for c in codes)
    return [
        "The trainings were taken from the cache with `--from-cache`: they were made by another version "
        f"of the encoder's code ({made}) than the current one ({m.code}); hashes of the encoder's "
        "sources.",
        "",
    ]


def _intro_lines(m: Measurements, claims: list[Claim], command: str) -> list[str]:
    """The title, how the poster was made, how sizes are counted, and the verdicts."""
    lines = ["# The poster's experiments, reproduced", "", f"Made by `{command}`.", ""]
    lines += [_setup_paragraph(m), ""]
    lines += [
        "Compression ratio = 24-bit RGB size / data size, which is the poster's λ when the latent is counted "
        "as raw bytes. Sizes are counted three ways: the *whole .ccnn file* (header, restoring network's "
        "weights, entropy model, latent), the *latent only* as coded in the file (what the poster counted: "
        "its restoring network was not part of the data), and the *raw byte latent* H/λ x W/λ x 3λ.",
        "",
    ]
    lines += _code_note(m)
    lines += ["## Claims", ""]
    lines += _table(["poster's claim", "our verdict", "measured"], [[c, f"**{v}**", d] for c, v, d in claims])
    lines += [
        "",
        "Verdicts are computed from the measurements below by `ccnn reproduce`, not written by hand.",
        "",
    ]
    return lines


def _size_section(m: Measurements) -> list[str]:
    """(a): every 10x10 sweep point with its sizes and JPEG's PSNR at those sizes."""
    lines = [
        "## (a) PSNR against data size, 10x10 filters, against JPEG",
        "",
        f"![PSNR against size]({FIGURES['a']})",
        "",
    ]
    header = ["λ", "whole file (B)", "latent (B)", "raw latent (B)", "weights (B)", "PSNR (dB)",
              "JPEG at whole-file size", "JPEG at latent size", "steps", "train (s)"]  # fmt: skip
    lines += _table(header, [_point_row(m, p) for p in m.sweeps[10]])
    lines.append("")
    for p in m.sweeps[10] + m.sweeps[35]:
        if p["ratio"] > p["kernel"]:
            gap = 1 - (p["kernel"] / p["ratio"]) ** 2
            lines.append(
                f"- λ={p['ratio']} with {p['kernel']}x{p['kernel']} filters: the filter is smaller than the "
                f"stride, so the restoring layer writes nothing into {gap:.0%} of the pixels (they get only "
                "its bias). Such a point measures that gap more than the network."
            )
    lines += [
        "",
        f"JPEG: Pillow/libjpeg-turbo, 4:2:0, optimize=True, qualities 1-100 ({min(m.jpeg.bytes):,} to "
        f"{max(m.jpeg.bytes):,} bytes, {min(m.jpeg.psnr):.2f} to {max(m.jpeg.psnr):.2f} dB); its PSNR at a "
        "given size is interpolated between qualities (PCHIP in log size). Above JPEG's largest file, CCNN "
        "must beat JPEG's best PSNR; below JPEG's smallest file there is nothing to compare (n/a).",
        "",
    ]
    return lines


def _filters_section(m: Measurements) -> list[str]:
    """(b): both filter sizes at each λ, the failed trainings, and BD-rates of 10x10 against 35x35."""
    lines = ["## (b) 10x10 against 35x35 filters", "", f"![filter sizes]({FIGURES['b']})", ""]
    rows = []
    for a, b in zip(m.sweeps[10], m.sweeps[35]):
        cells = [str(a["ratio"])]
        for p in (a, b):
            cells.append(
                "error"
                if "error" in p
                else f"{p['psnr']:.2f} dB, {p['bytes']:,} B ({p['weight_bytes']:,} B weights)"
            )
        rows.append(cells)
    lines += _table(["λ", "10x10: PSNR, whole file", "35x35: PSNR, whole file"], rows)
    lines.append("")
    for p in m.sweeps[10] + m.sweeps[35]:
        if "error" in p:
            lines.append(f"- {p['kernel']}x{p['kernel']}, λ={p['ratio']}: {p['error']}")
    for name, field in COUNTS.items():
        rate, gain = _bd_10_vs_35(m, field)
        lines.append(
            f"- 10x10 against 35x35, {name}: BD-rate {_f(rate, '+.1f')}%, BD-PSNR {_f(gain, '+.2f')} dB"
        )
    return [*lines, ""]


def _learning_section(m: Measurements) -> list[str]:
    """(c): PSNR and steps of each filter size after each training budget."""
    lines = ["## (c) Learning speed", "", f"![learning speed]({FIGURES['c']})", ""]
    lines += [
        "Each point is a complete training with that time budget (the learning-rate schedule follows the "
        "budget), then the real file is written and decoded.",
        "",
    ]
    rows = []
    for i, budget in enumerate(m.budgets):
        cells = [f"{budget:g}"]
        for k in KERNELS:
            p = m.curves[k][i]
            cells.append("error" if "error" in p else f"{p['psnr']:.2f} dB ({p['steps']:,} steps)")
        rows.append(cells)
    lines += _table(["budget (s)", "10x10", "35x35"], rows)
    return [*lines, ""]


def _crop_section(crop: str) -> list[str]:
    """(d): the crop with its caption, or why there is none."""
    lines = ["## (d) Artifacts at the same file size", ""]
    if not crop:
        return [*lines, "The crop could not be made: the CCNN training for it failed."]
    return [
        *lines,
        f"![original, CCNN, JPEG]({FIGURES['d']})",
        "",
        crop + " The poster's observation: CCNN makes smudges, JPEG makes square blocks.",
    ]


def write_poster(m: Measurements, claims: list[Claim], crop: str, command: str, path: Path) -> None:
    """poster.md: how it was made, the verdicts, and the tables behind them."""
    lines = _intro_lines(m, claims, command)
    lines += _size_section(m) + _filters_section(m) + _learning_section(m) + _crop_section(crop)
    write_atomic(path, ("\n".join(lines) + "\n").encode(), force=True)


def run_reproduce(
    out_dir: Path,
    cache_dir: Path,
    image: Path,
    seconds: float | None = None,
    curve_seconds: Sequence[float] | None = None,
    ratios: Sequence[float] | None = None,
    device: str | None = None,
    command: str = "ccnn reproduce",
    quiet: bool = False,
    threads: int | None = None,
    from_cache: bool = False,
) -> int:
    """Run (or take from the cache) every training, then write ``poster.md`` and its figures."""
    if threads:
        set_torch_threads(threads)
    threads = torch_thread_count()
    encoder = EncoderOptions(Preset.PAPER, steps=UNLIMITED_STEPS, seed=0)
    codec = CcnnCodec(encoder=encoder, device=device, threads=threads)
    sweep = sorted({int(r) for r in (ratios or DEFAULT_RATIOS)})
    for ratio in sweep:
        codec.config(ratio)  # range check: ConfigError -> exit 2
    source = image
    pixels = load_rgb(source)
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    cache = TrainingCache(cache_dir, codec, digest, any_code=from_cache)
    budgets = sorted({float(b) for b in (curve_seconds or DEFAULT_CURVE_SECONDS)})
    measurements = gather(source, cache, float(seconds or DEFAULT_SECONDS), budgets, sweep, threads, quiet)
    if measurements is None:
        return 130
    out_dir.mkdir(parents=True, exist_ok=True)
    crop = write_figures(measurements, cache, out_dir)
    claims = judge(measurements)
    write_poster(measurements, claims, crop, command, out_dir / "poster.md")
    if not quiet:
        print(f"wrote {out_dir / 'poster.md'} and its figures")
        for claim, verdict, _ in claims:
            print(f"  {verdict:<17} {claim}")
    return 0
