"""The .ccnn container refuses what it cannot trust, with a clear error and no large allocation."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest

import ccnn
from ccnn.encoder.encode import encode
from ccnn.errors import FormatError, LimitError
from ccnn.format import container as bitstream
from ccnn.format.entropy import CONTEXT_PARAMETERS, PATTERN_PARAMETERS, decode_latent, encode_latent


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _rewrite_header(data: bytes, **fields: int) -> bytes:
    """A copy of ``data`` with header fields changed and a valid checksum (a hostile file)."""
    prefix = bitstream._PREFIX.size
    values = list(bitstream._FIXED.unpack_from(data, prefix))
    names = ["height", "width", "channels", "mode", "flags", "slope", "latent_channels", "layers"]
    for name, value in fields.items():
        values[names.index(name)] = value
    body = data[:prefix] + bitstream._FIXED.pack(*values) + data[prefix + bitstream._FIXED.size : -4]
    return _with_crc(body)


def _as_version(data: bytes, version: int) -> bytes:
    """A version 5 file without optional sections restamped as ``version`` (<= 4): no section list byte."""
    _, header_length = struct.unpack_from("<BH", data, 4)
    end = bitstream._PREFIX.size + header_length
    assert data[end - 1] == 0, "the file has optional sections"
    prefix = bitstream._PREFIX.pack(bitstream.MAGIC, version, header_length - 1)
    return _with_crc(prefix + data[bitstream._PREFIX.size : end - 1] + data[end:-4])


def test_empty_file() -> None:
    with pytest.raises(FormatError, match="empty"):
        ccnn.decompress(b"")


def test_foreign_file(crop_png) -> None:
    with pytest.raises(FormatError, match="not a ccnn file"):
        ccnn.decompress(crop_png.read_bytes())


@pytest.mark.parametrize("keep", [2, 4, 7, 20, 60, -5, -1])
def test_truncated_file(encoded: ccnn.EncodeResult, keep: int) -> None:
    with pytest.raises(FormatError, match=r"truncated|corrupted"):
        ccnn.decompress(encoded.data[:keep])


def test_every_bit_flip_is_caught(encoded: ccnn.EncodeResult) -> None:
    data = encoded.data
    for position in range(0, len(data), max(1, len(data) // 200)):
        for bit in (0, 5):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(FormatError):
                ccnn.decompress(bytes(flipped))


def test_trailing_garbage(encoded: ccnn.EncodeResult) -> None:
    with pytest.raises(FormatError, match="after the checksum"):
        ccnn.decompress(encoded.data + b"\0")


def test_unknown_version(encoded: ccnn.EncodeResult) -> None:
    body = bytearray(encoded.data[:-4])
    body[4] = 99
    with pytest.raises(FormatError, match="version 99"):
        ccnn.decompress(_with_crc(bytes(body)))


def test_absurd_size_refused_before_allocating(encoded: ccnn.EncodeResult) -> None:
    hostile = _rewrite_header(encoded.data, height=100000, width=100000)
    with pytest.raises(LimitError, match="100000x100000"):
        ccnn.read_info(hostile)
    with pytest.raises(LimitError):
        ccnn.decompress(hostile)


def test_absurd_network_refused(encoded: ccnn.EncodeResult) -> None:
    with pytest.raises(LimitError):
        ccnn.decompress(_rewrite_header(encoded.data, latent_channels=0))
    with pytest.raises(LimitError):
        ccnn.decompress(_rewrite_header(encoded.data, channels=4))


def test_large_but_valid_header_needing_huge_work_refused(encoded: ccnn.EncodeResult) -> None:
    with pytest.raises(LimitError):
        ccnn.decompress(_rewrite_header(encoded.data, height=8000, width=8000, latent_channels=255))


def test_encoder_refuses_a_network_the_decoder_would_refuse_before_training() -> None:
    """64x64 filters at stride 1 on a 1536x1216 image exceed the decoder's work limit: say so at once.

    (35x35 filters at stride 2 on 768x512 were refused for one array's size until the decoder
    restored in bands; they are within every limit now.)"""
    pixels = np.zeros((1216, 1536, 3), dtype=np.uint8)
    with pytest.raises(LimitError, match="multiply-adds"):
        ccnn.compress(pixels, "paper", ratio=1, kernel=64, steps=1)


def test_encoded_file_uses_spatial_context(encoded: ccnn.EncodeResult) -> None:
    contents = bitstream.unpack(encoded.data)
    assert contents.spec.latent_context
    assert contents.latent_context is not None
    assert contents.latent_context.shape == (2, contents.spec.latent_channels, CONTEXT_PARAMETERS)


def _without_cross_channel_term(data: bytes) -> bytes:
    """The same file with the context's g set to 0 and the latent coded again under it."""
    contents = bitstream.unpack(data)
    assert contents.latent_context is not None
    context = contents.latent_context.copy()
    context[..., PATTERN_PARAMETERS - 1 :: PATTERN_PARAMETERS] = 0.0
    latent = decode_latent(
        contents.latent_data,
        contents.latent_shape,
        list(contents.latent_models),
        contents.latent_context,
        tabled=contents.tabled,
    )
    latent_data = encode_latent(latent, list(contents.latent_models), context, tabled=contents.tabled)
    return bitstream.pack(dataclasses.replace(contents, latent_context=context, latent_data=latent_data))


