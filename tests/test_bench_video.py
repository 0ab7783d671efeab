"""``ccnn bench --video``: outputs, cache, rates and PSNRs, BD tables, bad input.

The clip is generated (a few tiny frames of a moving pattern, as in test_video.py) and written
as Y4M, so nothing needs ../shared; ccnn trains a handful of steps. The classical codecs need
PyAV (the ``[video]`` extra): those tests skip without it.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ccnn.bench.video import X264Codec, _annex_b_units
from ccnn.cli import main
from ccnn.videoio import y4m_bytes

from .test_video import moving_clip

# ccnn trains 4 steps (clip) and 3 steps (each all-intra frame): the bytes are seeded, not good
QUICK = [
    "--preset", "fast", "--steps", "4", "--intra-steps", "3", "--intra-stride", "2",
    "--qualities", "ccnn=2,8", "--qualities", "ccnn-intra=1,6", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = moving_clip(4, 64, 96)  # x265 is not run on frames smaller than its 64x64 block
    path = tmp_path_factory.mktemp("clips") / "drift.y4m"
    path.write_bytes(b"".join(y4m_bytes([clip], clip.width, clip.height, clip.fps)))
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv") as stream:
        return list(csv.DictReader(stream))


def test_video_bench_with_every_codec(clip_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    out = tmp_path / "out"
    args = ["bench", "--video", str(clip_path), *QUICK, "--crfs", "20,40", "--qualities", "svtav1=30,60"]
    args += ["--qualities", "mjpeg=3,20", "--frames", "3", "--fps", "10", "-o", str(out)]
    assert main(args) == 0
    rows = _rows(out)
    assert {r["codec"] for r in rows} == {"ccnn", "ccnn-intra", "x264", "x265", "svtav1", "mjpeg"}
    assert len(rows) == 12
    for row in rows:
        assert row["frames"] == "3"  # --frames
        frames = int(row["frames"])
        bpp = 8 * float(row["bytes"]) / (frames * 64 * 96)
        assert float(row["bpp"]) == pytest.approx(bpp, rel=1e-4)
        assert float(row["kbps"]) == pytest.approx(8 * float(row["bytes"]) * 10 / frames / 1000, rel=1e-4)
        yuv = (6 * float(row["psnr-y"]) + float(row["psnr-u"]) + float(row["psnr-v"])) / 8
        assert float(row["psnr-yuv"]) == pytest.approx(yuv, abs=0.05)  # mean of per-frame means
        assert float(row["encode_us_per_pixel"]) >= 0 and float(row["decode_fps"]) > 0
    intra = [r for r in rows if r["codec"] == "ccnn-intra"]
    assert all(r["frames_measured"] == "2" for r in intra)  # frames 0 and 2 of 3
    x264 = [r for r in rows if r["codec"] == "x264"]
    assert all(r["intra_frames"] == "1" for r in x264)  # one intra frame: the first
    assert float(x264[0]["psnr-yuv"]) > float(x264[1]["psnr-yuv"])  # CRF 20 better than 40
    document = json.loads((out / "results.json").read_text())
    assert {b["anchor"] for b in document["bd_rates"]} == {"x264", "ccnn-intra", "x265", "svtav1", "mjpeg"}
    report = (out / "report.md").read_text()
    assert "vs x264 medium psnr" in report and "vs all-intra ccnn" in report
    assert "one frame in 2" in report and "rd.png" in report
    assert (out / "rd.png").read_bytes().startswith(b"\x89PNG")


def test_video_bench_resumes_from_its_cache(clip_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["bench", "--video", str(clip_path), "--codecs", "ccnn,ccnn-intra", *QUICK, "-o", str(out)]
    assert main(args) == 0
    first = _rows(out)
    assert {r["codec"] for r in first} == {"ccnn", "ccnn-intra"}
    assert main(args) == 0  # from the cache: the same bytes and PSNRs
    again = _rows(out)
    for a, b in zip(first, again):
        assert (a["bytes"], a["psnr-yuv"]) == (b["bytes"], b["psnr-yuv"])
    lines = (out / "cache" / "ccnn.jsonl").read_text().splitlines()
    assert len(lines) == 2  # nothing measured twice


def test_x264_settings_sei_is_not_counted() -> None:
    stream = b"\x00\x00\x01\x67abc" + b"\x00\x00\x01\x06" + b"x" * 20 + b"\x00\x00\x01\x65" + b"y" * 9
    assert [u[0] & 0x1F for u in _annex_b_units(stream)] == [7, 6, 5]
    assert X264Codec().uncounted(stream) == 3 + 1 + 20


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--codecs", "ccnn,h266"], 2, "unknown video codec"),
        (["--frames", "0"], 2, "--frames"),
        (["--qualities", "x264=60"], 2, "out of range"),
        (["--preset", "paper"], 2, "clips take"),
        (["--seconds", "3"], 2, "does not apply"),
    ],
)
def test_video_bench_bad_usage(
    clip_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    message: str,
) -> None:
    assert main(["bench", "--video", str(clip_path), *extra, "-o", str(tmp_path / "o")]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_video_bench_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    still = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(still)
    assert main(["bench", "--video", str(still), "-o", str(tmp_path / "o")]) == 1
    assert "a still image, not a clip" in capsys.readouterr().err
    assert main(["bench", "--video", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    cut = tmp_path / "cut.y4m"
    clip = moving_clip(2, 16, 16)
    cut.write_bytes(b"".join(y4m_bytes([clip], 16, 16, clip.fps))[:-10])
    assert main(["bench", "--video", str(cut), "-o", str(tmp_path / "o")]) == 1
    assert "truncated" in capsys.readouterr().err
    assert main(["bench", "--frames", "3"]) == 2  # a clip option without --video


def test_classical_codecs_without_pyav_are_skipped(
    clip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    assert (
        main(["bench", "--video", str(clip_path), "--codecs", "x264,mjpeg", "-o", str(tmp_path / "o")]) == 1
    )
    err = capsys.readouterr().err
    assert "skipping x264" in err and "needs PyAV" in err and "no codec could run" in err


def test_jobs_give_the_same_files(clip_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    common = ["bench", "--video", str(clip_path), "--codecs", "x264,mjpeg", "--crfs", "25,40", "--quiet"]
    common += ["--qualities", "mjpeg=4,16"]
    assert main([*common, "-o", str(tmp_path / "one")]) == 0
    assert main([*common, "--jobs", "2", "-o", str(tmp_path / "two")]) == 0
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [(r["codec"], r["bytes"], r["psnr-yuv"]) for r in one] == [
        (r["codec"], r["bytes"], r["psnr-yuv"]) for r in two
    ]
