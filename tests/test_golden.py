"""Committed .ccnn files of every format version decode to the pixels they decoded to when written.

tests/data/golden.json lists the files (tests/data/README.md says how each was made). The
decoder is bit-exact, so a changed pixel hash means that decoding changed: in ccnn, or in a
dependency such as constriction, whose Laplace quantisation the latent's symbols go through.
Only the public API is used.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import ccnn
from ccnn.format import READABLE_VERSIONS

DATA = Path(__file__).resolve().parent / "data"
MANIFEST = json.loads((DATA / "golden.json").read_text())
NAMES = sorted(MANIFEST)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data(name: str) -> bytes:
    return (DATA / MANIFEST[name]["file"]).read_bytes()


def _section(data: bytes, tag: int) -> tuple[int, int]:
    """(offset, length) of the payload of section ``tag``, walking the container of docs/format.md."""
    _, _, header_length = struct.unpack_from("<4sBH", data, 0)
    offset = 7 + header_length
    while offset < len(data) - 4:
        section_tag, length = struct.unpack_from("<BI", data, offset)
        offset += 5
        if section_tag == tag:
            return offset, length
        offset += length
    raise AssertionError(f"no section {tag}")


def test_every_readable_version_has_a_golden_file() -> None:
    versions = {record["format_version"] for record in MANIFEST.values()}
    assert versions >= set(READABLE_VERSIONS), (
        "a format version without a golden file: run tests/data/make_golden.py"
    )


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_unchanged(name: str) -> None:
    assert _sha256(_data(name)) == MANIFEST[name]["file_sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_info(name: str) -> None:
    record = MANIFEST[name]
    info = ccnn.read_info(_data(name))
    assert info.version == record["format_version"]
    assert (info.height, info.width, info.channels) == (record["height"], record["width"], record["channels"])
    assert info.total_bytes == record["bytes"] == len(_data(name))


@pytest.mark.parametrize("name", NAMES)
def test_golden_pixels(name: str) -> None:
    record = MANIFEST[name]
    pixels = ccnn.decompress(_data(name))
    assert pixels.dtype == np.uint8
    channels = record["channels"] + bool(record.get("alpha"))  # an alpha plane comes back as a channel
    assert pixels.shape == (record["height"], record["width"], channels)
    assert _sha256(np.ascontiguousarray(pixels).tobytes()) == record["pixels_sha256"], (
        f"{name} (format version {record['format_version']}) decodes to other pixels than when it was written"
    )


@pytest.mark.parametrize("name", NAMES)
def test_golden_latent_byte_changed_is_refused(name: str) -> None:
    data = bytearray(_data(name))
    offset, length = _section(bytes(data), 3)
    assert length > 0, "every golden file codes some latent bits"
    data[offset + length // 2] ^= 0x10
    with pytest.raises(ccnn.FormatError):
        ccnn.decompress(bytes(data))
