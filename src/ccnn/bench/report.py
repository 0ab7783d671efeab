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
from .bdrate import MIN_OVERLAP, bd_psnr, bd_rate, overlap_share, quality_at_rate
from .codecs import CcnnCodec, Codec
from .run import Outcome

#: Rates at which the report reads PSNR off each averaged curve.
REPORT_BPPS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: The curves BD-rates are measured against, when present.
ANCHORS: tuple[str, ...] = ("jpeg", "avif")
#: Marks a BD figure whose curves overlap too little (:data:`ccnn.bench.bdrate.MIN_OVERLAP`).
NARROW_MARK = "⚠"
#: The plots' detail panel: the low rates where neural codecs differ most, on a log-bpp axis.
LOW_RATES: tuple[float, float] = (0.05, 0.5)


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
    """BD-rate (PSNR and MS-SSIM), BD-PSNR and PSNR overlap of ``curve`` against ``base``.

    ``narrow`` is True when the curves share less than :data:`MIN_OVERLAP` of the narrower
    one's PSNR range: the BD-rate then describes that sliver only, and must say so.
    """
    ms_ok = all(v is not None for v in curve.ms_ssim_db + base.ms_ssim_db)
    share = overlap_share(base.psnr, curve.psnr)
    return {
        "codec": curve.codec.name,
        "anchor": base.codec.name,
        "bd_rate": bd_rate(base.bpp, base.psnr, curve.bpp, curve.psnr),
        "bd_psnr": bd_psnr(base.bpp, base.psnr, curve.bpp, curve.psnr),
        "bd_rate_ms_ssim": bd_rate(base.bpp, base.ms_ssim_db, curve.bpp, curve.ms_ssim_db) if ms_ok else None,
        "overlap": _overlap(base.psnr, curve.psnr),
        "overlap_share": share,
        "narrow": share is not None and share > 0 and share < MIN_OVERLAP,
    }


def bd_table(curves: dict[str, Curve], anchor: str) -> list[dict[str, Any]]:
    """BD-rate (PSNR and MS-SSIM) and BD-PSNR of every codec against ``anchor``'s curve."""
    return [bd_row(curves[anchor], curve) for name, curve in curves.items() if name != anchor]


def _bd_cells(row: dict[str, Any]) -> str:
    """A :func:`bd_row` as the cells after the codec's name in the report's BD tables.

    A narrow overlap marks the BD figures and gives the shared share beside the range.
    """
    mark = f" {NARROW_MARK}" if row["narrow"] else ""
    overlap = row["overlap"]
    if row["overlap_share"] is not None and row["overlap_share"] > 0:
        overlap += f" ({row['overlap_share']:.0%}{mark})"
    return (
        f"| {_fmt(row['bd_rate'], '+.1f')}%{mark} | {_fmt(row['bd_psnr'], '+.2f')} dB{mark} "
        f"| {_fmt(row['bd_rate_ms_ssim'], '+.1f')}%{mark} | {overlap} |"
    )


def narrow_overlap_note(row: dict[str, Any], curves: dict[str, Curve]) -> str:
    """One line on a :func:`bd_row` whose curves overlap too little: which, where and how much."""
    return (
        f"{curves[row['codec']].codec.label} against {curves[row['anchor']].codec.label}: the curves "
        f"overlap over {row['overlap']} only, {row['overlap_share']:.0%} of the narrower one's PSNR "
        f"range (below {MIN_OVERLAP:.0%}), so the BD-rate describes that range only"
    )


def narrow_overlaps(curves: dict[str, Curve]) -> list[str]:
    """:func:`narrow_overlap_note` for every pair the report compares whose overlap is narrow."""
    rows = [row for anchor in ANCHORS if anchor in curves for row in bd_table(curves, anchor)]
    for curve in _ours(curves):
        rows += [bd_row(other, curve) for other in curves.values() if other is not curve]
    notes: dict[frozenset[str], str] = {}
    for row in rows:
        if row["narrow"]:
            notes.setdefault(frozenset((row["codec"], row["anchor"])), narrow_overlap_note(row, curves))
    return list(notes.values())


