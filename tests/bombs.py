"""Hostile but limit-respecting .ccnn files (decompression bombs), built by hand with valid CRCs.

Shared by tests/test_bombs.py and benchmarks/bombs.py (which measures them in a subprocess).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ccnn.format import container as bitstream

DATA = Path(__file__).parent / "data"


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def build(
    height: int,
    width: int,
    layers: list[tuple[int, int, int]],
    latent_channels: int,
    context: bool = False,
    latent: bytes = b"",
    weight: int = 1,
) -> bytes:
    """A file whose weights are all ``weight``, its latent constant (or, with context, barely coded)."""
    channels = layers[-1][0]
    flags = bitstream.FLAG_LATENT_CONTEXT if context else 0
    header = bitstream._FIXED.pack(height, width, channels, 1, flags, 0.5, latent_channels, len(layers))
    header += b"".join(bitstream._LAYER.pack(*layer) for layer in layers)
    header += bitstream._OPTIONAL.pack(0)  # version 5: no optional sections
    group = bitstream._WEIGHT_EXPONENT.pack(0) + bitstream._GROUP.pack(0.0, 1.0, weight, weight)
    weights = group * (2 * len(layers))
    lo, hi = (-1, 1) if context else (1, 1)
    entropy = bitstream._GROUP.pack(0.0, 1.0, lo, hi) * latent_channels
    if context:
        entropy += bitstream._CONTEXT_LEVELS.pack(1) + bytes(bitstream.CONTEXT_PARAMETERS * latent_channels)
    body = bitstream._PREFIX.pack(bitstream.MAGIC, bitstream.FORMAT_VERSION, len(header)) + header
    for tag, payload in (
        (bitstream.SECTION_WEIGHTS, weights),
        (bitstream.SECTION_ENTROPY, entropy),
        (bitstream.SECTION_LATENT, latent),
    ):
        body += bitstream._SECTION.pack(tag, len(payload)) + payload
    return _with_crc(body)


def resized(data: bytes, height: int, width: int) -> bytes:
    """A real file with its header's image size replaced (and a valid checksum)."""
    prefix = bitstream._PREFIX.size
    values = list(bitstream._FIXED.unpack_from(data, prefix))
    values[0], values[1] = height, width
    rest = data[prefix + bitstream._FIXED.size : -4]
    return _with_crc(data[:prefix] + bitstream._FIXED.pack(*values) + rest)


def bombs() -> dict[str, bytes]:
    """The bombs of the hostile-files issue, by name."""
    return {
        # one 16x16 transposed convolution at stride 16 onto 8192x8192 pixels
        "one-layer-8192": build(8192, 8192, [(3, 16, 16)], 1),
        # 8192x8192 with the latent at stride 1 (4 channels), coded with spatial context
        "stride1-8192": build(8192, 8192, [(4, 1, 1), (3, 1, 1)], 4, context=True, latent=bytes(4)),
        # 512x512, 15 layers of 256 channels (2x2 kernels, stride 1; zero weights, so that
        # no sum grows past what the decoder computes exactly)
        "deep-512": build(512, 512, [(256, 2, 1)] * 15 + [(3, 2, 1)], 1, weight=0),
        # a real 1 kB file whose header claims 4096x4096
        "real-4096": resized((DATA / "v4-fast-rgb.ccnn").read_bytes(), 4096, 4096),
        # not a bomb: the fine network's shape at the largest size the per-array limit admitted
        # it before the decoder restored in bands (any size within MAX_PIXELS passes now)
        "fine-largest": build(1364, 8192, [(24, 4, 2), (3, 4, 2)], 12, context=True, latent=bytes(4)),
    }
