"""``ccnn demo``: the bundled sample through the codec, next to JPEG at the same file size."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import compress_image, decompress
from .bench.codecs import JpegCodec, psnr_at_size
from .bench.sheet import side_by_side
from .encoder.result import ProgressCallback
from .files import check_writable, write_atomic
from .imageio import encode_image, load_image
from .metrics import bpp, psnr
from .paths import sample_path


@dataclass(frozen=True)
class DemoReport:
    """Everything the demo measured, for printing and for tests."""

    width: int
    height: int
    file_bytes: int
    bpp: float
    psnr: float
    encode_seconds: float
    decode_seconds: float
    jpeg_psnr: float
    jpeg_nearest_bytes: int
    jpeg_nearest_quality: int
    outputs: tuple[Path, ...]

    def lines(self) -> list[str]:
        return [
            f"image        sample.png, {self.width}x{self.height}",
            f"ccnn file    {self.file_bytes} bytes, {self.bpp:.3f} bpp "
            "(whole file: header, decoder weights, latent)",
            f"ccnn PSNR    {self.psnr:.2f} dB",
            f"encode       {self.encode_seconds:.1f} s",
            f"decode       {self.decode_seconds:.3f} s",
            f"JPEG PSNR    {self.jpeg_psnr:.2f} dB at the same size "
            f"(nearest JPEG: quality {self.jpeg_nearest_quality}, {self.jpeg_nearest_bytes} bytes)",
            f"difference   {self.psnr - self.jpeg_psnr:+.2f} dB for ccnn",
            "written      " + ", ".join(str(p) for p in self.outputs),
        ]


def run_demo(
    out_dir: Path,
    preset: str = "fast",
    force: bool = False,
    progress: ProgressCallback | None = None,
    seconds: float | None = None,
    steps: int | None = None,
) -> DemoReport:
    """Compress and decompress the sample, compare with JPEG, write the files into ``out_dir``."""
    ccnn_path = out_dir / "sample.ccnn"
    restored_path = out_dir / "sample-ccnn.png"
    compare_path = out_dir / "comparison.png"
    for path in (ccnn_path, restored_path, compare_path):
        check_writable(path, force)
    pixels = load_image(sample_path())
    result = compress_image(pixels, preset, progress=progress, seconds=seconds, steps=steps, seed=0)
    start = time.perf_counter()
    decoded = decompress(result.data)
    decode_seconds = time.perf_counter() - start
    jpeg = psnr_at_size(JpegCodec(), pixels, len(result.data))
    sheet = side_by_side(
        [
            (pixels, "original"),
            (decoded, f"ccnn {len(result.data)} B, {psnr(pixels, decoded):.2f} dB"),
            (
                jpeg.nearest_decoded,
                f"JPEG {jpeg.nearest_bytes} B, {psnr(pixels, jpeg.nearest_decoded):.2f} dB",
            ),
        ]
    )
    write_atomic(ccnn_path, result.data, force=force)
    write_atomic(restored_path, encode_image(decoded, restored_path), force=force)
    write_atomic(compare_path, encode_image(sheet, compare_path), force=force)
    height, width = pixels.shape[:2]
    return DemoReport(
        width=width,
        height=height,
        file_bytes=len(result.data),
        bpp=bpp(len(result.data), height, width),
        psnr=psnr(pixels, decoded),
        encode_seconds=result.encode_seconds,
        decode_seconds=decode_seconds,
        jpeg_psnr=jpeg.psnr,
        jpeg_nearest_bytes=jpeg.nearest_bytes,
        jpeg_nearest_quality=jpeg.nearest_quality,
        outputs=(ccnn_path, restored_path, compare_path),
    )
