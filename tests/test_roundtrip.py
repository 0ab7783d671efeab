"""End-to-end: real pixels in, a real .ccnn out, the same pixels back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ccnn
from ccnn.encoder.model import CCNN
from ccnn.metrics import psnr
from ccnn.settings import EncoderOptions

from .conftest import sample_crop


def test_roundtrip_reaches_quality_floor(crop: np.ndarray, encoded: ccnn.EncodeResult) -> None:
    decoded = ccnn.decompress(encoded.data)
    assert decoded.shape == crop.shape and decoded.dtype == np.uint8
    assert np.array_equal(decoded, encoded.decoded)
    assert psnr(crop, decoded) == pytest.approx(encoded.psnr)
    assert encoded.psnr > 21.0, "a short training should already restore the crop recognisably"
    assert encoded.bpp == pytest.approx(8 * len(encoded.data) / (crop.shape[0] * crop.shape[1]))


def test_info_breakdown_adds_up(encoded: ccnn.EncodeResult) -> None:
    info = ccnn.read_info(encoded.data)
    assert info.version == ccnn.FORMAT_VERSION
    assert (info.width, info.height, info.channels) == (96, 64, 3)
    assert info.total_bytes == len(encoded.data)
    assert min(info.header_bytes, info.weight_bytes, info.entropy_bytes, info.latent_bytes) > 0


@pytest.mark.parametrize("ratio,kernel", [(4, 10), (2, 10), (3, 7), (8, 5)])
def test_paper_preset_shapes(ratio: int, kernel: int) -> None:
    """The poster's layer: H/λ x W/λ x Dλ latent, and a restored image of the input's size."""
    config = EncoderOptions("paper", ratio=ratio, kernel=kernel).resolve()
    assert len(config.encoder) == 1 and len(config.decoder) == 1
    model = CCNN(config, channels=3)
    height, width = 8 * ratio, 12 * ratio
    latent = model.analyse(torch.rand(1, 3, height, width))
    assert latent.shape == (1, 3 * ratio, height // ratio, width // ratio)
    assert model.encoder_weights[0].shape == (3 * ratio, 3, kernel, kernel)
    assert model.restore(latent).shape == (1, 3, height, width)


def test_paper_preset_roundtrip_grayscale() -> None:
    gray = sample_crop(96, 64, 40, 52).mean(axis=2).astype(np.uint8)
    result = ccnn.compress_image(gray, "paper", steps=40, seed=0)
    info = ccnn.read_info(result.data)
    assert info.channels == 1 and info.spec.latent_channels == 4  # D·λ with D=1, λ=4
    assert info.spec.latent_mode is ccnn.format.LatentMode.BYTE
    decoded = ccnn.decompress(result.data)
    assert decoded.shape == (40, 52, 1)


def test_odd_sizes_are_padded_and_cropped() -> None:
    pixels = sample_crop(120, 150, 37, 53)
    result = ccnn.compress_image(pixels, "fast", steps=20, seed=0)
    assert ccnn.decompress(result.data).shape == (37, 53, 3)


def test_api_accepts_path_pil_and_array(crop_png, crop: np.ndarray) -> None:
    options = {"steps": 5, "seed": 3}
    from_path = ccnn.compress(crop_png, "fast", **options)
    with Image.open(crop_png) as image:
        from_pil = ccnn.compress(image, "fast", **options)
    from_array = ccnn.compress(crop, "fast", **options)
    png = crop_png.read_bytes()
    from_bytes = ccnn.compress(png, "fast", **options)
    from_view = ccnn.compress(memoryview(bytearray(png)), "fast", **options)
    from_stream = ccnn.compress(io.BytesIO(png), "fast", **options)
    with open(crop_png, "rb") as handle:
        from_file = ccnn.compress(handle, "fast", **options)
    from_string = ccnn.compress(str(crop_png), "fast", **options)
    assert from_path == from_pil == from_array == from_bytes == from_view == from_stream == from_file
    assert from_string == from_path


def test_api_reads_ccnn_files_from_bytes_files_and_paths(tmp_path: Path, encoded: ccnn.EncodeResult) -> None:
    path = tmp_path / "x.ccnn"
    path.write_bytes(encoded.data)
    with open(path, "rb") as handle:
        sources = [encoded.data, bytearray(encoded.data), memoryview(encoded.data), path, str(path), handle]
        for source in sources:
            if source is handle:
                handle.seek(0)
            assert np.array_equal(ccnn.decompress(source), encoded.decoded), type(source)
        handle.seek(0)
        assert ccnn.read_info(handle).total_bytes == len(encoded.data)
    assert ccnn.read_info(io.BytesIO(encoded.data)).total_bytes == len(encoded.data)
    assert ccnn.read_info(str(path)).width == 96


def test_api_input_errors_are_ccnn_errors(tmp_path: Path, crop_png: Path, encoded: ccnn.EncodeResult) -> None:
    path = tmp_path / "x.ccnn"
    path.write_bytes(encoded.data)
    with open(path) as text, pytest.raises(ccnn.CCNNError, match="text mode"):
        ccnn.decompress(text)
    with pytest.raises(ccnn.CCNNError, match="no such file"):
        ccnn.read_info(tmp_path / "missing.ccnn")
    with pytest.raises(ccnn.CCNNError, match="give a path, bytes or a binary file object"):
        ccnn.decompress(12345)  # type: ignore[arg-type]
    with pytest.raises(ccnn.FormatError):
        ccnn.decompress(crop_png.read_bytes())  # bytes are contents, never a file name
    with pytest.raises(ccnn.ImageError, match="<bytes>: not an image"):
        ccnn.compress(b"not an image", "fast", steps=1)
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ccnn.ConfigError, match="threads"):
            ccnn.decompress(encoded.data, threads=threads)  # type: ignore[arg-type]
        with pytest.raises(ccnn.ConfigError, match="threads"):
            ccnn.compress(crop_png, "fast", steps=1, threads=threads)  # type: ignore[arg-type]


def test_threads_are_an_api_argument(crop: np.ndarray, encoded: ccnn.EncodeResult) -> None:
    """Decoding gives the same pixels at any BLAS thread count; encoding's count is restored after."""
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    for threads in (None, 1, 2, 3):
        assert np.array_equal(ccnn.decompress(encoded.data, threads=threads), encoded.decoded), threads
    assert [pool["num_threads"] for pool in threadpool_info()] == before
    previous = torch.get_num_threads()
    one = ccnn.compress(crop, "fast", steps=5, seed=2, threads=1)
    assert torch.get_num_threads() == previous
    torch.set_num_threads(1)
    try:
        assert one == ccnn.compress(crop, "fast", steps=5, seed=2)  # the same as the process at 1
    finally:
        torch.set_num_threads(previous)


