"""encode_video(): a clip -> the bytes of a version-6 ``.ccnn`` file.

One compressing and restoring network and two entropy models (intra latents, latent deltas)
are trained on the one clip, in two phases sharing a step budget (no time budget: the same
settings give the same bytes however busy the machine is):

1. *pairs*: the networks learn on co-located random crops of two consecutive frames, the
   first coded with the intra model, the second as its latent's difference from the first's
   with the delta model, under a squared error (bpp + λ·255²·MSE-YUV, as image crops are).
   This teaches the compressing network latents that change little where the picture does not.
2. *refine*: every frame's latent becomes a free tensor, optimised with the restoring network
   and both models on whole frames, through soft rounding and then hard rounding, under the
   clip's loss (bpp + slope * PSNR-YUV).

That is latent prediction (``VideoConfig.prediction == "latent"``, the presets'). Pixel
prediction (``"pixels"``, :class:`ResidualTrainer` and :func:`encode_residual`) restores
each frame as a residual added to the previous decoded frame instead.

The pieces of image training are reused (:mod:`ccnn.encoder.train`, :mod:`ccnn.encoder.encode`):
the network, the entropy model, the rounding stand-ins, the learning-rate schedule and the
weight-precision search. Why latent deltas: docs/decisions.md, "Video: latent deltas under one
shared network".
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..format import container
from ..format.entropy import GroupModel, encode_groups, encode_latent, estimate_bits, weight_model
from ..format.exact import restore_exact
from ..format.spec import DecoderSpec, QuantizedTensor
from ..format.video import INTRA, INTRA_BASE, PREDICTED, decode_video, frame_from_yuv444, pack_video
from ..settings import YUV_WEIGHTS, VideoConfig
from ..videoio import YUVClip, psnr_yuv
from .encode import _quantize_decoder, _search_precisions
from .entropy_model import LatentEntropyModel
from .model import CCNN
from .quantize import round_ste
from .result import Progress, ProgressCallback, VideoEncodeResult
from .train import (
    FitResult,
    _crop_batch,
    _set_learning_rates,
    image_tensor,
    pick_device,
    quantize_for_training,
)

_LOG10 = math.log(10.0)
#: Refine steps between whole-clip evaluations (the best evaluated state is the result).
EVAL_INTERVAL = 100


def plane_errors(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image squared errors (N, 3) of Y at full size and of U, V after 2x2 averaging.

    ``restored`` and ``target`` are (N, 3, H, W) YCbCr 4:4:4 in 0..1; the target's chroma is
    the 4:2:0 planes repeated, so its 2x2 means are the source's chroma exactly, and the
    restored chroma is compared as the decoder will output it (averaged; the rounding aside).
    """
    luma = torch.mean((restored[:, :1] - target[:, :1]) ** 2, dim=(1, 2, 3))
    pooled = F.avg_pool2d(restored[:, 1:], 2, ceil_mode=True)
    chroma_target = F.avg_pool2d(target[:, 1:], 2, ceil_mode=True)
    chroma = torch.mean((pooled - chroma_target) ** 2, dim=(2, 3))
    return torch.cat([luma[:, None], chroma], dim=1)


def _yuv_mean(per_plane: torch.Tensor) -> torch.Tensor:
    """The 6:1:1 mix of per-image Y, U, V values (N, 3), averaged over the images."""
    weights = torch.tensor(YUV_WEIGHTS, dtype=per_plane.dtype, device=per_plane.device)
    return (per_plane * weights).sum(dim=1).mean()


def psnr_loss(errors: torch.Tensor) -> torch.Tensor:
    """Minus the mean PSNR-YUV in dB of per-image plane errors (N, 3): 6:1:1, as it is measured."""
    return _yuv_mean(10.0 * torch.log(torch.clamp(errors, min=1e-10)) / _LOG10)


def crop_loss(
    bpp: torch.Tensor, errors: torch.Tensor, config: VideoConfig
) -> tuple[torch.Tensor, float, float]:
    """The crop phase's loss, bpp + λ·255²·MSE-YUV (6:1:1), and its PSNR-YUV and bpp to report."""
    loss = bpp + config.rate_lambda * 255.0**2 * _yuv_mean(errors)
    return loss, -float(psnr_loss(errors).detach()), float(bpp.detach())


