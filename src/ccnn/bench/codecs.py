"""Classical codecs behind one interface, for comparisons at equal file size.

Each codec encodes uint8 H x W x C pixels at a quality setting into the bytes of a real file
and decodes those bytes back, so sizes and PSNRs are those of the files a user would get.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..imageio import to_pil
from ..metrics import psnr


@dataclass(frozen=True)
class JpegCodec:
    """JPEG through Pillow (libjpeg-turbo): 4:2:0 chroma subsampling, optimized Huffman tables."""

    name: str = "jpeg"
    settings: str = "Pillow/libjpeg-turbo, 4:2:0, optimize=True"
    qualities: tuple[int, ...] = tuple(range(2, 96))

    def encode(self, pixels: np.ndarray, quality: int) -> bytes:
        buffer = io.BytesIO()
        to_pil(pixels).save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=True)
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("L" if image.mode == "L" else "RGB"))
        return array[:, :, None] if array.ndim == 2 else array


@dataclass(frozen=True)
class SizeMatch:
    """A classical codec's quality at a target file size: PSNR interpolated at that size."""

    psnr: float
    nearest_bytes: int
    nearest_quality: int
    nearest_decoded: np.ndarray


def psnr_at_size(codec: JpegCodec, pixels: np.ndarray, target_bytes: int) -> SizeMatch:
    """PSNR of ``codec`` at ``target_bytes``, linearly interpolated between the two qualities
    whose files bracket that size (clamped at the ends of the quality range)."""
    points = []
    for quality in codec.qualities:
        data = codec.encode(pixels, quality)
        decoded = codec.decode(data)
        points.append((len(data), psnr(pixels, decoded), quality, decoded))
    points.sort(key=lambda p: p[0])
    sizes = np.array([p[0] for p in points], dtype=np.float64)
    psnrs = np.array([p[1] for p in points], dtype=np.float64)
    nearest = min(points, key=lambda p: abs(p[0] - target_bytes))
    return SizeMatch(
        psnr=float(np.interp(target_bytes, sizes, psnrs)),
        nearest_bytes=nearest[0],
        nearest_quality=nearest[2],
        nearest_decoded=nearest[3],
    )
