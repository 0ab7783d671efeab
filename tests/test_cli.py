"""The ccnn command as a user runs it: exit codes, one-line errors, no clobbering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert (tmp_path / "photo.png").exists()


def test_refuses_to_overwrite(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    source = tmp_path / "x.ccnn"
    source.write_bytes(encoded.data)
    existing = tmp_path / "x.png"
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