class VideoTrainer:
    """The two phases of clip training on shared state (networks, models, free latents)."""

    def __init__(
        self,
        clip: YUVClip,
        config: VideoConfig,
        progress: ProgressCallback | None = None,
        device: str | None = None,
    ) -> None:
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.config = config
        self.codec = config.codec_config()
        self.progress = progress
        dev = pick_device(device)
        self.height, self.width = clip.height, clip.width
        stride = self.codec.total_stride
        self.frames = torch.cat([image_tensor(f, stride) for f in clip.yuv444()]).to(dev)
        self.count = clip.frames
        self.intra = [config.intra(i) for i in range(self.count)]
        self.model = CCNN(self.codec, 3).to(dev)
        self.init_output_bias()
        levels = self.codec.context_levels
        self.intra_model = LatentEntropyModel(self.codec.latent_channels, 1.0, levels).to(dev)
        self.delta_model = LatentEntropyModel(self.codec.latent_channels, 0.5, levels).to(dev)
        self.latent: torch.nn.Parameter | None = None
        self.step = 0
        self.start = time.perf_counter()
        self.intra_share = sum(self.intra) / self.count
        self.best_loss = math.inf
        self.best_state: dict | None = None

    def init_output_bias(self) -> None:
        """Start the last layer's bias at the clip's mean Y, U and V.

        The chroma planes sit near 128 with little spread, and at 1/8 of the loss each they
        were learnt slowly from a zero bias: with some seeds U stayed 10 dB behind
        (docs/decisions.md, "Video: latent deltas under one shared network").
        """
        with torch.no_grad():
            self.model.decoder_biases[-1].copy_(self.frames.mean(dim=(0, 2, 3)))

    def report(self, label: str, psnr: float, bpp: float) -> None:
        if self.progress is not None:
            elapsed = time.perf_counter() - self.start
            self.progress(Progress(self.step, self.config.steps, elapsed, None, psnr, bpp, label))

    def _run(
        self,
        steps: int,
        params: list[torch.Tensor],
        rates: list[float],
        label: str,
        loss_of: Callable[[bool, float], tuple[torch.Tensor, float, float]],
    ) -> None:
        """Adam on ``params`` for ``steps`` steps under the image trainer's learning-rate schedule."""
        groups = [{"params": [p], "lr": lr} for p, lr in zip(params, rates)]
        optimizer = torch.optim.Adam(groups)
        for done in range(steps):
            fraction = done / steps
            _set_learning_rates(optimizer, rates, 1.0, done, fraction)
            loss, psnr, bpp = loss_of(fraction >= 1.0 - self.config.hard_rounding_fraction, fraction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            self.step += 1
            if done % 10 == 0 or done == steps - 1:
                self.report(label, psnr, bpp)
            if label == "refine" and ((done + 1) % EVAL_INTERVAL == 0 or done == steps - 1):
                self.keep_if_best()

    def evaluate(self) -> float | None:
        """The whole clip's loss with every latent rounded, as coded (weights still float)."""
        assert self.latent is not None
        with torch.no_grad():
            coded = torch.round(self.latent)
            bits = self.clip_bits(coded, 0)
            errors = []
            for i in range(0, self.count, 8):
                restored = self.model.restore(coded[i : i + 8])[..., : self.height, : self.width]
                errors.append(plane_errors(restored, self.frames[i : i + 8, :, : self.height, : self.width]))
            bpp = bits / (self.count * self.height * self.width)
            return float(bpp + self.config.psnr_slope * psnr_loss(torch.cat(errors)))

    def keep_if_best(self) -> None:
        """Remember the state of the lowest whole-clip loss so far (the refine phase's result)."""
        loss = self.evaluate()
        if loss is None or loss >= self.best_loss:
            return
        assert self.latent is not None
        self.best_loss = loss
        self.best_state = {
            "model": copy.deepcopy(self.model.state_dict()),
            "intra": copy.deepcopy(self.intra_model.state_dict()),
            "delta": copy.deepcopy(self.delta_model.state_dict()),
            "latent": self.latent.detach().clone(),
        }

    def restore_best(self) -> None:
        """Go back to the best evaluated state, if the training ended worse than it."""
        if self.best_state is None or self.latent is None:
            return
        final = self.evaluate()
        if final is not None and final <= self.best_loss:
            return
        self.model.load_state_dict(self.best_state["model"])
        self.intra_model.load_state_dict(self.best_state["intra"])
        self.delta_model.load_state_dict(self.best_state["delta"])
        with torch.no_grad():
            self.latent.copy_(self.best_state["latent"])

    def pairs_loss(self, hard: bool, fraction: float) -> tuple[torch.Tensor, float, float]:
        """Loss of co-located crops of frames t and t + 1: intra + delta bits, both frames' PSNR-YUV."""
        stride = self.codec.total_stride
        size = max(
            stride,
            min(self.config.crop_size, self.frames.shape[-2], self.frames.shape[-1]) // stride * stride,
        )
        t = int(self.rng.integers(0, max(self.count - 1, 1)))
        pair = self.frames[t : t + 2] if self.count > 1 else self.frames[:1].repeat(2, 1, 1, 1)
        # the same crop positions in both frames: crop the pair stacked along channels
        crops = _crop_batch(pair.reshape(1, -1, *pair.shape[-2:]), size, self.config.crops_per_step, self.rng)
        first, second = crops[:, :3], crops[:, 3:]
        latents = self.model.analyse(torch.cat([first, second]))
        coded, rate_in = quantize_for_training(latents, self.codec, hard)
        n = first.shape[0]
        restored = self.model.restore(coded)
        pixels = 2 * n * size * size
        intra_bits = self.intra_model.bits(rate_in[:n])
        delta_bits = self.delta_model.bits(rate_in[n:] - rate_in[:n])
        # the clip's mixture: a share of intra frames, the rest predicted
        bpp = 2 * (self.intra_share * intra_bits + (1 - self.intra_share) * delta_bits) / pixels
        return crop_loss(bpp, plane_errors(restored, torch.cat([first, second])), self.config)

    def free_latents(self) -> None:
        with torch.no_grad():
            latents = torch.cat([self.model.analyse(self.frames[i : i + 8]) for i in range(0, self.count, 8)])
        self.latent = torch.nn.Parameter(latents.detach().clone())

    def window(self) -> tuple[int, int]:
        """The frames of this refine step: [first, end), all of them unless ``frames_per_step``."""
        size = self.config.frames_per_step
        if size <= 0 or size >= self.count:
            return 0, self.count
        first = int(self.rng.integers(0, self.count - size + 1))
        return first, first + size

    def clip_bits(self, coded: torch.Tensor, first: int) -> torch.Tensor:
        """Bits of the frames ``first ..`` of ``coded`` (latents of frames first - 1 .. when first > 0)."""
        total = coded.new_zeros(())
        offset = 1 if first > 0 else 0
        for i in range(offset, coded.shape[0]):
            frame = first - offset + i
            if self.intra[frame]:
                total = total + self.intra_model.bits(coded[i : i + 1])
        predicted = [i for i in range(max(offset, 1), coded.shape[0]) if not self.intra[first - offset + i]]
        if predicted:
            index = torch.tensor(predicted, device=coded.device)
            total = total + self.delta_model.bits(coded[index] - coded[index - 1])
        return total

    def refine_loss(self, hard: bool, fraction: float) -> tuple[torch.Tensor, float, float]:
        """Whole-frame loss of the free latents of one window of frames."""
        assert self.latent is not None
        first, end = self.window()
        before = max(first - 1, 0)
        temperature = None
        if self.config.soft_rounding is not None:
            start, stop = self.config.soft_rounding
            progress = min(fraction / max(1.0 - self.config.hard_rounding_fraction, 1e-9), 1.0)
            temperature = start + (stop - start) * progress
        coded, rate_in = quantize_for_training(self.latent[before:end], self.codec, hard, temperature)
        skip = first - before
        restored = self.model.restore(coded[skip:])[..., : self.height, : self.width]
        target = self.frames[first:end, :, : self.height, : self.width]
        bits = self.clip_bits(rate_in, first)
        bpp = bits / ((end - first) * self.height * self.width)
        distortion = psnr_loss(plane_errors(restored, target))
        return bpp + self.config.psnr_slope * distortion, -float(distortion.detach()), float(bpp.detach())

    def run(self) -> FitResult:
        steps = self.config.steps
        crop_steps = round(steps * self.config.crop_share)
        if crop_steps:
            params = [
                *self.model.parameters(),
                *self.intra_model.parameters(),
                *self.delta_model.parameters(),
            ]
            self._run(crop_steps, params, [self.config.learning_rate] * len(params), "pairs", self.pairs_loss)
        self.free_latents()
        assert self.latent is not None
        if steps - crop_steps:
            decoder = [*self.model.decoder_weights, *self.model.decoder_biases]
            models = [*self.intra_model.parameters(), *self.delta_model.parameters()]
            params = [self.latent, *decoder, *models]
            rates = [self.config.refine_latent_lr] + [self.config.refine_learning_rate] * (len(params) - 1)
            self._run(steps - crop_steps, params, rates, "refine", self.refine_loss)
            self.restore_best()
        return FitResult(
            model=self.model.cpu().eval(),
            entropy=self.intra_model.cpu(),
            latent=self.latent.detach().cpu(),
            steps=self.step,
            seconds=time.perf_counter() - self.start,
        )


def _tune(model: LatentEntropyModel, symbols: np.ndarray, steps: int = 50) -> None:
    """Fit an entropy model to the actual integer symbols (N, L, h, w), as encode does for images."""
    if symbols.shape[0] == 0:
        return
    values = torch.from_numpy(symbols.astype(np.float32))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.bits(values).backward()
        optimizer.step()


def _models(model: LatentEntropyModel, symbols: np.ndarray, channels: int) -> list[GroupModel]:
    """Stored per-channel models whose ranges cover every frame's symbols (N, L, h, w)."""
    if symbols.shape[0] == 0:
        symbols = np.zeros((1, channels, 1, 1), dtype=np.int32)
    side_by_side = np.concatenate(list(symbols), axis=2)  # (L, h, N * w): per-channel ranges
    return model.group_models(side_by_side)


def encode_video(
    clip: YUVClip,
    config: VideoConfig,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> VideoEncodeResult:
    """Compress ``clip`` into the bytes of a version-6 .ccnn file, and decode it to measure it."""
    if config.prediction == "pixels":
        return encode_residual(clip, config, progress, device)
    start = time.perf_counter()
    codec = config.codec_config()
    spec = codec.decoder_spec()
    height, width = clip.height, clip.width
    container.check_decodable(spec, height, width, operation="compressing")
    trainer = VideoTrainer(clip, config, progress, device)
    fit = trainer.run()
    latents = torch.round(fit.latent).numpy().astype(np.int32)  # (N, L, h, w)
    kinds = [INTRA if intra else PREDICTED for intra in trainer.intra]
    intra_latents = latents[[i for i, k in enumerate(kinds) if k == INTRA]]
    predicted = [i for i, k in enumerate(kinds) if k == PREDICTED]
    deltas = latents[predicted] - latents[[i - 1 for i in predicted]] if predicted else latents[:0]
    _tune(trainer.intra_model, intra_latents)
    _tune(trainer.delta_model, deltas)
    channels = codec.latent_channels
    intra_models = _models(trainer.intra_model, intra_latents, channels)
    delta_models = _models(trainer.delta_model, deltas, channels)
    intra_context = trainer.intra_model.stored_context()
    delta_context = trainer.delta_model.stored_context()
    payloads: list[tuple[int, bytes]] = []
    for i, kind in enumerate(kinds):
        if kind == INTRA:
            payloads.append((kind, encode_latent(latents[i], intra_models, intra_context, tabled=False)))
        else:
            payloads.append(
                (kind, encode_latent(latents[i] - latents[i - 1], delta_models, delta_context, tabled=False))
            )

    # the weights' precisions by the clip's cost, measured on up to eight frames spread over it
    sample = sorted(set(np.linspace(0, clip.frames - 1, min(8, clip.frames)).round().astype(int).tolist()))
    reference = clip.head(clip.frames)
    costs: dict[tuple[int, ...], tuple[float, list[QuantizedTensor], list[GroupModel]]] = {}

    def weight_cost(precisions: tuple[int, ...]) -> float:
        if precisions not in costs:
            tensors = _quantize_decoder(fit.model, precisions)
            models = [weight_model(t.ints) for t in tensors]
            bits = sum(estimate_bits(t.ints, m) for t, m in zip(tensors, models))
            db = []
            for i in sample:
                frame = frame_from_yuv444(restore_exact(spec, tensors, latents[i])[:height, :width])
                db.append(_frame_psnr_yuv(reference, i, frame))
            cost = bits / (clip.frames * height * width) - config.psnr_slope * float(np.mean(db))
            costs[precisions] = (cost, tensors, models)
        return costs[precisions][0]

    _, tensors, weight_models = costs[_search_precisions(weight_cost, len(fit.model.decoder_weights))]
    network = _network_file(height, width, spec, tensors, weight_models, intra_models, intra_context)
    data = pack_video(network, clip.fps, delta_models, delta_context, payloads)
    return _result(data, clip, kinds, payloads, fit.steps, fit.seconds, start)


def _frame_psnr_yuv(clip: YUVClip, index: int, frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """PSNR-YUV (6:1:1) of one decoded frame against frame ``index`` of ``clip``."""
    total = 0.0
    for weight, ref, out in zip(YUV_WEIGHTS, (clip.y[index], clip.u[index], clip.v[index]), frame):
        mse = float(np.mean((ref.astype(np.float64) - out) ** 2))
        total += weight * (100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse))
    return total


# --- Pixel prediction: each frame a residual against the previous decoded frame -----------------

#: Mid-grey, the base of an intra frame (:data:`ccnn.format.video.INTRA_BASE`) in 0..1.
_GREY = INTRA_BASE / 255.0


def reconstruct(values: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The decoder's frame in 0..1: clamp(round(255 * value + 255 * base)) / 255, rounding straight-through.

    ``base`` is a previous frame as the decoder has it (integers / 255) or mid-grey, so the
    training chain sees the decoder's own rounding and clipping.
    """
    return torch.clamp(round_ste(values * 255.0 + base * 255.0), 0.0, 255.0) / 255.0


class ResidualTrainer(VideoTrainer):
    """Clip training with pixel prediction: every frame is restored on a base (grey or the previous frame).

    The compressing network sees the frame minus its base, so an intra frame and a predicted
    one differ only in their base; the free latents are optimised over windows of consecutive
    frames, the frame before a window taken from a cache of the decoded frames (refreshed
    whenever a window passes over them; no gradient flows into it).
    """

    def pairs_loss(self, hard: bool, fraction: float) -> tuple[torch.Tensor, float, float]:
        stride = self.codec.total_stride
        side = min(self.config.crop_size, self.frames.shape[-2], self.frames.shape[-1])
        size = max(stride, side // stride * stride)
        t = int(self.rng.integers(0, max(self.count - 1, 1)))
        pair = self.frames[t : t + 2] if self.count > 1 else self.frames[:1].repeat(2, 1, 1, 1)
        crops = _crop_batch(pair.reshape(1, -1, *pair.shape[-2:]), size, self.config.crops_per_step, self.rng)
        first, second = crops[:, :3], crops[:, 3:]
        coded_a, rate_a = quantize_for_training(self.model.analyse(first - _GREY), self.codec, hard)
        decoded_a = reconstruct(self.model.restore(coded_a), torch.full_like(first, _GREY))
        coded_b, rate_b = quantize_for_training(self.model.analyse(second - decoded_a), self.codec, hard)
        decoded_b = reconstruct(self.model.restore(coded_b), decoded_a)
        n = first.shape[0]
        intra_bits = self.intra_model.bits(rate_a)
        predicted_bits = self.delta_model.bits(rate_b)
        bpp = (
            2
            * (self.intra_share * intra_bits + (1 - self.intra_share) * predicted_bits)
            / (2 * n * size * size)
        )
        errors = plane_errors(torch.cat([decoded_a, decoded_b]), torch.cat([first, second]))
        return crop_loss(bpp, errors, self.config)

    def evaluate(self) -> float | None:
        """No whole-clip evaluation: it would have to run the decoding chain over every frame."""
        return None

    def init_output_bias(self) -> None:
        """A residual is centred on zero: the last layer's bias stays at zero."""

    def base(self, index: int) -> torch.Tensor:
        """What frame ``index`` is restored on: grey for an intra frame, else the cached previous frame."""
        if self.intra[index]:
            return torch.full_like(self.frames[:1], _GREY)
        return self.decoded[index - 1 : index]

    def free_latents(self) -> None:
        """Each frame's latent from the compressing network on its residual, in decoding order."""
        latents, decoded = [], []
        with torch.no_grad():
            for i in range(self.count):
                base = torch.full_like(self.frames[:1], _GREY) if self.intra[i] else decoded[-1]
                latent = self.model.analyse(self.frames[i : i + 1] - base)
                latents.append(latent)
                decoded.append(reconstruct(self.model.restore(torch.round(latent)), base))
        self.latent = torch.nn.Parameter(torch.cat(latents).clone())
        self.decoded = torch.cat(decoded)

    def refine_loss(self, hard: bool, fraction: float) -> tuple[torch.Tensor, float, float]:
        assert self.latent is not None
        first, end = self.window()
        temperature = None
        if self.config.soft_rounding is not None:
            start, stop = self.config.soft_rounding
            progress = min(fraction / max(1.0 - self.config.hard_rounding_fraction, 1e-9), 1.0)
            temperature = start + (stop - start) * progress
        coded, rate_in = quantize_for_training(self.latent[first:end], self.codec, hard, temperature)
        values = self.model.restore(coded)
        outputs = []
        previous = self.base(first)
        for i in range(end - first):
            frame = first + i
            base = torch.full_like(previous, _GREY) if self.intra[frame] else previous
            previous = reconstruct(values[i : i + 1], base)
            outputs.append(previous)
        decoded = torch.cat(outputs)
        self.decoded[first:end] = decoded.detach()
        bits = coded.new_zeros(())
        intra = [i for i in range(end - first) if self.intra[first + i]]
        predicted = [i for i in range(end - first) if not self.intra[first + i]]
        if intra:
            bits = bits + self.intra_model.bits(rate_in[intra])
        if predicted:
            bits = bits + self.delta_model.bits(rate_in[predicted])
        bpp = bits / ((end - first) * self.height * self.width)
        target = self.frames[first:end, :, : self.height, : self.width]
        distortion = psnr_loss(plane_errors(decoded[..., : self.height, : self.width], target))
        return bpp + self.config.psnr_slope * distortion, -float(distortion.detach()), float(bpp.detach())


def _set_decoder(model: CCNN, tensors: list[QuantizedTensor]) -> None:
    """Load the quantized restoring weights into the torch model (what the decoder will use)."""
    with torch.no_grad():
        for i, (weight, bias) in enumerate(zip(model.decoder_weights, model.decoder_biases)):
            weight.copy_(torch.from_numpy(tensors[2 * i].values()).to(weight.dtype))
            bias.copy_(torch.from_numpy(tensors[2 * i + 1].values()).to(bias.dtype))


def encode_residual(
    clip: YUVClip,
    config: VideoConfig,
    progress: ProgressCallback | None = None,
    device: str | None = None,
) -> VideoEncodeResult:
    """Compress ``clip`` with pixel prediction (format version 6, flag bit 0).

    Train, choose the weight precisions on the first frames' exact decoding chain, then code
    the frames in order in a closed loop: each frame's latent is re-fitted for a few steps on
    the previous frame exactly as the decoder will have it, with the quantized weights, then
    rounded and decoded exactly to become the next frame's base.
    """
    start = time.perf_counter()
    codec = config.codec_config()
    spec = codec.decoder_spec()
    height, width = clip.height, clip.width
    container.check_decodable(spec, height, width, operation="compressing")
    trainer = ResidualTrainer(clip, config, progress, device)
    fit = trainer.run()
    latents = torch.round(fit.latent).numpy().astype(np.int32)
    kinds = [INTRA if intra else PREDICTED for intra in trainer.intra]
    padded_h, padded_w = trainer.frames.shape[-2:]
    grey = np.full((padded_h, padded_w, 3), INTRA_BASE, dtype=np.uint8)
    chain = list(range(min(clip.frames, 16)))
    costs: dict[tuple[int, ...], tuple[float, list[QuantizedTensor], list[GroupModel]]] = {}

    def weight_cost(precisions: tuple[int, ...]) -> float:
        if precisions not in costs:
            tensors = _quantize_decoder(fit.model, precisions)
            models = [weight_model(t.ints) for t in tensors]
            bits = sum(estimate_bits(t.ints, m) for t, m in zip(tensors, models))
            db, previous = [], grey
            for i in chain:
                base = grey if kinds[i] == INTRA else previous
                previous = restore_exact(spec, tensors, latents[i], base=base)
                db.append(_frame_psnr_yuv(clip, i, frame_from_yuv444(previous[:height, :width])))
            cost = bits / (clip.frames * height * width) - config.psnr_slope * float(np.mean(db))
            costs[precisions] = (cost, tensors, models)
        return costs[precisions][0]

    _, tensors, weight_models = costs[_search_precisions(weight_cost, len(fit.model.decoder_weights))]
    model = fit.model
    _set_decoder(model, tensors)
    for p in model.parameters():
        p.requires_grad_(False)
    intra_model, delta_model = trainer.intra_model.cpu(), trainer.delta_model.cpu()
    frames = trainer.frames.cpu()
    final = np.empty_like(latents)
    previous = grey
    for i in range(clip.frames):
        base_np = grey if kinds[i] == INTRA else previous
        base = torch.from_numpy(base_np.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        latent = torch.nn.Parameter(fit.latent[i : i + 1].clone())
        entropy = intra_model if kinds[i] == INTRA else delta_model
        optimizer = torch.optim.Adam([latent], lr=config.refine_latent_lr * 0.5)
        target = frames[i : i + 1, :, :height, :width]
        for _ in range(config.closed_loop_steps):
            coded = round_ste(latent)
            decoded = reconstruct(model.restore(coded), base)[..., :height, :width]
            bpp = entropy.bits(coded) / (clip.frames * height * width)
            loss = bpp + config.psnr_slope * psnr_loss(plane_errors(decoded, target))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        final[i] = torch.round(latent.detach()).numpy().astype(np.int32)[0]
        previous = restore_exact(spec, tensors, final[i], base=base_np)
    intra_latents = final[[i for i, k in enumerate(kinds) if k == INTRA]]
    predicted_latents = final[[i for i, k in enumerate(kinds) if k == PREDICTED]]
    _tune(intra_model, intra_latents)
    _tune(delta_model, predicted_latents)
    channels = codec.latent_channels
    intra_models = _models(intra_model, intra_latents, channels)
    delta_models = _models(delta_model, predicted_latents, channels)
    intra_context, delta_context = intra_model.stored_context(), delta_model.stored_context()
    payloads = [
        (
            kind,
            encode_latent(
                final[i],
                *((intra_models, intra_context) if kind == INTRA else (delta_models, delta_context)),
                tabled=False,
            ),
        )
        for i, kind in enumerate(kinds)
    ]
    network = _network_file(height, width, spec, tensors, weight_models, intra_models, intra_context)
    data = pack_video(network, clip.fps, delta_models, delta_context, payloads, residual=True)
    return _result(data, clip, kinds, payloads, fit.steps, fit.seconds, start)


def _result(
    data: bytes,
    clip: YUVClip,
    kinds: list[int],
    payloads: list[tuple[int, bytes]],
    steps: int,
    train_seconds: float,
    start: float,
) -> VideoEncodeResult:
    """Decode the file with the decoder itself and measure it."""
    frames = list(decode_video(data))
    decoded = YUVClip(
        np.stack([f.y for f in frames]),
        np.stack([f.u for f in frames]),
        np.stack([f.v for f in frames]),
        clip.fps,
    )
    pixels = clip.frames * clip.height * clip.width
    return VideoEncodeResult(
        data=data,
        decoded=decoded,
        psnr=psnr_yuv(clip, decoded),
        bpp=8.0 * len(data) / pixels,
        kbps=8.0 * len(data) * float(clip.fps) / clip.frames / 1000.0,
        frame_bytes=tuple(len(p) for _, p in payloads),
        frame_kinds=tuple(kinds),
        steps=steps,
        train_seconds=train_seconds,
        encode_seconds=time.perf_counter() - start,
    )


def _network_file(
    height: int,
    width: int,
    spec: DecoderSpec,
    tensors: list[QuantizedTensor],
    weight_models: list[GroupModel],
    intra_models: list[GroupModel],
    intra_context: np.ndarray | None,
) -> container.CCNNFile:
    """The clip's shared network section: an image file of the frame size with an empty latent."""
    return container.CCNNFile(
        height=height,
        width=width,
        channels=3,
        spec=spec,
        weight_exponents=tuple(t.exponent for t in tensors),
        weight_models=tuple(weight_models),
        weight_data=encode_groups([t.ints for t in tensors], weight_models),
        latent_models=tuple(intra_models),
        latent_context=intra_context,
        latent_data=b"",
    )
