"""Milliseconds per training step of each restoring network, whole-image refine and crop steps.

The figures behind the step-speed notes in ``docs/results/kodak.md`` (a whole-image refine step
of the fine network on kodim23, 1 thread). Best of three repeats; runs in about a minute.

    python benchmarks/step_time.py [../shared/data/kodak/kodim23.png]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from ccnn.encoder.entropy_model import LatentEntropyModel
from ccnn.encoder.model import CCNN
from ccnn.encoder.train import _crop_batch, image_tensor, rd_loss
from ccnn.imageio import load_image
from ccnn.settings import EncoderOptions


def best_ms(step: Callable[[], None], repeats: int) -> float:
    """Best mean time of ``repeats`` steps over three tries, in ms, after two warm-up steps."""
    best = float("inf")
    for _ in range(3):
        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        best = min(best, (time.perf_counter() - start) / repeats * 1000)
    return best


def network_times(pixels: np.ndarray, quality: int, block_psnr: float) -> tuple[int, float, float]:
    """(first restoring layer's channels, refine ms/step, crop ms/step) of the default preset."""
    options = EncoderOptions("default", quality=quality, seed=0)
    config = options.resolve(pixels=pixels.shape[0] * pixels.shape[1], block_psnr=block_psnr)
    torch.manual_seed(0)
    x = image_tensor(pixels, config.total_stride)
    model = CCNN(config, 3)
    entropy = LatentEntropyModel(config.latent_channels, context_levels=config.context_levels)
    latent = torch.nn.Parameter(model.analyse(x).detach().clone().contiguous())
    rng = np.random.default_rng(0)

    # the default preset's whole-image steps train through soft rounding (its first temperature)
    temperature = config.soft_rounding[0] if config.soft_rounding else None

    def refine() -> None:
        rd_loss(model, entropy, latent, x, config, False, temperature=temperature)[0].backward()

    def crop() -> None:
        batch = _crop_batch(x, config.crop_size, config.crops_per_step, rng)
        loss = rd_loss(model, entropy, model.analyse(batch), batch, config, False, squared_error=True)[0]
        loss.backward()

    return config.decoder[0].channels, best_ms(refine, 10), best_ms(crop, 50)


def main() -> None:
    torch.set_num_threads(1)
    path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/kodak/kodim23.png"
    pixels = load_image(path)
    # quality 8 gets the fine network, 5 with a smooth image's block PSNR medium, 1 small
    for quality, block_psnr in ((8, 10.0), (5, 30.0), (1, 10.0)):
        width, refine, crop = network_times(pixels, quality, block_psnr)
        print(
            f"q{quality} (first restoring layer {width} channels): "
            f"refine {refine:.1f} ms/step, crop {crop:.1f} ms/step"
        )


if __name__ == "__main__":
    main()
