"""Rate control: targets as settings, the controller's steering, and encodes that land or say so."""

from __future__ import annotations

import argparse
import itertools
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


def test_dominated_files_are_not_the_nearest() -> None:
    """No file reaches the target: a larger file of lower PSNR than another is never kept."""
    bpp = RateController(RateTarget("bpp", 1.0), pixels=8000)  # 1000 bytes
    # the 780-byte file (an early calibration, say) is nearer, but the 700-byte one is better
    assert bpp.choose([(700, 33.0), (780, 24.6), (650, 32.0)]) == 0
    limit = RateController(RateTarget("bytes", 1000), pixels=8000)
    assert limit.choose([(900, 30.0), (920, 25.0), (1200, 40.0)]) == 0


def test_size_side() -> None:
    bpp = RateController(RateTarget("bpp", 1.0), pixels=8000)
    assert [bpp.size_side(b) for b in (969, 971, 1029, 1031)] == [-1, 0, 0, 1]
    limit = RateController(RateTarget("bytes", 1000), pixels=8000)
    assert [limit.size_side(b) for b in (949, 950, 1000, 1001)] == [-1, 0, 0, 1]


def test_corrective_pass_follows_the_work() -> None:
    """The corrective pass is a share of the plain encode's work, whatever the image's size:
    the 40% of the whole-image steps it was made a 256x192 image's pass a third of its work."""
    from ccnn.encoder.encode import CORRECTIVE_WORK_SHARE, corrective_steps, training_work
    from ccnn.settings import training_phases

    for preset in ("fast", "default"):
        for height, width in ((192, 256), (512, 768), (480, 640)):
            options = ccnn.EncoderOptions(preset, target_bpp=0.5)
            config = options.resolve(pixels=height * width)
            phases = training_phases(config)
            *costs, total = training_work(phases, config.steps, height, width)
            extra = corrective_steps(phases, config.steps, height, width)
            share = extra * costs[-1] / total
            shortest = phases[-1].eval_interval  # one evaluation at least
            assert extra == shortest or abs(share - CORRECTIVE_WORK_SHARE) < 0.005, (preset, height, share)
            assert extra >= shortest
            refine_steps = round(config.steps * config.refine_share)
            if height * width < 768 * 512:
                # the old rule, 40% of the whole-image steps, was well over the share of the work
                assert 0.4 * refine_steps * costs[-1] / total > 1.5 * CORRECTIVE_WORK_SHARE
                assert extra < 0.4 * refine_steps


def test_training_work_counts_the_steps() -> None:
    from ccnn.encoder.encode import STEP_OVERHEAD_PIXELS, training_work
    from ccnn.settings import training_phases

    config = ccnn.EncoderOptions("fast").resolve(pixels=64 * 64)
    phases = training_phases(config)
    crop, image, total = training_work(phases, 10, 64, 64)
    assert image == 64 * 64 + STEP_OVERHEAD_PIXELS
    assert crop == min(64 * 64, phases[0].crops_per_step * phases[0].crop_size**2) + STEP_OVERHEAD_PIXELS
    crops = round(10 * phases[0].share)
    assert total == crops * crop + (10 - crops) * image


def test_precisions_fit_a_near_miss() -> None:
    """The weight precisions move off their optimum, a layer's bit at a time, to the nearest
    ones whose file reaches the size; a file that no move brings in is left as it was."""
    from ccnn.encoder.encode import FIT_BITS, _fit_precisions, _precision_chain

    assert _precision_chain((4, 4, 4), 1)[:4] == [(5, 4, 4), (5, 5, 4), (5, 5, 5), (6, 5, 5)]
    assert _precision_chain((4, 4), -1)[-1] == (4 - FIT_BITS,) * 2
    assert _precision_chain((0, 1), -1)[0] == (0, 0)  # within the precisions' range

    def size_of(precisions: tuple[int, ...]) -> int:  # 40 bytes per bit of each layer
        return 900 + 40 * sum(precisions)

    limit = RateController(RateTarget("bytes", 1500), pixels=8000)  # 1425..1500 bytes
    assert size_of((4, 4, 4)) == 1380
    fitted = _fit_precisions((4, 4, 4), size_of, limit)
    assert fitted == (5, 5, 4) and size_of(fitted) == 1460
    assert _fit_precisions((6, 6, 6), size_of, limit) == (5, 5, 5)  # 1620 bytes: down to 1500
    assert _fit_precisions((5, 5, 4), size_of, limit) == (5, 5, 4)  # reached already
    far = RateController(RateTarget("bytes", 3000), pixels=8000)
    assert _fit_precisions((4, 4, 4), size_of, far) == (4, 4, 4)  # beyond FIT_BITS: unchanged
    narrow = RateController(RateTarget("bpp", 1.0), pixels=8000)  # 970..1030 bytes

    def coarse(precisions: tuple[int, ...]) -> int:  # 150 bytes per bit: steps over the window
        return 450 + 150 * sum(precisions)

    assert _fit_precisions((1, 1, 1), coarse, narrow) == (1, 1, 1)


def test_packed_psnr_is_the_decoders(crop: np.ndarray) -> None:
    """The PSNR a packing reports (from the precision search's exact restoration) is the one
    the file decodes to, for the searched, the given and the fitted precisions alike."""
    from ccnn.encoder.encode import _pack, _precision_chain
    from ccnn.encoder.train import Trainer
    from ccnn.format.decode import decode
    from ccnn.format.spec import Metadata
    from ccnn.metrics import psnr
    from ccnn.settings import training_phases

    config = ccnn.EncoderOptions("fast", steps=40, seed=1).resolve(pixels=crop.shape[0] * crop.shape[1])
    result = Trainer(crop, config).run(training_phases(config))
    (searched,) = _pack(crop, config, result, None, Metadata())
    chain = _precision_chain(searched.precisions, 1)
    (given,) = _pack(crop, config, result, None, Metadata(), precisions=chain[0])
    assert given.precisions == chain[0] and len(given.data) > len(searched.data)
    # a limit that the optimum undershoots by more than 5%, and some precisions up the chain meet
    sizes = itertools.chain(
        [len(given.data)],
        (len(_pack(crop, config, result, None, Metadata(), precisions=c)[0].data) for c in chain[1:]),
    )
    limit = next(size for size in sizes if 0.95 * size > len(searched.data))
    controller = RateController(RateTarget("bytes", limit), crop.shape[0] * crop.shape[1])
    optimum, fitted = _pack(crop, config, result, None, Metadata(), fit=controller)
    for packed in (searched, given, fitted):
        assert packed.psnr == pytest.approx(psnr(crop, decode(packed.data)[:, :, : crop.shape[2]]), abs=1e-9)
    assert optimum.precisions == searched.precisions  # the file at the optimum comes first
    assert controller.reached(len(fitted.data), fitted.psnr) and fitted.precisions in chain