def _ours(curves: dict[str, Curve]) -> list[Curve]:
    """The ccnn curves: those that know how much of their files is not latent."""
    return [curve for curve in curves.values() if any(v is not None for v in curve.side_share)]


def _narrow_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The note under a BD table that has marked rows."""
    if not any(row["narrow"] for row in rows):
        return []
    return [
        "",
        f"{NARROW_MARK} The two curves share less than {MIN_OVERLAP:.0%} of the narrower one's PSNR "
        "range: the figure averages over that part only and does not describe the whole curves.",
    ]


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
    #: The image set's name for titles and the header: a folder's name, never a machine's path.
    image_set: str
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


def _header_lines(outcome: Outcome, info: RunInfo) -> list[str]:
    """The title and how the run was made, so a reader can judge and repeat the measurements."""
    sizes = sorted({f"{i.width}x{i.height}" for i in outcome.images})
    lines = [
        "# Rate-distortion benchmark",
        "",
        f"Made by `{info.command}`.",
        "",
        f"- Images: {len(outcome.images)} from {info.image_set} ({', '.join(sizes)}), "
        "measured per image, averaged per quality point (CompressAI convention).",
        "- Rate: whole file, bpp = 8 x bytes / (H x W). "
        "PSNR-RGB on 8-bit RGB; MS-SSIM-RGB as pytorch-msssim.",
        f"- Machine: {info.cpu or RunInfo.machine()}. Jobs: {info.jobs}, each allowed {info.threads} "
        f"thread{'s' if info.threads != 1 else ''} (Pillow's JPEG, WebP and JPEG 2000 encoders use one).",
    ]
    loads = [r["load_average"] for *_, r in outcome.rows() if r.get("load_average") is not None]
    if loads:
        lines.append(
            f"- 1-minute load average when the measurements started: {min(loads):.1f} to {max(loads):.1f} "
            "(above jobs x threads, other work shared the cores and slowed the timings)."
        )
    lines.append(
        f"- Measurements: {outcome.measured} made in this run, {outcome.cached} taken from the cache "
        f"(encode/decode seconds are those of the run that made them, with the threads in the CSV)."
    )
    return [*lines, ""]


def _codec_lines(outcome: Outcome, curves: dict[str, Curve], plot: str | None) -> list[str]:
    """The codecs with their settings and library versions, what was skipped or left out, the plot.

    Library versions move the results, so each codec's are written next to its name.
    """
    lines = ["## Codecs", "", "| codec | settings | libraries |", "|---|---|---|"]
    lines += [f"| {codec.label} | {codec.settings()} | {codec.versions()} |" for codec in outcome.codecs]
    lines += [f"| {name} | **skipped**: {reason} | |" for name, reason in outcome.skipped.items()]
    lines.append("")
    for curve in curves.values():
        for note in curve.incomplete:
            lines.append(f"- {curve.codec.label}: point {note} left out (not measured on every image)")
    if plot:
        lines += ["", f"![rate-distortion curves]({plot})"]
    return lines


def _section(title: str, intro: str) -> list[str]:
    """A report section's opening: a blank line, the ``##`` title and one paragraph."""
    return ["", f"## {title}", "", intro, ""]


def _bd_table_head(first: str) -> list[str]:
    """The header of a BD table; ``first`` names the first column (the codec or the anchor)."""
    return [
        f"| {first} | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | PSNR overlap |",
        "|---|---:|---:|---:|---|",
    ]


def _anchor_lines(curves: dict[str, Curve]) -> list[str]:
    """One BD table per anchor codec (JPEG, AVIF) that has a curve: the usual comparison."""
    lines: list[str] = []
    for anchor in ANCHORS:
        if anchor not in curves or len(curves[anchor].bpp) < 2:
            continue
        lines += _section(
            f"BD-rate against {curves[anchor].codec.label}",
            "On the averaged curves, PCHIP interpolation, over the PSNR range both curves cover. "
            "Negative BD-rate: fewer bits for the same quality.",
        )
        lines += _bd_table_head("codec")
        rows = bd_table(curves, anchor)
        for row in rows:
            lines.append(f"| {curves[row['codec']].codec.label} " + _bd_cells(row))
        lines += _narrow_lines(rows)
    return lines


