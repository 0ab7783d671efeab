"""``ccnn bench`` and ``ccnn reproduce`` as a user runs them: outputs, cache, skips, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import ccnn.bench.report as report_module
import ccnn.bench.reproduce as reproduce_module
import ccnn.bench.run as run_module
from ccnn.bench.codecs import Codec, HeifCodec
from ccnn.bench.report import Curve
from ccnn.cli import main

from .conftest import sample_crop

HAS_MATPLOTLIB = __import__("importlib").util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 176x176 crops of the bundled sample (large enough for MS-SSIM)."""
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(sample_crop(0, 0, 176, 176)).save(folder / "a.png")
    Image.fromarray(sample_crop(16, 80, 176, 176)).save(folder / "b.png")
    return folder


QUICK = [
    "--codecs", "ccnn,jpeg,webp",
    "--qualities", "jpeg=10:90:20",
    "--qualities", "webp=20,50,80",
    "--qualities", "ccnn=1,8",
    "--preset", "fast", "--steps", "4", "--seconds", "300", "--threads", "1", "--quiet",
]  # fmt: skip
# (the 300 s budget is never reached: it keeps the 4 steps whole on a loaded machine)


def count_measurements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the codec of every measurement actually made (not taken from the cache)."""
    calls: list[str] = []
    real = run_module.measure

    def counting(codec, pixels, quality):  # type: ignore[no-untyped-def]
        calls.append(codec.name)
        return real(codec, pixels, quality)

    monkeypatch.setattr(run_module, "measure", counting)
    return calls


def test_bench_writes_everything_and_resumes(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "results"
    calls = count_measurements(monkeypatch)
    assert main(["bench", str(images), *QUICK, "-o", str(out)]) == 0
    assert len(calls) == 2 * (2 + 5 + 3)

    with open(out / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 20 and {r["codec"] for r in rows} == {"ccnn", "jpeg", "webp"}
    for row in rows:
        assert float(row["bpp"]) > 0 and float(row["psnr_rgb"]) > 0 and 0 <= float(row["ms_ssim_rgb"]) <= 1
        assert row["threads"] == "1"
    assert all(r["latent_bytes"].isdigit() and r["steps"] == "4" for r in rows if r["codec"] == "ccnn")

    for name, points in (("ccnn", 2), ("jpeg", 5), ("webp", 3)):
        data = json.loads((out / f"{name}.json").read_text())
        assert set(data) == {"name", "description", "results"}
        results = data["results"]
        for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
            assert len(results[key]) == points, (name, key)
    report = (out / "report.md").read_text()
    assert "ccnn bench" in report and "--steps 4" in report
    assert "## BD-rate against JPEG" in report and "| WebP |" in report
    assert "0.25 bpp" in report and "method=6" in report and "4:2:0" in report
    assert "## ccnn against every codec" in report and "not latent, at fixed rates" in report
    assert (out / "rd.png").exists() == HAS_MATPLOTLIB

    # a second run measures nothing: everything comes from the cache
    calls.clear()
    report_before = (out / "results.csv").read_text()
    assert main(["bench", str(images), *QUICK, "-o", str(out)]) == 0
    assert calls == []
    assert (out / "results.csv").read_text() == report_before

    # one codec's settings changed: only that codec is measured again
    changed = [a if a != "4" else "5" for a in QUICK]
    assert main(["bench", str(images), *changed, "-o", str(out)]) == 0
    assert calls == ["ccnn"] * 4

    # more points for one codec: only the new points are measured
    calls.clear()
    more = [a if a != "webp=20,50,80" else "webp=20,35,50,80" for a in changed]
    assert main(["bench", str(images), *more, "-o", str(out)]) == 0
    assert calls == ["webp"] * 2


def test_bench_without_a_folder_uses_the_sample_and_writes_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Nothing that only makes sense inside the repository: the bundled sample, ./ccnn-bench/."""
    monkeypatch.chdir(tmp_path)
    titles: list[str] = []
    real_plot = report_module.plot_curves

    def plot(curves, path, title=""):  # type: ignore[no-untyped-def]
        titles.append(title)
        return real_plot(curves, path, title)

    monkeypatch.setattr(report_module, "plot_curves", plot)
    assert (
        main(["bench", "--codecs", "jpeg,webp", "--qualities", "jpeg=30,70", "--qualities", "webp=50,90"])
        == 0
    )
    out = tmp_path / "ccnn-bench"
    assert (out / "report.md").exists() and (out / "results.csv").exists()
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert {r["image"] for r in rows} == {"sample"} and {r["width"] for r in rows} == {"256"}
    assert "1 from the bundled sample" in (out / "report.md").read_text()
    assert titles == ["1 image from the bundled sample"]
    assert "BD-rate vs JPEG  WebP" in capsys.readouterr().out  # with the range it covers
    assert (out / "rd.png").exists() == HAS_MATPLOTLIB