def _restamped(data: bytes, version: int, keep_levels_byte: bool) -> bytes:
    """An old-version file: 3 context numbers per pattern, the levels byte only from version 3 on."""
    contents = bitstream.unpack(data)
    assert contents.latent_context is not None
    _, header, sections = bitstream._split(data)
    groups = contents.spec.latent_channels * bitstream._GROUP.size
    entropy = sections[bitstream.SECTION_ENTROPY]
    levels = contents.latent_context.shape[0]
    assert entropy[groups] == levels
    old = contents.latent_context.reshape(levels, -1, 2, PATTERN_PARAMETERS)[..., :3]
    stored = np.asarray(old, dtype="<f2").tobytes()
    levels_byte = bytes([levels]) if keep_levels_byte else b""
    sections[bitstream.SECTION_ENTROPY] = entropy[:groups] + levels_byte + stored
    body = bitstream._PREFIX.pack(bitstream.MAGIC, version, len(header)) + header
    for tag, payload in sections.items():
        body += bitstream._SECTION.pack(tag, len(payload)) + payload
    return _with_crc(body)


def test_version_3_file_is_read_with_no_cross_channel_term() -> None:
    """Version 3 is version 4 without g: three context numbers per pattern."""
    pixels = np.random.default_rng(5).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    data = _without_cross_channel_term(
        encode(pixels, ccnn.EncoderOptions("fast", quality=3, steps=20).resolve()).data
    )
    old = _restamped(data, 3, keep_levels_byte=True)
    levels, channels, _ = bitstream.unpack(data).latent_context.shape
    # 6 float16 against 8 int8, and no byte listing optional sections
    assert len(old) - len(data) == levels * channels * (6 * 2 - 8) - 1
    assert bitstream.read_info(old).version == 3
    assert np.array_equal(ccnn.decompress(old), ccnn.decompress(data))


def test_version_2_file_is_read() -> None:
    """Version 2 is version 3 with one context level that the file does not state."""
    pixels = np.random.default_rng(3).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    config = ccnn.EncoderOptions("fast", quality=3, steps=20).resolve()
    config = dataclasses.replace(config, context_levels=1)
    data = _without_cross_channel_term(encode(pixels, config).data)
    contents = bitstream.unpack(data)
    assert contents.latent_context is not None and contents.latent_context.shape[0] == 1
    old = _restamped(data, 2, keep_levels_byte=False)
    assert np.array_equal(ccnn.decompress(old), ccnn.decompress(data))


def test_absurd_context_levels_refused(encoded: ccnn.EncodeResult) -> None:
    contents = bitstream.unpack(encoded.data)
    levels = np.zeros((40, contents.spec.latent_channels, CONTEXT_PARAMETERS))
    with pytest.raises(LimitError, match="context levels"):
        bitstream.unpack(bitstream.pack(dataclasses.replace(contents, latent_context=levels)))


def test_version_1_file_is_read() -> None:
    """A file without spatial context, stamped version 1, decodes to the same pixels."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    data = ccnn.compress_image(pixels, preset="paper", steps=5).data
    assert not bitstream.unpack(data).spec.latent_context
    assert np.array_equal(ccnn.decompress(_as_version(data, 1)), ccnn.decompress(data))


def test_context_flag_in_version_1_refused(encoded: ccnn.EncodeResult) -> None:
    with pytest.raises(FormatError, match="version 1"):
        ccnn.decompress(_as_version(encoded.data, 1))


def test_context_flag_on_byte_latent_refused(encoded: ccnn.EncodeResult) -> None:
    with pytest.raises(FormatError, match="byte latent"):
        ccnn.decompress(_rewrite_header(encoded.data, mode=0))


def test_context_off_the_stored_grid_refused(encoded: ccnn.EncodeResult) -> None:
    """pack stores context parameters as int8 steps; a value between steps would decode wrongly."""
    contents = bitstream.unpack(encoded.data)
    assert contents.latent_context is not None
    context = contents.latent_context.copy()
    context[0, 0, 0] += 1 / 256
    with pytest.raises(ValueError, match="grid"):
        bitstream.pack(dataclasses.replace(contents, latent_context=context))
