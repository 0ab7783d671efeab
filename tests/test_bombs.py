"""Files within the per-array limits that would still take gigabytes or minutes are refused from the header.

The bombs (tests/bombs.py) are hand-made files with valid checksums; benchmarks/bombs.py
measures what each costs to decode.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import ccnn
from ccnn.errors import LimitError
from ccnn.format import container as bitstream
from ccnn.format.spec import DecoderSpec, LatentMode, LayerSpec
from ccnn.settings import RD_NETWORKS

from .bombs import DATA, bombs

REFUSED = ("stride1-8192", "deep-512")


@pytest.mark.parametrize("name", REFUSED)
def test_bomb_refused_at_once(name: str) -> None:
    data = bombs()[name]
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"to decode \(the decoder allows"):
        ccnn.decompress(data)
    with pytest.raises(LimitError, match=r"^decoding"):
        ccnn.read_info(data)
    assert time.perf_counter() - start < 1.0


def test_memory_bomb_is_refused_for_memory() -> None:
    with pytest.raises(LimitError, match="MiB of memory"):
        ccnn.read_info(bombs()["stride1-8192"])


def test_work_bomb_is_refused_for_work() -> None:
    with pytest.raises(LimitError, match="multiply-adds"):
        ccnn.read_info(bombs()["deep-512"])


def test_cheap_bombs_pass_the_header_checks() -> None:
    """These cost what a legitimate file of their size costs (benchmarks/bombs.py): no refusal."""
    for name in ("one-layer-8192", "real-4096", "fine-largest"):
        info = ccnn.read_info(bombs()[name])
        peak, work = bitstream.decode_cost(info.spec, info.height, info.width)
        assert peak < bitstream.MAX_DECODE_BYTES and work < bitstream.MAX_DECODE_WORK


def _rd_spec(network: str) -> DecoderSpec:
    encoder, decoder = RD_NETWORKS[network]
    return DecoderSpec(
        layers=decoder,
        latent_channels=encoder[-1].channels,
        latent_stride=int(np.prod([layer.stride for layer in decoder])),
        slope=0.1,
        latent_mode=LatentMode.INTEGER,
        output_activation=False,
        latent_context=True,
    )


def _largest_height(spec: DecoderSpec, width: int) -> int:
    """The tallest image of ``width`` columns that the per-array limits alone admit."""
    memory, work = bitstream.MAX_DECODE_BYTES, bitstream.MAX_DECODE_WORK
    try:
        bitstream.MAX_DECODE_BYTES = bitstream.MAX_DECODE_WORK = 1 << 62
        lo, hi = 1, 8192
        while lo < hi:
            middle = (lo + hi + 1) // 2
            try:
                bitstream.check_decodable(spec, middle, width)
                lo = middle
            except LimitError:
                hi = middle - 1
        return lo
    finally:
        bitstream.MAX_DECODE_BYTES, bitstream.MAX_DECODE_WORK = memory, work


@pytest.mark.parametrize("network", sorted(RD_NETWORKS))
def test_largest_legitimate_images_pass(network: str) -> None:
    """Every network decodes the largest images of the documented limits (64 megapixels, 32768
    pixels a side) within the totals: banded decoding bounds its memory by the width."""
    spec = _rd_spec(network)
    assert _largest_height(spec, 8192) == 8192
    for height, width in ((8192, 8192), (2048, 32768), (32768, 2048), (4000, 6000)):
        bitstream.check_decodable(spec, height, width)


@pytest.mark.parametrize(("ratio", "kernel"), [(32, 36), (16, 16), (8, 9), (4, 10), (2, 2)])
def test_paper_preset_at_its_largest_passes(ratio: int, kernel: int) -> None:
    spec = DecoderSpec(
        layers=(LayerSpec(3, kernel, ratio),),
        latent_channels=3 * ratio,
        latent_stride=ratio,
        slope=0.1,
        latent_mode=LatentMode.BYTE,
        output_activation=True,
    )
    bitstream.check_decodable(spec, _largest_height(spec, 8192), 8192)


def test_encoder_says_compressing() -> None:
    """The encoder runs the same checks before training, and names its own operation."""
    pixels = np.zeros((1216, 1536, 3), dtype=np.uint8)  # 64 x 64 taps at stride 1: too much work
    with pytest.raises(LimitError, match=r"^compressing this 1536x1216 image would make a file that needs"):
        ccnn.compress(pixels, "paper", ratio=1, kernel=64, steps=1)
    spec = DecoderSpec(
        layers=(LayerSpec(256, 2, 1),) * 15 + (LayerSpec(3, 2, 1),),
        latent_channels=1,
        latent_stride=1,
        slope=0.1,
        latent_mode=LatentMode.INTEGER,
        output_activation=False,
    )
    with pytest.raises(LimitError, match=r"^compressing this 512x512 image would make a file that needs"):
        bitstream.check_decodable(spec, 512, 512, operation="compressing")


@pytest.mark.parametrize("path", sorted(DATA.glob("*.ccnn")), ids=lambda p: p.stem)
def test_golden_files_pass(path) -> None:
    info = ccnn.read_info(path.read_bytes())
    bitstream.check_decodable(info.spec, info.height, info.width)


def test_normal_encode_still_decodes(encoded: ccnn.EncodeResult) -> None:
    info = ccnn.read_info(encoded.data)
    pixels = ccnn.decompress(encoded.data)
    assert pixels.shape[:2] == (info.height, info.width)
