"""Per-image training: the network learns to compress and restore the one image being encoded.

Training runs on many small random crops per step (much more steps per second than whole-image
passes, and in practice better at equal time), with a rate-distortion loss
``bpp + lambda * 255^2 * MSE``. The image is evaluated whole from time to time; the best whole-
image state is kept, and a diverging run is rolled back to it. The run stops at ``steps`` or
after ``seconds``, whichever comes first, and reports progress through a callback.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import CodecConfig
from .entropy import FactorizedLaplace
from .model import CCNN
from .quantize import add_noise, round_ste, saturate_byte


@dataclass(frozen=True)
class Progress:
    """One progress event: where training is, and the last whole-image measurement."""

    step: int
    steps: int
    seconds: float
    budget_seconds: float
    psnr: float
    bpp: float
    phase: str


ProgressCallback = Callable[[Progress], None]


@dataclass
class FitResult:
    """The trained networks, ready for quantization and coding."""

    model: CCNN
    entropy: FactorizedLaplace
    steps: int
    seconds: float


def pick_device(device: str | None = None) -> torch.device:
    """``"auto"``/``None`` picks CUDA when present; the file decodes on any CPU either way."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def image_tensor(pixels: np.ndarray, multiple: int) -> torch.Tensor:
    """uint8 H x W x C -> float (1, C, H', W') in 0..1, edge-padded to a multiple of ``multiple``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div(255.0)[None]
    height, width = pixels.shape[:2]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h or pad_w:
        mode = "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x


def quantize_for_training(
    latent: torch.Tensor, config: CodecConfig, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent fed to the restoring network, latent fed to the rate model) for one step."""
    if config.latent_mode == "uint8":
        coded = saturate_byte(latent)
        return coded, coded.detach()
    rounded = round_ste(latent)
    return rounded, rounded if hard else add_noise(latent)


def rd_loss(
    model: CCNN, entropy: FactorizedLaplace, x: torch.Tensor, config: CodecConfig, hard: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, bpp) of a batch: bpp + lambda * 255^2 * MSE."""
    latent = model.analyse(x)
    restored_in, rate_in = quantize_for_training(latent, config, hard)
    restored = model.restore(restored_in)
    mse = torch.mean((restored - x) ** 2)
    bpp = entropy.bits(rate_in) / (x.shape[0] * x.shape[-2] * x.shape[-1])
    return bpp + config.rate_lambda * 255.0**2 * mse, mse, bpp


def _crop_batch(x: torch.Tensor, size: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    _, _, height, width = x.shape
    tops = rng.integers(0, height - size + 1, size=count)
    lefts = rng.integers(0, width - size + 1, size=count)
    return torch.cat([x[:, :, t : t + size, s : s + size] for t, s in zip(tops, lefts)], dim=0)


def fit(
    pixels: np.ndarray,
    config: CodecConfig,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> FitResult:
    """Train a CCNN on ``pixels`` (uint8 H x W x C) under ``config``."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dev = pick_device(device)
    stride = config.total_stride
    height, width, channels = pixels.shape
    x_full = image_tensor(pixels, stride).to(dev)
    model = CCNN(config, channels).to(dev)
    entropy = FactorizedLaplace(
        config.latent_channels, initial_scale=8.0 if config.latent_mode == "uint8" else 1.0
    ).to(dev)

    padded = min(x_full.shape[-2], x_full.shape[-1])
    crop = max(stride, min(config.crop_size, padded) // stride * stride)
    whole_image = crop >= padded
    params = list(model.parameters()) + list(entropy.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)

    start = time.perf_counter()
    eval_interval = max(1, config.steps // 20)
    best_loss = math.inf
    best_state: tuple[dict, dict] | None = None
    last_psnr, last_bpp = 0.0, 0.0
    lr_scale = 1.0
    step = 0
    fraction = 0.0

    def evaluate() -> float:
        nonlocal last_psnr, last_bpp, best_loss, best_state
        with torch.no_grad():
            latent = model.analyse(x_full)
            coded = (
                torch.clamp(torch.round(latent), 0, 255)
                if config.latent_mode == "uint8"
                else torch.round(latent)
            )
            restored = torch.clamp(torch.round(model.restore(coded)[..., :height, :width] * 255.0), 0, 255)
            mse = torch.mean((restored - x_full[..., :height, :width] * 255.0) ** 2).item() / 255.0**2
            bpp = entropy.bits(coded).item() / (height * width)
        last_psnr = 10 * math.log10(1.0 / max(mse, 1e-12))
        last_bpp = bpp
        loss = bpp + config.rate_lambda * 255.0**2 * mse
        if loss < best_loss:
            best_loss = loss
            best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(entropy.state_dict()))
        return loss

    def report(phase: str) -> None:
        if progress is not None:
            progress(
                Progress(
                    step,
                    config.steps,
                    time.perf_counter() - start,
                    config.seconds,
                    last_psnr,
                    last_bpp,
                    phase,
                )
            )

    evaluate()
    report("start")
    while step < config.steps:
        elapsed = time.perf_counter() - start
        fraction = max(step / config.steps, elapsed / config.seconds)
        if fraction >= 1.0:
            break
        hard = fraction >= 1.0 - config.hard_rounding_fraction
        warmup = min(1.0, (step + 1) / 50)
        cosine = 0.5 * (1 + math.cos(math.pi * fraction))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * lr_scale * warmup * (0.05 + 0.95 * cosine)
        batch = x_full if whole_image else _crop_batch(x_full, crop, config.crops_per_step, rng)
        loss, _, _ = rd_loss(model, entropy, batch, config, hard)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        step += 1
        if not math.isfinite(loss.item()) or (step % eval_interval == 0 and evaluate() > 1.5 * best_loss):
            # diverged: go back to the best whole-image state and continue more gently
            if best_state is not None:
                model.load_state_dict(best_state[0])
                entropy.load_state_dict(best_state[1])
            optimizer = torch.optim.Adam(params, lr=config.learning_rate)
            lr_scale *= 0.5
        report("hard" if hard else "train")
    final = evaluate()
    if best_state is not None and final > best_loss:
        model.load_state_dict(best_state[0])
        entropy.load_state_dict(best_state[1])
    report("done")
    return FitResult(
        model=model.cpu().eval(), entropy=entropy.cpu(), steps=step, seconds=time.perf_counter() - start
    )
