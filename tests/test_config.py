"""Presets resolve to the documented networks."""

from __future__ import annotations

from ccnn.config import make_config


def test_networks_grow_with_quality_and_image_size() -> None:
    def latent(quality: int, pixels: int | None = None) -> tuple[int, int]:
        config = make_config("default", quality=quality, pixels=pixels)
        return config.latent_channels, config.total_stride

    assert latent(1) == (8, 8) and latent(4) == (12, 8) and latent(8) == (12, 4)
    assert latent(8, pixels=768 * 512) == latent(8)
    assert latent(4, pixels=256 * 192) == latent(1)  # 8x fewer pixels: three levels down
    assert latent(8, pixels=16 * 16) == latent(1)
    assert make_config("default", quality=8, channels=1).decoder[-1].channels == 1
    assert make_config("fast", quality=8).decoder == make_config("default", quality=1).decoder
