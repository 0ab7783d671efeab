"""The alpha section's size against WebP's lossless alpha, on real and generated RGBA images.

For each image: the bytes of ccnn's alpha section (:func:`ccnn.format.alpha.encode_alpha`, the
predictor it picks), the bytes of the ALPH chunk that libwebp writes for the same plane coded
losslessly (``alpha_quality=100``, ``method=6``, lossy colour at quality 90; the chunk holds
only the alpha, so this is WebP's exact alpha cost), a lossless WebP of the RGBA image minus
one of its RGB (``exact=True``: colours under transparent pixels kept), and the alpha plane
alone as an optimised 8-bit PNG.

    python benchmarks/alpha_size.py                 # the images it finds; Kodak from ../shared

Images: matplotlib's own logo and icon (installed with ``.[bench]``), Cargo's logo when a
Rust toolchain's docs are on the machine, and generated masks on Kodak's kodim23 (when
../shared/data/kodak is there) or the bundled sample: a feathered elliptical cut-out, a hard
one, and antialiased text on transparency.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ccnn.format.alpha import decode_alpha, encode_alpha

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak" / "kodim23.png"
SAMPLE = REPO / "src" / "ccnn" / "data" / "sample.png"


def _found_images() -> dict[str, Image.Image]:
    """Real RGBA images that are on this machine."""
    images: dict[str, Image.Image] = {}
    try:
        import matplotlib

        data = Path(matplotlib.get_data_path()) / "sample_data"
        for name in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
            if (data / name).exists():
                images[f"matplotlib {name}"] = Image.open(data / name).convert("RGBA")
    except ImportError:
        pass
    docs = ".rustup/toolchains/*/share/doc/rust/html/cargo/images/Cargo-Logo-Small.png"
    for cargo in sorted(Path.home().glob(docs)):
        images["Cargo-Logo-Small.png"] = Image.open(cargo).convert("RGBA")
        break
    return images


def _generated_images() -> dict[str, Image.Image]:
    """A photo with a feathered and a hard cut-out, and text on transparency."""
    base = Image.open(KODAK if KODAK.exists() else SAMPLE).convert("RGB")
    name = "kodim23" if KODAK.exists() else "sample"
    width, height = base.size
    hard = Image.new("L", base.size, 0)
    ImageDraw.Draw(hard).ellipse((width * 0.2, height * 0.1, width * 0.8, height * 0.9), fill=255)
    soft = hard.filter(ImageFilter.GaussianBlur(6))
    images = {}
    for label, mask in (("feathered cut-out", soft), ("hard cut-out", hard)):
        rgba = base.copy()
        rgba.putalpha(mask)
        images[f"{name} {label}"] = rgba
    text = Image.new("RGBA", (640, 200), (0, 0, 0, 0))
    font = ImageFont.load_default(size=96)
    ImageDraw.Draw(text).text((20, 40), "ccnn logo", font=font, fill=(200, 30, 30, 255))
    images["text on transparency 640x200"] = text
    return images


def webp_alph_bytes(image: Image.Image) -> int:
    """Bytes of the ALPH chunk (payload and 8-byte chunk header) of a lossy WebP with lossless alpha."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=90, alpha_quality=100, method=6)
    data = buffer.getvalue()
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if kind == b"ALPH":
            return 8 + size
        offset += 8 + size + (size & 1)
    raise ValueError("no ALPH chunk")


def _size(image: Image.Image, fmt: str, **options: object) -> int:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return len(buffer.getvalue())


def measure(image: Image.Image) -> dict[str, int]:
    alpha = np.asarray(image.getchannel("A"))
    payload = encode_alpha(alpha)
    assert np.array_equal(decode_alpha(payload, *alpha.shape), alpha)
    lossless = _size(image, "WEBP", lossless=True, exact=True, method=6, quality=100)
    without = _size(image.convert("RGB"), "WEBP", lossless=True, exact=True, method=6, quality=100)
    return {
        "ccnn": len(payload) + 5,  # with the section's tag and length
        "predictor": payload[0],
        "webp_alph": webp_alph_bytes(image),
        "webp_lossless_diff": lossless - without,
        "png_alpha": _size(image.getchannel("A"), "PNG", optimize=True),
    }


def main() -> int:
    images = {**_found_images(), **_generated_images()}
    print(
        "| image | size | ccnn alpha section | WebP ALPH chunk | ccnn / WebP "
        "| WebP lossless RGBA − RGB | PNG of the alpha |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, image in images.items():
        m = measure(image)
        print(
            f"| {name} | {image.width}×{image.height} | {m['ccnn']} B (predictor {m['predictor']}) "
            f"| {m['webp_alph']} B | {m['ccnn'] / m['webp_alph']:.2f} | {m['webp_lossless_diff']} B "
            f"| {m['png_alpha']} B |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