def test_same_seed_same_file(crop: np.ndarray) -> None:
    first = ccnn.compress(crop, "fast", steps=15, seed=7)
    second = ccnn.compress(crop, "fast", steps=15, seed=7)
    assert first == second


def test_weight_precision_search_finds_the_least_cost() -> None:
    """The walk from the start precision ends at the minimum of a cost that falls then rises."""
    from ccnn.encoder.encode import _descend

    for optimum in (1, 2, 4, 7, 10):
        calls: list[int] = []

        def cost(precision: int, optimum: int = optimum, calls: list[int] = calls) -> float:
            calls.append(precision)
            return (precision - optimum) ** 2 + 0.5 * precision

        expected = min(range(1, 11), key=lambda p: (p - optimum) ** 2 + 0.5 * p)
        assert _descend(cost, 4, range(1, 11)) == expected
        assert len(calls) <= abs(expected - 4) + 4


def test_each_layer_gets_its_own_weight_precision() -> None:
    """Per-layer precisions reach each layer's own optimum when the layers' costs add up."""
    from ccnn.encoder.encode import _search_precisions

    optima = (3, 6, 2)

    def cost(precisions: tuple[int, ...]) -> float:
        return sum((p - o) ** 2 + 0.1 * p for p, o in zip(precisions, optima))

    assert _search_precisions(cost, 3) == optima


def test_default_preset_trains_through_soft_rounding(crop: np.ndarray) -> None:
    """The default preset's whole-image phase (soft rounding, then hard) codes what it trained."""
    assert ccnn.PRESETS["default"].soft_rounding is not None
    first = ccnn.compress_image(crop, "default", quality=3, steps=400, seed=3)
    second = ccnn.compress_image(crop, "default", quality=3, steps=400, seed=3)
    assert first.data == second.data
    assert np.array_equal(ccnn.decompress(first.data), first.decoded)
    assert first.psnr > 25.0  # 32.1-32.3 dB (seeds 3, 4) when written
