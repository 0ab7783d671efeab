"""Write the six images of other sizes that rate control and other checks run on besides Kodak.

    python benchmarks/other_sizes.py OUT_DIR [--kodak DIR]

The bundled sample (256x192) and crops of Kodak images: kodim01 256x256, kodim19 320x480
(portrait), kodim05 512x384, kodim13 640x480, and a 1024x768 mosaic of 512x384 crops of
kodim03, 07, 15 and 21 (portrait ones turned). The names give the source and the size.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

import ccnn

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

#: (name, Kodak image, crop box left, top, right, bottom)
CROPS = (
    ("b-kodim01-256x256.png", "kodim01.png", (100, 100, 356, 356)),
    ("c-kodim19-320x480.png", "kodim19.png", (0, 0, 320, 480)),
    ("d-kodim05-512x384.png", "kodim05.png", (128, 64, 640, 448)),
    ("e-kodim13-640x480.png", "kodim13.png", (64, 16, 704, 496)),
)
MOSAIC = ("kodim03.png", "kodim07.png", "kodim15.png", "kodim21.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--kodak", type=Path, default=KODAK)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(ccnn.__file__).parent / "data" / "sample.png", args.out / "a-sample-256x192.png")
    for name, source, box in CROPS:
        Image.open(args.kodak / source).convert("RGB").crop(box).save(args.out / name)
    mosaic = Image.new("RGB", (1024, 768))
    for index, source in enumerate(MOSAIC):
        tile = Image.open(args.kodak / source).convert("RGB")
        if tile.width < tile.height:
            tile = tile.rotate(90, expand=True)
        mosaic.paste(tile.crop((0, 0, 512, 384)), ((index % 2) * 512, (index // 2) * 384))
    mosaic.save(args.out / "f-mosaic-1024x768.png")
    print(f"wrote 6 images to {args.out}")


if __name__ == "__main__":
    main()
