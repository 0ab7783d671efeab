"""What ``ccnn bench`` writes: the per-image CSV, CompressAI JSONs, report.md and rd.png."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from .bdrate import bd_psnr, bd_rate, quality_at_rate
from .codecs import Codec
from .run import Outcome

#: Rates at which the report reads PSNR off each averaged curve.
REPORT_BPPS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: The curves BD-rates are measured against, when present.
ANCHORS: tuple[str, ...] = ("jpeg", "avif")


@dataclass(frozen=True)
class Curve:
    """A codec's averaged curve: one point per quality setting measured on every image."""

    codec: Codec
    quality: list[float]
    bpp: list[float]
    psnr: list[float]
    ms_ssim: list[float | None]
    encode_seconds: list[float]
    decode_seconds: list[float]
    incomplete: list[str]
    #: Mean share of the file that is not latent (header, weights, entropy model), where known.
    side_share: list[float | None] = field(default_factory=list)

    @property
    def ms_ssim_db(self) -> list[float | None]:
        """MS-SSIM as -10 log10(1 - MS-SSIM), the dB scale CompressAI plots."""
        return [None if v is None else -10 * math.log10(max(1e-10, 1 - v)) for v in self.ms_ssim]


def _mean(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return float(np.mean(clean)) if clean and len(clean) == len(values) else None


def averaged_curves(outcome: Outcome) -> dict[str, Curve]:
    """Average each codec's measurements per quality point over the images (CompressAI convention).

    Only points measured on every image are kept; the others are listed in ``incomplete``.
    """
    curves = {}
    for codec in outcome.codecs:
        columns: dict[str, list[Any]] = {k: [] for k in ("q", "bpp", "psnr", "ms", "enc", "dec", "side")}
        incomplete = []
        for quality in codec.qualities:
            records = [outcome.records.get((codec.name, image.name, quality)) for image in outcome.images]
            if any(r is None or "error" in r for r in records):
                errors = {r["error"] for r in records if r is not None and "error" in r}
                incomplete.append(
                    f"{codec.quality_label(quality)}: " + ("; ".join(sorted(errors)) or "not run")
                )
                continue
            columns["q"].append(quality)
            columns["bpp"].append(_mean([r["bpp"] for r in records]))
            columns["psnr"].append(_mean([r["psnr"] for r in records]))
            columns["ms"].append(_mean([r["ms_ssim"] for r in records]))
            columns["enc"].append(_mean([r["encode_seconds"] for r in records]))
            columns["dec"].append(_mean([r["decode_seconds"] for r in records]))
            side = [
                1 - r["latent_bytes"] / r["bytes"] if r.get("latent_bytes") is not None else None
                for r in records
            ]
            columns["side"].append(_mean(side))
        curves[codec.name] = Curve(
            codec,
            columns["q"],
            columns["bpp"],
            columns["psnr"],
            columns["ms"],
            columns["enc"],
            columns["dec"],
            incomplete,
            columns["side"],
        )
    return curves


def write_csv(outcome: Outcome, path: Path) -> None:
    """One row per image, codec and quality point."""
    fields = [
        "image", "codec", "quality", "width", "height", "bytes", "bpp", "psnr_rgb", "ms_ssim_rgb",
        "encode_seconds", "decode_seconds", "threads", "latent_bytes", "steps", "error",
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for codec, image, quality, record in outcome.rows():
        writer.writerow(
            {
                "image": image.name,
                "codec": codec.name,
                "quality": f"{quality:g}",
                "width": image.width,
                "height": image.height,
                "bytes": record.get("bytes", ""),
                "bpp": _num(record.get("bpp"), 6),
                "psnr_rgb": _num(record.get("psnr"), 4),
                "ms_ssim_rgb": _num(record.get("ms_ssim"), 6),
                "encode_seconds": _num(record.get("encode_seconds"), 4),
                "decode_seconds": _num(record.get("decode_seconds"), 4),
                "threads": record.get("threads", ""),
                "latent_bytes": record.get("latent_bytes", ""),
                "steps": record.get("steps", ""),
                "error": record.get("error", ""),
            }
        )
    write_atomic(path, buffer.getvalue().encode(), force=True)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def compressai_json(curve: Curve) -> dict[str, Any]:
    """A codec's averaged curve in CompressAI's results schema."""
    return {
        "name": curve.codec.label,
        "description": f"{curve.codec.settings()}; {curve.codec.versions()}",
        "results": {
            "quality": curve.quality,
            "bpp": curve.bpp,
            "psnr-rgb": curve.psnr,
            "ms-ssim-rgb": curve.ms_ssim,
            "encoding_time": curve.encode_seconds,
            "decoding_time": curve.decode_seconds,
        },
    }


def _fmt(value: float | None, spec: str, empty: str = "—") -> str:
    return empty if value is None else format(value, spec)


def bd_row(base: Curve, curve: Curve) -> dict[str, Any]:
    """BD-rate (PSNR and MS-SSIM), BD-PSNR and PSNR overlap of ``curve`` against ``base``."""
    ms_ok = all(v is not None for v in curve.ms_ssim_db + base.ms_ssim_db)
    return {
        "codec": curve.codec.name,
        "bd_rate": bd_rate(base.bpp, base.psnr, curve.bpp, curve.psnr),
        "bd_psnr": bd_psnr(base.bpp, base.psnr, curve.bpp, curve.psnr),
        "bd_rate_ms_ssim": bd_rate(base.bpp, base.ms_ssim_db, curve.bpp, curve.ms_ssim_db) if ms_ok else None,
        "overlap": _overlap(base.psnr, curve.psnr),
    }


def bd_table(curves: dict[str, Curve], anchor: str) -> list[dict[str, Any]]:
    """BD-rate (PSNR and MS-SSIM) and BD-PSNR of every codec against ``anchor``'s curve."""
    return [bd_row(curves[anchor], curve) for name, curve in curves.items() if name != anchor]


def _bd_cells(row: dict[str, Any]) -> str:
    """A :func:`bd_row` as the cells after the codec's name in the report's BD tables."""
    return (
        f"| {_fmt(row['bd_rate'], '+.1f')}% | {_fmt(row['bd_psnr'], '+.2f')} dB "
        f"| {_fmt(row['bd_rate_ms_ssim'], '+.1f')}% | {row['overlap']} |"
    )


def side_share_at_rate(curve: Curve, target: float) -> float | None:
    """The not-latent share of the file at ``target`` bpp, read off like PSNR (PCHIP in log-bpp).

    None where the curve has no shares or does not reach that rate.
    """
    known = [(b, s) for b, s in zip(curve.bpp, curve.side_share, strict=False) if s is not None]
    if len(known) < 2:
        return None
    return quality_at_rate([b for b, _ in known], [s for _, s in known], target)


def _overlap(a: list[float], b: list[float]) -> str:
    if len(a) < 2 or len(b) < 2:
        return "—"
    lo, hi = max(min(a), min(b)), min(max(a), max(b))
    return f"{lo:.1f}–{hi:.1f} dB" if hi > lo else "none"


@dataclass(frozen=True)
class RunInfo:
    """How the run was made, for the report's header."""

    command: str
    images_dir: str
    jobs: int
    threads: int
    cpu: str = ""

    @staticmethod
    def machine() -> str:
        """CPU model, cores and operating system."""
        cpu = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def write_report(
    outcome: Outcome, curves: dict[str, Curve], info: RunInfo, path: Path, plot: str | None
) -> str:
    """report.md: settings, BD tables, PSNR at fixed rates, averaged curves and timings."""
    lines: list[str] = []
    add = lines.append
    add("# Rate-distortion benchmark")
    add("")
    add(f"Made by `{info.command}`.")
    add("")
    sizes = sorted({f"{i.width}x{i.height}" for i in outcome.images})
    add(
        f"- Images: {len(outcome.images)} from `{info.images_dir}` ({', '.join(sizes)}), "
        "measured per image, averaged per quality point (CompressAI convention)."
    )
    add(
        "- Rate: whole file, bpp = 8 x bytes / (H x W). PSNR-RGB on 8-bit RGB; MS-SSIM-RGB as pytorch-msssim."
    )
    add(
        f"- Machine: {info.cpu or RunInfo.machine()}. Jobs: {info.jobs}, each allowed {info.threads} "
        f"thread{'s' if info.threads != 1 else ''} (Pillow's JPEG, WebP and JPEG 2000 encoders use one)."
    )
    loads = [r["load_average"] for *_, r in outcome.rows() if r.get("load_average") is not None]
    if loads:
        add(
            f"- 1-minute load average when the measurements started: {min(loads):.1f} to {max(loads):.1f} "
            "(above jobs x threads, other work shared the cores and slowed the timings)."
        )
    add(
        f"- Measurements: {outcome.measured} made in this run, {outcome.cached} taken from the cache "
        f"(encode/decode seconds are those of the run that made them, with the threads in the CSV)."
    )
    add("")
    add("## Codecs")
    add("")
    add("| codec | settings | libraries |")
    add("|---|---|---|")
    for codec in outcome.codecs:
        add(f"| {codec.label} | {codec.settings()} | {codec.versions()} |")
    for name, reason in outcome.skipped.items():
        add(f"| {name} | **skipped**: {reason} | |")
    add("")
    for curve in curves.values():
        for note in curve.incomplete:
            add(f"- {curve.codec.label}: point {note} left out (not measured on every image)")
    if plot:
        add("")
        add(f"![rate-distortion curves]({plot})")
    for anchor in ANCHORS:
        if anchor not in curves or len(curves[anchor].bpp) < 2:
            continue
        add("")
        add(f"## BD-rate against {curves[anchor].codec.label}")
        add("")
        add(
            "On the averaged curves, PCHIP interpolation, over the PSNR range both curves cover. "
            "Negative BD-rate: fewer bits for the same quality."
        )
        add("")
        add("| codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | PSNR overlap |")
        add("|---|---:|---:|---:|---|")
        for row in bd_table(curves, anchor):
            add(f"| {curves[row['codec']].codec.label} " + _bd_cells(row))
    ours = [curve for curve in curves.values() if any(v is not None for v in curve.side_share)]
    for curve in ours:
        others = [c for c in curves.values() if c is not curve and len(c.bpp) >= 2]
        if len(curve.bpp) < 2 or not others:
            continue
        add("")
        add(f"## {curve.codec.label} against every codec")
        add("")
        add("The same measure with each codec in turn as the anchor. Negative: ccnn needs fewer bits.")
        add("")
        add("| against | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | PSNR overlap |")
        add("|---|---:|---:|---:|---|")
        for other in others:
            add(f"| {other.codec.label} " + _bd_cells(bd_row(other, curve)))
    add("")
    add("## PSNR-RGB at fixed rates")
    add("")
    add("Read off each averaged curve (PCHIP in log-bpp); — where the curve does not reach that rate.")
    add("")
    add("| codec | " + " | ".join(f"{b:g} bpp" for b in REPORT_BPPS) + " |")
    add("|---|" + "---:|" * len(REPORT_BPPS))
    for curve in curves.values():
        values = [quality_at_rate(curve.bpp, curve.psnr, b) for b in REPORT_BPPS]
        add(f"| {curve.codec.label} | " + " | ".join(_fmt(v, ".2f") for v in values) + " |")
    if ours:
        add("")
        add("## Share of the file that is not latent, at fixed rates")
        add("")
        add(
            "Header, decoder weights and entropy model, as a share of the whole file (mean of the "
            "images per quality point), read off like PSNR above."
        )
        add("")
        add("| codec | " + " | ".join(f"{b:g} bpp" for b in REPORT_BPPS) + " |")
        add("|---|" + "---:|" * len(REPORT_BPPS))
        for curve in ours:
            shares = [side_share_at_rate(curve, b) for b in REPORT_BPPS]
            add(f"| {curve.codec.label} | " + " | ".join(_fmt(v, ".1%") for v in shares) + " |")
    add("")
    add("## Averaged curves")
    for curve in curves.values():
        add("")
        add(f"### {curve.codec.label}")
        add("")
        shares = any(v is not None for v in curve.side_share)
        add(
            "| setting | bpp | PSNR-RGB (dB) | MS-SSIM-RGB | encode (s) | decode (s) |"
            + (" not latent |" if shares else "")
        )
        add("|---|---:|---:|---:|---:|---:|" + ("---:|" if shares else ""))
        for i, quality in enumerate(curve.quality):
            share = f" {_fmt(curve.side_share[i], '.1%')} |" if shares else ""
            add(
                f"| {curve.codec.quality_label(quality)} | {curve.bpp[i]:.4f} | {curve.psnr[i]:.2f} "
                f"| {_fmt(curve.ms_ssim[i], '.5f')} | {curve.encode_seconds[i]:.3f} "
                f"| {curve.decode_seconds[i]:.4f} |{share}"
            )
        if shares:
            add("")
            add(
                "*not latent*: header, decoder weights and entropy model (share of the file, mean of images)."
            )
    text = "\n".join(lines) + "\n"
    write_atomic(path, text.encode(), force=True)
    return text


def plot_curves(curves: dict[str, Curve], path: Path, title: str = "") -> bool:
    """rd.png: PSNR-RGB and MS-SSIM-RGB (dB) against bpp; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    limit = 3.0
    for curve in curves.values():
        if not curve.bpp:
            continue
        order = np.argsort(curve.bpp)
        x = np.asarray(curve.bpp)[order]
        shown = x <= limit * 1.05
        style = {"marker": "o", "markersize": 3, "linewidth": 2.2 if curve.codec.name == "ccnn" else 1.4}
        axes[0].plot(x[shown], np.asarray(curve.psnr)[order][shown], label=curve.codec.label, **style)
        ms = curve.ms_ssim_db
        if all(v is not None for v in ms):
            axes[1].plot(
                x[shown], np.asarray(ms, dtype=float)[order][shown], label=curve.codec.label, **style
            )
    axes[0].set_ylabel("PSNR-RGB (dB)")
    axes[1].set_ylabel("MS-SSIM-RGB (dB, -10 log10(1 - MS-SSIM))")
    for axis in axes:
        axis.set_xlabel("bits per pixel (whole file)")
        axis.set_xlim(0, limit)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue(), force=True)
    return True


def write_results(outcome: Outcome, info: RunInfo, out_dir: Path) -> dict[str, Curve]:
    """Everything ``ccnn bench`` writes into ``out_dir``; returns the averaged curves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = averaged_curves(outcome)
    write_csv(outcome, out_dir / "results.csv")
    for name, curve in curves.items():
        text = json.dumps(compressai_json(curve), indent=2) + "\n"
        write_atomic(out_dir / f"{name}.json", text.encode(), force=True)
    plotted = plot_curves(curves, out_dir / "rd.png", f"{len(outcome.images)} images from {info.images_dir}")
    write_report(outcome, curves, info, out_dir / "report.md", "rd.png" if plotted else None)
    return curves