def test_plot_titles_name_the_preset_and_the_folder_never_its_path(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles: list[str] = []
    monkeypatch.setattr(report_module, "plot_curves", lambda curves, path, title="": titles.append(title))
    args = ["bench", str(images), "--codecs", "ccnn", "--qualities", "1", "--preset", "fast"]
    assert main([*args, "--steps", "2", "--threads", "1", "--quiet", "-o", str(tmp_path / "r")]) == 0
    assert titles == [f"ccnn preset fast · 2 images from {images.name}"]
    assert (
        str(images.parent)
        not in (tmp_path / "r" / "report.md").read_text().split("Made by")[1].split("\n", 2)[2]
    )


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib")
def test_plot_has_a_log_bpp_panel_for_low_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    saved: list[matplotlib.figure.Figure] = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(self))
    curve = Curve(Codec(name="jpeg", label="JPEG"), [1, 2, 3], [0.1, 0.4, 1.5], [25.0, 30.0, 36.0],
                  [None] * 3, [0.0] * 3, [0.0] * 3, [])  # fmt: skip
    assert report_module.plot_curves({"jpeg": curve}, tmp_path / "rd.png", "title")
    axes = saved[0].axes
    low = [axis for axis in axes if axis.get_xscale() == "log"]
    assert len(low) == 1 and low[0].get_xlim() == pytest.approx(report_module.LOW_RATES)
    assert saved[0]._suptitle.get_text() == "title"


def test_bench_in_parallel(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "parallel"
    args = ["bench", str(images), "--codecs", "jpeg", "--qualities", "30,70", "--jobs", "2", "--quiet"]
    assert main([*args, "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == 4 and all(r["threads"] == "1" for r in rows)
    assert "Jobs: 2, each allowed 1 thread" in (out / "report.md").read_text()


def test_missing_codec_is_skipped_with_a_note(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(HeifCodec, "missing", lambda self: "pillow-heif is not installed")
    out = tmp_path / "skip"
    args = [
        "bench",
        str(images),
        "--codecs",
        "jpeg,heif",
        "--qualities",
        "jpeg=50,80",
        "--quiet",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert "skipping heif: pillow-heif is not installed" in capsys.readouterr().err
    assert "| heif | **skipped**: pillow-heif is not installed |" in (out / "report.md").read_text()
    assert not (out / "heif.json").exists()


def test_exit_codes(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "x")
    usage = [
        ("--codecs", "jpeg,png"),
        ("--codecs", "jpeg", "--qualities", "ten"),
        ("--codecs", "jpeg,webp", "--qualities", "10,20"),
        ("--codecs", "jpeg", "--qualities", "avif=10"),
        ("--codecs", "ccnn", "--quality", "3"),
        ("--codecs", "ccnn", "--qualities", "99"),
        ("--codecs", "ccnn", "--preset", "fast", "--kernel", "5"),
        ("--jobs", "0"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(("bench", str(images), *extra, "-o", out, "--quiet"), 2) for extra in usage]
    cases += [
        (("bench", str(folder), "--codecs", "jpeg", "-o", out, "--quiet"), 1)
        for folder in (tmp_path / "no", empty)
    ]
    image = str(images / "a.png")  # explicit: the default image (kodim08) is outside the repository
    cases += [
        (("reproduce", "--image", image, "--seconds", "-1", "-o", out), 2),
        (("reproduce", "--image", image, "--ratios", "2,99", "-o", out), 2),
        (("reproduce", "--image", str(tmp_path / "missing.png"), "-o", out, "--seconds", "1"), 1),
    ]
    for args, code in cases:
        assert main(list(args)) == code, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ccnn: error:"), (args, lines)
    assert not Path(out).exists()
    # as a user runs it: a separate process, one line, no traceback
    result = subprocess.run(
        [sys.executable, "-m", "ccnn.cli", "bench", str(images), "--codecs", "nope", "-o", out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.startswith("ccnn: error: unknown codec nope")
    assert "Traceback" not in result.stderr and not Path(out).exists()


def test_reproduce_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "tiny.png"
    Image.fromarray(sample_crop(96, 120, 64, 96)).save(image)
    out, cache = tmp_path / "docs", tmp_path / "cache"
    args = [
        "reproduce",
        "--image",
        str(image),
        "--seconds",
        "0.4",
        "--curve-seconds",
        "0.2,0.4",
        "--ratios",
        "4,8",
    ]
    args += ["--threads", "1", "--quiet", "-o", str(out), "--cache", str(cache)]
    assert main(args) == 0
    poster = (out / "poster.md").read_text()
    assert "Made by `ccnn reproduce" in poster and "--seconds 0.4" in poster
    assert "reduced budget" in poster
    verdicts = {"supported", "partly supported", "not supported", "untested", "inconclusive"}
    claims = [line for line in poster.splitlines() if line.startswith("| ") and "**" in line]
    assert len(claims) == 5
    assert all(any(f"**{v}**" in line for v in verdicts) for line in claims)
    assert "About 10 minutes" in poster and "**untested**" in poster  # 0.4 s is not 10 minutes
    if HAS_MATPLOTLIB:
        for name in ("poster-a-size.png", "poster-b-filters.png", "poster-c-learning.png"):
            assert (out / name).exists()
    assert (out / "poster-d-crop.png").exists()
    assert len(list(cache.glob("*.json"))) == 6  # 2 kernels x (2 ratios + 1 extra budget)

    # rerun: every training comes from the cache
    def fail(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained again")

    monkeypatch.setattr(reproduce_module, "train_one", fail)
    assert main(args) == 0
    assert (out / "poster.md").read_text() == poster

    # the encoder's code changed (the keys no longer match): --from-cache still writes the poster
    for path in cache.iterdir():
        path.rename(path.with_name("old" + path.name))
    assert main([*args, "--from-cache"]) == 0
    assert "taken from the cache with `--from-cache`" in (out / "poster.md").read_text()
    assert (out / "poster-d-crop.png").exists()
    capsys.readouterr()
    assert main([*args[:-4], "--seconds", "0.5", "--from-cache", "-o", str(out), "--cache", str(cache)]) == 1
    assert "no cached training for k10 λ4 0.5s" in capsys.readouterr().err