def _against_every_codec_lines(curves: dict[str, Curve], ours: list[Curve]) -> list[str]:
    """Each of ``ours`` (the ccnn curves) against every other codec as the anchor in turn.

    The anchor tables above answer "how do codecs compare with JPEG"; this one answers "where does
    ccnn stand against each codec", which needs every codec as the anchor.
    """
    lines: list[str] = []
    for curve in ours:
        others = [c for c in curves.values() if c is not curve and len(c.bpp) >= 2]
        if len(curve.bpp) < 2 or not others:
            continue
        lines += _section(
            f"{curve.codec.label} against every codec",
            "The same measure with each codec in turn as the anchor. Negative: ccnn needs fewer bits.",
        )
        lines += _bd_table_head("against")
        rows = [bd_row(other, curve) for other in others]
        for other, row in zip(others, rows):
            lines.append(f"| {other.codec.label} " + _bd_cells(row))
        lines += _narrow_lines(rows)
    return lines


def _rate_table_head() -> list[str]:
    """The header of a table with one column per rate of :data:`REPORT_BPPS`."""
    return [
        "| codec | " + " | ".join(f"{b:g} bpp" for b in REPORT_BPPS) + " |",
        "|---|" + "---:|" * len(REPORT_BPPS),
    ]


def _fixed_rate_lines(curves: dict[str, Curve]) -> list[str]:
    """PSNR of every codec at the same few rates: a comparison that needs no anchor."""
    lines = _section(
        "PSNR-RGB at fixed rates",
        "Read off each averaged curve (PCHIP in log-bpp); — where the curve does not reach that rate.",
    )
    lines += _rate_table_head()
    for curve in curves.values():
        values = [quality_at_rate(curve.bpp, curve.psnr, b) for b in REPORT_BPPS]
        lines.append(f"| {curve.codec.label} | " + " | ".join(_fmt(v, ".2f") for v in values) + " |")
    return lines


def _side_share_lines(ours: list[Curve]) -> list[str]:
    """How much of ccnn's files is not latent at fixed rates: the price of carrying the decoder.

    Empty when no curve knows its latent's size.
    """
    if not ours:
        return []
    lines = _section(
        "Share of the file that is not latent, at fixed rates",
        "Header, decoder weights and entropy model, as a share of the whole file (mean of the "
        "images per quality point), read off like PSNR above.",
    )
    lines += _rate_table_head()
    for curve in ours:
        shares = [side_share_at_rate(curve, b) for b in REPORT_BPPS]
        lines.append(f"| {curve.codec.label} | " + " | ".join(_fmt(v, ".1%") for v in shares) + " |")
    return lines


def _curve_lines(curve: Curve) -> list[str]:
    """One codec's averaged points with timings: the numbers every table above is read from."""
    shares = any(v is not None for v in curve.side_share)
    lines = [
        "",
        f"### {curve.codec.label}",
        "",
        "| setting | bpp | PSNR-RGB (dB) | MS-SSIM-RGB | encode (s) | decode (s) |"
        + (" not latent |" if shares else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if shares else ""),
    ]
    for i, quality in enumerate(curve.quality):
        share = f" {_fmt(curve.side_share[i], '.1%')} |" if shares else ""
        lines.append(
            f"| {curve.codec.quality_label(quality)} | {curve.bpp[i]:.4f} | {curve.psnr[i]:.2f} "
            f"| {_fmt(curve.ms_ssim[i], '.5f')} | {curve.encode_seconds[i]:.3f} "
            f"| {curve.decode_seconds[i]:.4f} |{share}"
        )
    if shares:
        lines += [
            "",
            "*not latent*: header, decoder weights and entropy model (share of the file, mean of images).",
        ]
    return lines


