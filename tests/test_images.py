"""Pixel modes: converted where nothing is lost, refused with a clear error otherwise."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccnn.errors import ImageError
from ccnn.imageio import load_image


def _save(tmp_path, image: Image.Image, name: str):
    path = tmp_path / name
    image.save(path)
    return path


def test_modes(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    assert load_image(_save(tmp_path, Image.fromarray(rgb), "a.png")).shape == (10, 12, 3)
    gray = Image.fromarray(rgb[:, :, 0])
    assert load_image(_save(tmp_path, gray, "g.png")).shape == (10, 12, 1)
    opaque = Image.fromarray(np.dstack([rgb, np.full((10, 12), 255, np.uint8)]), "RGBA")
    assert np.array_equal(load_image(_save(tmp_path, opaque, "o.png")), rgb)
    palette = Image.fromarray(rgb).convert("P")
    assert load_image(_save(tmp_path, palette, "p.png")).shape == (10, 12, 3)


def test_refusals(tmp_path) -> None:
    with pytest.raises(ImageError, match="mode CMYK is not supported"):
        load_image(_save(tmp_path, Image.new("CMYK", (4, 4)), "c.tif"))
    (tmp_path / "n.png").write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "n.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((4, 4, 3), np.float32))


def test_animations_and_multipage_files_are_refused_not_cut(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    animated = tmp_path / "anim.gif"
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100)
    pages = tmp_path / "pages.tif"
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    for path in (animated, pages):
        with pytest.raises(ImageError, match="has 3 frames"):
            load_image(path)
    single = tmp_path / "one.gif"
    frames[0].save(single)
    assert load_image(single).shape == (16, 16, 3)


def test_large_image_warning_from_pillow_does_not_leak(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: Pillow warns, does not refuse
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).shape == (40, 40, 3)
