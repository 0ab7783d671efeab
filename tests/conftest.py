"""Shared fixtures: small crops of the bundled sample and one small encoded file, made once per session.

The suite needs nothing outside the repository. The few tests that check a claim about Kodak
itself are marked ``@pytest.mark.kodak`` and skip unless the Kodak images are found: in
``$CCNN_KODAK`` when it is set, else in ``../shared/data/kodak`` beside the repository.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ccnn

REPO = Path(__file__).resolve().parents[1]
KODAK = Path(os.environ.get("CCNN_KODAK") or REPO.parent / "shared" / "data" / "kodak")
#: The photograph shipped inside the package: a 256x192 crop of Kodak's kodim23.
SAMPLE = Path(str(resources.files("ccnn") / "data" / "sample.png"))

torch.set_num_threads(2)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kodak") is not None and not KODAK.is_dir():
        pytest.skip(f"needs the Kodak images, not found at {KODAK} (set CCNN_KODAK to their folder)")


@cache
def _sample() -> np.ndarray:
    with Image.open(SAMPLE) as image:
        return np.asarray(image.convert("RGB"))


def sample_crop(top: int = 32, left: int = 0, height: int = 64, width: int = 96) -> np.ndarray:
    """A crop of the bundled sample, RGB uint8 (the default: background and the edge of the head)."""
    pixels = _sample()
    if top < 0 or left < 0 or top + height > pixels.shape[0] or left + width > pixels.shape[1]:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) is outside the {pixels.shape} sample")
    return pixels[top : top + height, left : left + width].copy()


def kodak_crop(
    index: int = 23, top: int = 96, left: int = 320, height: int = 64, width: int = 96
) -> np.ndarray:
    """A crop of a Kodak image, for tests marked ``@pytest.mark.kodak`` (which skip without Kodak)."""
    path = KODAK / f"kodim{index:02d}.png"
    if not path.exists():
        pytest.fail(f"Kodak image not found at {path}; mark tests that need Kodak @pytest.mark.kodak")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return pixels[top : top + height, left : left + width].copy()


@pytest.fixture(scope="session")
def crop() -> np.ndarray:
    return sample_crop()


@pytest.fixture(scope="session")
def encoded(crop: np.ndarray) -> ccnn.EncodeResult:
    """The crop through the fast preset with a short, seeded training."""
    return ccnn.compress_image(crop, "fast", steps=160, seed=1)


@pytest.fixture()
def crop_png(tmp_path: Path, crop: np.ndarray) -> Path:
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    return path