def write_report(
    outcome: Outcome, curves: dict[str, Curve], info: RunInfo, path: Path, plot: str | None
) -> str:
    """report.md: settings, BD tables, PSNR at fixed rates, averaged curves and timings."""
    ours = _ours(curves)
    lines = _header_lines(outcome, info)
    warnings = narrow_overlaps(curves)
    if warnings:  # before any table, so that no BD-rate is read without it
        lines += ["## Warnings", ""] + [f"- {NARROW_MARK} {note}." for note in warnings] + [""]
    lines += _codec_lines(outcome, curves, plot)
    lines += _anchor_lines(curves) + _against_every_codec_lines(curves, ours)
    lines += _fixed_rate_lines(curves) + _side_share_lines(ours)
    lines += ["", "## Averaged curves"]
    for curve in curves.values():
        lines += _curve_lines(curve)
    text = "\n".join(lines) + "\n"
    write_atomic(path, text.encode(), force=True)
    return text


def plot_title(outcome: Outcome, image_set: str) -> str:
    """The plots' title: the ccnn preset(s) measured and the image set (a name, not a path)."""
    presets = sorted({c.encoder.preset.value for c in outcome.codecs if isinstance(c, CcnnCodec)})
    images = f"{len(outcome.images)} image{'s' if len(outcome.images) != 1 else ''} from {image_set}"
    return f"ccnn preset {', '.join(presets)} · {images}" if presets else images


def plot_curves(curves: dict[str, Curve], path: Path, title: str = "") -> bool:
    """rd.png: PSNR-RGB against bpp (0-3 bpp, and 0.05-0.5 bpp on a log axis) and MS-SSIM-RGB (dB).

    The low-rate panel is where per-image neural codecs differ most from classical ones and
    where a linear axis squeezes the curves into its first tenth. False when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return False
    figure, (full, low, ms_axis) = plt.subplots(1, 3, figsize=(19, 5.4))
    limit = 3.0
    low_psnr: list[float] = []
    for curve in curves.values():
        if not curve.bpp:
            continue
        order = np.argsort(curve.bpp)
        x = np.asarray(curve.bpp)[order]
        psnr = np.asarray(curve.psnr)[order]
        shown = x <= limit * 1.05
        style = {"marker": "o", "markersize": 3, "linewidth": 2.2 if curve.codec.name == "ccnn" else 1.4}
        full.plot(x[shown], psnr[shown], label=curve.codec.label, **style)
        low.plot(x, psnr, label=curve.codec.label, **style)
        inside = (x >= LOW_RATES[0] / 1.2) & (x <= LOW_RATES[1] * 1.2)
        low_psnr += psnr[inside].tolist()
        ms = curve.ms_ssim_db
        if all(v is not None for v in ms):
            ms_axis.plot(
                x[shown], np.asarray(ms, dtype=float)[order][shown], label=curve.codec.label, **style
            )
    full.set_ylabel("PSNR-RGB (dB)")
    low.set_ylabel("PSNR-RGB (dB)")
    ms_axis.set_ylabel("MS-SSIM-RGB (dB, -10 log10(1 - MS-SSIM))")
    for axis in (full, ms_axis):
        axis.set_xlim(0, limit)
    low.set_xscale("log")
    low.set_xlim(*LOW_RATES)
    ticks = [0.05, 0.1, 0.2, 0.3, 0.5]
    low.set_xticks(ticks, [f"{t:g}" for t in ticks])
    low.xaxis.set_minor_formatter(NullFormatter())  # no "4x10^-1" between the labelled rates
    if low_psnr:
        low.set_ylim(min(low_psnr) - 0.5, max(low_psnr) + 0.5)
    low.set_title(f"low rates, {LOW_RATES[0]:g}–{LOW_RATES[1]:g} bpp (log scale)")
    for axis, label in ((full, "bits per pixel (whole file)"), (low, "bits per pixel (whole file, log)"),
                        (ms_axis, "bits per pixel (whole file)")):  # fmt: skip
        axis.set_xlabel(label)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # MS-SSIM may have no curve
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
    plotted = plot_curves(curves, out_dir / "rd.png", plot_title(outcome, info.image_set))
    write_report(outcome, curves, info, out_dir / "report.md", "rd.png" if plotted else None)
    return curves
