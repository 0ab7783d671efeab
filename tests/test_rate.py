"""Rate control: targets as settings, the controller's steering, and encodes that land or say so."""

from __future__ import annotations

import argparse
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

import ccnn
from ccnn.cli import main
from ccnn.encoder.rate import MAX_STEP, RateController
from ccnn.errors import ConfigError
from ccnn.options import parse_size
from ccnn.settings import RateTarget


@pytest.mark.parametrize(
    ("text", "size"), [("123", 123), ("50k", 50_000), ("50kB", 50_000), ("1.5M", 1_500_000), (" 2K ", 2000)]
)
def test_sizes_take_k_and_m_suffixes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["abc", "1.5", "k", "10q"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_targets_are_settings() -> None:
    options = ccnn.EncoderOptions("default", target_bpp=0.5)
    assert options.rate_target == RateTarget("bpp", 0.5)
    config = options.resolve(pixels=768 * 512)
    assert config.rate_target == RateTarget("bpp", 0.5) and config.quality == 5  # typical 0.58 bpp
    assert ccnn.EncoderOptions("default", target_psnr=26.0).resolve().quality == 1
    assert ccnn.EncoderOptions("fast", quality=7, max_bytes=9000).resolve().quality == 7
    assert ccnn.EncoderOptions("default").resolve().rate_target is None
    with pytest.raises(ConfigError, match="one target"):
        ccnn.EncoderOptions("default", target_bpp=0.5, max_bytes=1000)
    with pytest.raises(ConfigError, match="target_psnr applies to the fast or default preset only"):
        ccnn.EncoderOptions("paper", target_psnr=30)
    with pytest.raises(ConfigError, match="max_bytes must be a whole number"):
        ccnn.EncoderOptions("fast", max_bytes=1000.5)
    plain = ccnn.EncoderOptions("fast").fingerprint()
    assert ccnn.EncoderOptions("fast", target_bpp=0.5).fingerprint() != plain


def test_controller_steers_towards_the_target() -> None:
    size = RateController(RateTarget("bpp", 0.5), pixels=10_000)
    assert size.steer(1.0, file_bpp=0.6, psnr=30.0) < 1.0 < size.steer(1.0, file_bpp=0.4, psnr=30.0)
    assert size.steer(1.0, file_bpp=100.0, psnr=30.0) == pytest.approx(1.0 / MAX_STEP)
    quality = RateController(RateTarget("psnr", 32.0), pixels=10_000)
    assert quality.steer(1.0, file_bpp=1.0, psnr=30.0) > 1.0 > quality.steer(1.0, file_bpp=1.0, psnr=34.0)
    # a real packing that came out 10% larger than estimated makes the controller aim lower
    size.calibrate(estimated_bpp=0.5, estimated_psnr=30.0, file_bytes=687, psnr=29.5)
    assert size.correction == pytest.approx(1.0992) and size.steer(1.0, file_bpp=0.5, psnr=30.0) < 1.0


def test_when_a_target_counts_as_reached() -> None:
    bpp = RateController(RateTarget("bpp", 1.0), pixels=8000)  # 1 bpp is 1000 bytes
    assert bpp.reached(1029, 0.0) and bpp.reached(971, 0.0) and not bpp.reached(1031, 0.0)
    limit = RateController(RateTarget("bytes", 1000), pixels=8000)
    assert limit.reached(1000, 0.0) and limit.reached(950, 0.0)
    assert not limit.reached(1001, 0.0) and not limit.reached(949, 0.0)
    psnr = RateController(RateTarget("psnr", 30.0), pixels=8000)
    assert psnr.reached(5000, 30.0) and not psnr.reached(5000, 29.99)
    assert "missed at most 1000 bytes: 1001 bytes" in limit.outcome(1001, 30.0)


def test_training_follows_the_target(crop: np.ndarray) -> None:
    """The same crop and steps, two targets: the controller moves the file towards each."""
    low = ccnn.compress_image(crop, "fast", steps=120, seed=1, target_bpp=1.0)
    high = ccnn.compress_image(crop, "fast", steps=120, seed=1, target_bpp=2.5)
    assert low.bpp < high.bpp and low.psnr < high.psnr
    assert low.target is not None and low.target.startswith(("reached", "missed"))
    plain = ccnn.compress_image(crop, "fast", steps=120, seed=1)
    assert plain.target is None and plain.target_reached


def test_an_unreachable_target_writes_the_closest_file_and_fails(tmp_path: Path, crop_png: Path) -> None:
    out = tmp_path / "tiny.ccnn"
    args = ["compress", str(crop_png), "-o", str(out), "--preset", "fast", "--steps", "40", "--seed", "1"]
    args.append("--quiet")
    assert main([*args, "--target-size", "0.1k"]) == 1
    assert out.exists() and len(out.read_bytes()) > 100
    assert math.isfinite(ccnn.read_info(out).bpp)


def test_the_target_is_in_the_file_and_in_info(tmp_path: Path, crop: np.ndarray, capsys) -> None:
    result = ccnn.compress_image(crop, "fast", steps=30, seed=1, target_psnr=20.0)
    info = ccnn.read_info(result.data)
    assert info.note == "target PSNR 20 dB" and info.total_bytes == len(result.data)
    assert info.as_dict()["bytes"]["encoder_note"] == len(info.note)
    path = tmp_path / "t.ccnn"
    path.write_bytes(result.data)
    assert main(["info", str(path)]) == 0
    assert "encoder       target PSNR 20 dB" in capsys.readouterr().out
    assert ccnn.read_info(ccnn.compress_image(crop, "fast", steps=3, seed=1).data).note == ""
    # a note of bad text is refused as a corrupted file
    body = result.data[:-4].replace(b"target PSNR 20 dB", b"target PSNR 20 d\xff")
    with pytest.raises(ccnn.FormatError, match="encoder note"):
        ccnn.read_info(body + zlib.crc32(body).to_bytes(4, "little"))


def test_the_best_packed_file_is_kept() -> None:
    limit = RateController(RateTarget("bytes", 1000), pixels=8000)
    # within [950, 1000] the best PSNR wins; else the largest under the limit; never one over it
    assert limit.choose([(990, 30.0), (960, 31.0), (1010, 35.0)]) == 1
    assert limit.choose([(900, 30.0), (1001, 35.0), (800, 29.0)]) == 0
    assert limit.choose([(1200, 30.0), (1100, 29.0)]) == 1
    bpp = RateController(RateTarget("bpp", 1.0), pixels=8000)
    assert bpp.choose([(1200, 33.0), (1090, 32.0)]) == 1  # neither within 3%: the nearest
    quality = RateController(RateTarget("psnr", 30.0), pixels=8000)
    assert quality.choose([(900, 30.5), (800, 30.1), (700, 29.0)]) == 1  # the smallest that reaches it
    assert quality.choose([(900, 29.5), (800, 29.1)]) == 0  # none does: the best PSNR
