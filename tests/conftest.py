"""Shared fixtures: small Kodak crops and one small encoded file, made once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ccnn

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"

torch.set_num_threads(2)


def kodak_crop(
    index: int = 23, top: int = 96, left: int = 320, height: int = 64, width: int = 96
) -> np.ndarray:
    """A small crop of a Kodak image (skips the test when the suite is not beside the repo)."""
    path = KODAK / f"kodim{index:02d}.png"
    if not path.exists():
        pytest.skip(f"Kodak image not found at {path}")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(pixels[top : top + height, left : left + width])


@pytest.fixture(scope="session")
def crop() -> np.ndarray:
    return kodak_crop()


@pytest.fixture(scope="session")
def encoded(crop: np.ndarray) -> ccnn.EncodeResult:
    """The crop through the fast preset with a short, seeded training."""
    return ccnn.compress_image(crop, "fast", steps=120, seconds=60, seed=1)


@pytest.fixture()
def crop_png(tmp_path: Path, crop: np.ndarray) -> Path:
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    return path
