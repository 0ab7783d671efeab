"""The ccnn command as a user runs it: exit codes, one-line errors, no clobbering."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ccnn
from ccnn.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccnn.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_compress_decompress_info(tmp_path: Path, crop_png: Path, capsys) -> None:
    out = tmp_path / "x.ccnn"
    assert (
        main(["compress", str(crop_png), "-o", str(out), "--preset", "fast", "--steps", "10", "--quiet"]) == 0
    )
    assert main(["info", str(out)]) == 0
    assert "total" in capsys.readouterr().out
    back = tmp_path / "back.png"
    assert main(["decompress", str(out), "-o", str(back), "--quiet"]) == 0
    with Image.open(back) as image:
        assert image.size == (96, 64) and image.format == "PNG"
    assert main(["decompress", str(out), "-o", str(tmp_path / "back.bmp"), "--quiet"]) == 0


def test_default_output_names(tmp_path: Path, crop: np.ndarray) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(crop).save(source)
    before = source.read_bytes()
    assert main(["compress", str(source), "--preset", "fast", "--steps", "5", "--quiet"]) == 0
    assert (tmp_path / "photo.ccnn").exists()
    assert source.read_bytes() == before  # the input is never touched
    source.unlink()
    assert main(["decompress", str(tmp_path / "photo.ccnn"), "--quiet"]) == 0
    assert (tmp_path / "photo-ccnn.png").exists()  # never photo.png, the original's name


def test_refuses_to_overwrite(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    existing = tmp_path / "x-ccnn.png"
    existing.write_bytes(b"precious")
    result = run("decompress", str(source))
    assert result.returncode == 1
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert existing.read_bytes() == b"precious"
    assert main(["decompress", str(source), "-f", "--quiet"]) == 0
    assert existing.read_bytes() != b"precious"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_input_exit_1_one_line(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    bad = tmp_path / "bad.ccnn"
    bad.write_bytes(encoded.data[: len(encoded.data) // 2])
    (tmp_path / "empty.ccnn").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    cases = [
        ("decompress", str(bad), "-o", str(tmp_path / "o1.png")),
        ("decompress", str(tmp_path / "empty.ccnn"), "-o", str(tmp_path / "o2.png")),
        ("info", str(bad)),
        ("compress", str(tmp_path / "text.png"), "-o", str(tmp_path / "o.ccnn")),
        ("compress", str(tmp_path / "missing.png")),
        ("decompress", str(tmp_path / "missing.ccnn")),
    ]
    for args in cases:
        result = run(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ccnn: error:"), (args, result.stderr)
    assert not (tmp_path / "o1.png").exists() and not (tmp_path / "o.ccnn").exists()


def test_bad_usage_exit_2(crop_png: Path) -> None:
    assert run().returncode == 2
    assert run("compress").returncode == 2
    assert run("compress", str(crop_png), "--preset", "nope").returncode == 2
    for args in (("--quality", "0"), ("--ratio", "4"), ("--steps", "0"), ("--slope", "-1")):
        result = run("compress", str(crop_png), "--preset", "fast", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_output_folder_is_checked_before_training(tmp_path: Path, crop_png: Path) -> None:
    """A file where the output's folder should be is refused at once, not after the training."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"x")
    result = run("compress", str(crop_png), "-o", str(blocker / "x.ccnn"), "--steps", "100000")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("ccnn: error:") and "is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_option_values_are_one_line_usage_errors(tmp_path: Path, crop_png: Path) -> None:
    out = str(tmp_path / "x.ccnn")
    for options in (
        ("--device", "foo"),
        ("--seed", "-1"),
        ("--seed", "99999999999999999999"),
        ("--seconds", "nan"),
        ("--seconds", "inf"),
        ("--quality", "x"),
        *([] if torch.cuda.is_available() else [("--device", "cuda")]),
    ):
        result = run("compress", str(crop_png), "-o", out, "--preset", "fast", *options)
        assert result.returncode == 2, options
        assert result.stderr.startswith("ccnn: error:") and len(result.stderr.strip().splitlines()) == 1
    assert not Path(out).exists()


def test_dash_is_refused_until_pipes_are_supported(tmp_path: Path, crop_png: Path) -> None:
    (tmp_path / "-").write_bytes(b"not read")
    for args in (("compress", str(crop_png), "-o", "-"), ("decompress", "-"), ("info", "-")):
        result = subprocess.run(
            [sys.executable, "-m", "ccnn.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 2 and "'-'" in result.stderr, args
    assert (tmp_path / "-").read_bytes() == b"not read"


def test_sigterm_stops_compress_like_ctrl_c(tmp_path: Path, crop_png: Path) -> None:
    out = tmp_path / "x.ccnn"
    process = subprocess.Popen(
        [sys.executable, "-m", "ccnn.cli", "compress", str(crop_png), "-o", str(out), "--steps", "100000"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # start-up and the first training steps
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_out_of_memory_is_a_ccnn_error(monkeypatch, crop: np.ndarray) -> None:
    """torch reports a failed allocation as a RuntimeError; callers get ccnn's own error instead."""
    import ccnn.encoder.encode

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6 GB")

    monkeypatch.setattr(ccnn.encoder.encode, "encode", fail)
    with pytest.raises(ccnn.CCNNError, match="out of memory"):
        ccnn.compress(crop, "fast", steps=1)


def test_python_dash_m_ccnn_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ccnn", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"ccnn {ccnn.__version__}"


def test_progress_follows_the_budget_nearer_its_end() -> None:
    from ccnn.options import budget_percent

    def event(step: int, seconds: float) -> ccnn.Progress:
        return ccnn.Progress(step, 1000, seconds, 10.0, 30.0, 0.5, "crops")

    assert budget_percent(event(250, 1.0)) == 25  # steps bind
    assert budget_percent(event(100, 7.5)) == 75  # time binds
    assert budget_percent(event(1000, 12.0)) == 100


def test_decompress_to_a_lossy_format_says_so(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    lossy = run("decompress", str(source), "-o", str(tmp_path / "x.jpg"), "--quiet")
    assert lossy.returncode == 0 and "lossy" in lossy.stderr and len(lossy.stderr.splitlines()) == 1
    lossless = run("decompress", str(source), "-o", str(tmp_path / "x.png"), "--quiet")
    assert lossless.returncode == 0 and lossless.stderr == ""
