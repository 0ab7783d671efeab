"""Side-by-side comparison sheets: centre crops of several decodings, enlarged and labelled."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..imageio import to_pil


def _labelled(pixels: np.ndarray, label: str) -> Image.Image:
    image = to_pil(pixels).convert("RGB")
    image = image.resize((image.width * 2, image.height * 2), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + 18), "white")
    canvas.paste(image, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), label, fill="black")
    return canvas


def side_by_side(panels: list[tuple[np.ndarray, str]], crop: int = 128) -> np.ndarray:
    """Centre crops of each image, enlarged 2x, labelled and placed left to right."""
    tiles = []
    for pixels, label in panels:
        h, w = pixels.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        tiles.append(_labelled(pixels[top : top + crop, left : left + crop], label))
    sheet = Image.new(
        "RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), max(t.height for t in tiles)), "white"
    )
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 8
    return np.asarray(sheet)
