"""Per-image training: the network learns to compress and restore the one image being encoded.

The schedule is data: :func:`ccnn.settings.training_phases` turns a config into a tuple of
:class:`~ccnn.settings.TrainingPhase` (for the rate-distortion presets, the networks on many
small random crops, whose cheap steps beat whole-image passes at equal time, then a free latent
on the whole image), and :class:`Trainer` runs them in order. The image is evaluated whole from
time to time; the best whole-image state is kept, and a diverging run is rolled back to it. The
run stops after ``steps`` (the effort: a seeded run gives the same file on any load), or earlier
when a time budget ``seconds`` is given and runs out, and reports progress through a callback.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..format.exact import input_margin
from ..format.spec import LatentMode, LayerSpec
from ..settings import DEVICES, CodecConfig, TrainingPhase
from .entropy_model import LatentEntropyModel
from .model import CCNN
from .optim import Adam
from .quantize import add_noise, round_ste, saturate_byte, soft_round_noise
from .rate import RateController
from .result import Progress, ProgressCallback

#: Rate control's trajectory (step, price of a dB, estimated file bpp, PSNR) at DEBUG level.
logger = logging.getLogger(__name__)

#: Where in a whole-image phase with a rate target the current state is packed for real, to
#: correct the controller's estimate of the file (shares of the phase's steps).
CALIBRATION_POINTS = (0.4, 0.75)

#: Squared errors below this (PSNR 100 dB) count as this in the PSNR loss, which keeps log finite.
MSE_FLOOR = 1e-10

#: Values one layer's output may hold in one band of a whole-image pass (64 MiB of float32).
#: The whole-image passes (the free latent's steps, evaluations, the compressing network's
#: latent) run in bands of latent rows when a layer's output for the whole image would hold
#: more, so that a camera-size photo trains in bounded memory; a Kodak-size image is one band.
#: Why: docs/decisions.md, "Whole-image passes in bands".
TRAINING_BAND_VALUES = 1 << 24


@dataclass
class FitResult:
    """The trained networks, ready for quantization and coding."""

    model: CCNN
    entropy: LatentEntropyModel
    latent: torch.Tensor
    steps: int
    seconds: float
    #: Whether the time budget stopped training before its steps were done (the file then
    #: depends on the machine's speed and load).
    stopped_by_time: bool = False


def pick_device(device: str | None = None) -> torch.device:
    """``"auto"``/``None`` picks CUDA when present; the file decodes on any CPU either way."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda is not available (this torch has no CUDA, or no GPU is visible)")
    return torch.device(device)


def image_tensor(pixels: np.ndarray, multiple: int) -> torch.Tensor:
    """uint8 H x W x C -> float (1, C, H', W') in 0..1, edge-padded to a multiple of ``multiple``."""
    x = torch.from_numpy(np.array(pixels.transpose(2, 0, 1), dtype=np.float32)).div(255.0)[None]
    height, width = pixels.shape[:2]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h or pad_w:
        mode = "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x


def quantize_for_training(
    latent: torch.Tensor, config: CodecConfig, hard: bool, temperature: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent fed to the restoring network, latent fed to the rate model) for one step.

    ``temperature`` (the whole-image phase of a config with ``soft_rounding``) trains through
    soft rounding with noise instead of plain noise.
    """
    if config.latent_mode is LatentMode.BYTE:
        coded = saturate_byte(latent)
        return coded, coded.detach()
    if hard:
        rounded = round_ste(latent)
        return rounded, rounded
    if temperature is not None:
        soft = soft_round_noise(latent, temperature)
        return soft, soft
    noisy = add_noise(latent)
    return noisy, noisy


def rd_loss(
    model: CCNN,
    entropy: LatentEntropyModel,
    latent: torch.Tensor,
    target: torch.Tensor,
    config: CodecConfig,
    hard: bool,
    squared_error: bool = False,
    temperature: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, bpp) of ``latent`` restored against ``target``, the loss by :func:`rd_objective`.

    The crop phase passes the compressing network's latent of a batch of crops, the refine
    phase the free whole-image latent.
    """
    restored_in, rate_in = quantize_for_training(latent, config, hard, temperature)
    restored = model.restore(restored_in)
    mse = torch.mean((restored - target) ** 2)
    bpp = entropy.bits(rate_in) / (target.shape[0] * target.shape[-2] * target.shape[-1])
    return rd_objective(bpp, mse, config, squared_error), mse, bpp


def rd_objective(bpp: Any, mse: Any, config: CodecConfig, squared_error: bool = False) -> Any:
    """The loss of a rate (bpp) and a squared error (on 0..1 pixels), floats or tensors alike.

    ``config.distortion == "psnr"``: bpp - slope * PSNR, written as bpp + slope * 10 *
    log10(MSE). ``"mse"``, or ``squared_error`` (the crop phase): bpp + λ * 255^2 * MSE. The
    whole-image training, the keep-the-best evaluation and the weight-step search all use
    this one function, so they optimise the same thing.
    """
    if config.distortion == "psnr" and not squared_error:
        if isinstance(mse, torch.Tensor):
            return bpp + config.psnr_slope * 10.0 * torch.log10(torch.clamp(mse, min=MSE_FLOOR))
        return bpp + config.psnr_slope * 10.0 * math.log10(max(mse, MSE_FLOOR))
    return bpp + config.rate_lambda * 255.0**2 * mse


def distortion_gradient(mse: float, config: CodecConfig, squared_error: bool = False) -> float:
    """How fast :func:`rd_objective` grows with the squared error at ``mse``: the weight a band's
    squared error gets when a whole-image step is summed band by band."""
    if config.distortion == "psnr" and not squared_error:
        return config.psnr_slope * 10.0 / (math.log(10.0) * max(mse, MSE_FLOOR))
    return config.rate_lambda * 255.0**2


def _crop_batch(x: torch.Tensor, size: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops of ``x``, stacked as a batch."""
    _, _, height, width = x.shape
    tops = rng.integers(0, height - size + 1, size=count)
    lefts = rng.integers(0, width - size + 1, size=count)
    return torch.cat([x[:, :, t : t + size, s : s + size] for t, s in zip(tops, lefts)], dim=0)


def restoring_halo(layers: Sequence[LayerSpec]) -> int:
    """Latent rows a band of the restoring network needs beyond its own on each side.

    Past a band's edge each transposed convolution sees zeros where the whole image has
    values, which spoils the output rows whose taps reach there (:func:`input_margin`); the
    spoiled rows grow through the layers. A band computed with this many extra latent rows each
    side and cut back to its own rows is the whole image's result there.
    """
    spoiled, stride = 0, 1
    for layer in layers:
        spoiled = layer.stride * (spoiled + input_margin(layer))
        stride *= layer.stride
    return -(-spoiled // stride)


def analysing_halo(layers: Sequence[LayerSpec]) -> int:
    """Latent rows' worth of image rows a band of the compressing network needs beyond its own.

    A strided convolution at a band's edge pads zeros where the image goes on, which spoils the
    output rows whose kernel reaches past it; this counts the latent rows so spoiled, so that a
    band of the image widened by that many latent rows' pixels and cut back is exact.
    """
    spoiled = 0
    for layer in layers:
        before, _ = layer.padding
        reach = max(before, layer.kernel - 1 - before)
        spoiled = -(-(spoiled + reach) // layer.stride)
    return spoiled


def latent_bands(
    config: CodecConfig, latent_height: int, latent_width: int, channels: int
) -> list[tuple[int, int]]:
    """Latent row ranges of the whole-image passes: as many rows per band as keep every layer's
    output within :data:`TRAINING_BAND_VALUES` (one band when the whole image does)."""
    per_row, stride = channels * config.total_stride**2 * latent_width, 1
    for layer in config.encoder:
        stride *= layer.stride
        per_row = max(per_row, layer.channels * (config.total_stride // stride) ** 2 * latent_width)
    stride = 1
    for layer in config.decoder:
        stride *= layer.stride
        per_row = max(per_row, layer.channels * stride**2 * latent_width)
    rows = max(1, TRAINING_BAND_VALUES // per_row)
    return [(first, min(first + rows, latent_height)) for first in range(0, latent_height, rows)]


def phase_ends(shares: Sequence[float]) -> tuple[float, ...]:
    """Where each phase ends, as a share of the whole budget: the running sum of the shares.

    Used for the steps and, when there is one, the time budget. The last ends at exactly 1, so
    that rounding in the sum never leaves a step or a second unspent; shares that do not add up
    to 1 are refused, since such a run would not be the schedule that was asked for (or printed).
    """
    if not shares:
        raise ValueError("a training schedule needs at least one phase")
    total = math.fsum(shares)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"the phases' shares add up to {total:g}, not 1")
    ends, running = [], 0.0
    for share in shares[:-1]:
        running += share
        ends.append(running)
    return (*ends, 1.0)


def soft_round_temperature(phase: TrainingPhase, fraction: float) -> float | None:
    """The phase's soft-rounding temperature at ``fraction`` of it (``None``: plain noise).

    It falls linearly over the part before hard rounding, then stays at its end value.
    """
    if phase.temperature is None:
        return None
    start, end = phase.temperature
    progress = min(fraction / max(1.0 - phase.hard_share, 1e-9), 1.0)
    return start + (end - start) * progress


#: Steps of a phase's learning-rate warm-up (a short corrective pass warms up over a quarter of
#: its steps instead).
WARMUP_STEPS = 50


def _set_learning_rates(
    optimizer: Adam,
    rates: list[float],
    scale: float,
    done: int,
    fraction: float,
    warmup_steps: int = WARMUP_STEPS,
) -> None:
    """A warm-up of ``warmup_steps``, then a cosine decay to 5% of each base rate over the phase.

    The warm-up keeps the first steps of a fresh Adam (its moment estimates still empty) from
    throwing the networks far; ``scale`` halves after each rollback, so a diverging phase
    continues more gently.
    """
    warmup = min(1.0, (done + 1) / warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * fraction))
    optimizer.learning_rates = [base * scale * warmup * (0.05 + 0.95 * cosine) for base in rates]


@dataclass(frozen=True)
class Evaluation:
    """One whole-image measurement of the coded latent: the loss, its squared-error form
    (positive, unlike the PSNR loss, so it can be compared by ratio), PSNR and bpp."""

    loss: float
    squared_error_loss: float
    psnr: float
    bpp: float
    file_bpp: float = 0.0


_UNMEASURED = Evaluation(math.inf, math.inf, 0.0, 0.0)


class Trainer:
    """Runs a schedule of :class:`~ccnn.settings.TrainingPhase` on one image.

    Holds what the phases share: the networks, the entropy model, the free latent once a phase
    has freed it, the best whole-image state so far (the rollback point of a diverging phase,
    and the result when training ends worse than it), the step counter and the clock. A phase
    is then a method call on that state, and the schedule is whatever tuple of phases it is
    given.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        config: CodecConfig,
        progress: ProgressCallback | None = None,
        device: str | None = None,
        overhead_bits: Callable[[CCNN, LatentEntropyModel], float] | None = None,
        controller: RateController | None = None,
        calibrate: Callable[[Trainer], None] | None = None,
    ) -> None:
        """``overhead_bits`` estimates the file's bits outside the latent from the networks
        (for the whole-file bpp that progress shows and rate control steers by); ``controller``
        steers the price of a dB in the whole-image phases towards a target, and ``calibrate``
        (called at :data:`CALIBRATION_POINTS` of those phases) packs the current state for real
        to correct the controller's estimate."""
        torch.manual_seed(config.seed)
        self.overhead_bits = overhead_bits
        self.controller = controller
        self.calibrate = calibrate
        self.rng = np.random.default_rng(config.seed)
        self.config = config
        self.progress = progress
        dev = pick_device(device)
        self.height, self.width, channels = pixels.shape
        self.image = image_tensor(pixels, config.total_stride).to(dev)
        latent_height, latent_width = (side // config.total_stride for side in self.image.shape[-2:])
        self.bands = latent_bands(config, latent_height, latent_width, channels)
        #: the squared error of the last banded step, which weighs the next step's bands
        self.train_mse: float | None = None
        self.model = CCNN(config, channels).to(dev)
        self.entropy = LatentEntropyModel(
            config.latent_channels,
            initial_scale=8.0 if config.latent_mode is LatentMode.BYTE else 1.0,
            context_levels=config.context_levels if config.decoder_spec().latent_context else 0,
        ).to(dev)
        self.latent: torch.nn.Parameter | None = None
        self.step = 0
        self.last = _UNMEASURED
        self.best = _UNMEASURED
        self.best_state: dict[str, Any] | None = None
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since training began: the clock every phase's time budget is counted on."""
        return time.perf_counter() - self.start

    def current_latent(self) -> torch.Tensor:
        """The latent that would be coded now: the free one, or the compressing network's."""
        return self.analyse_image() if self.latent is None else self.latent

    def analyse_image(self) -> torch.Tensor:
        """The compressing network's latent of the whole image; in bands (without a gradient)
        when there are several, each from its rows of the image and a halo."""
        if len(self.bands) == 1:
            return self.model.analyse(self.image)
        stride, halo = self.config.total_stride, analysing_halo(self.config.encoder)
        rows, parts = self.image.shape[-2] // stride, []
        with torch.no_grad():
            for first, end in self.bands:
                top, bottom = max(0, first - halo), min(rows, end + halo)
                band = self.model.analyse(self.image[..., top * stride : bottom * stride, :])
                parts.append(band[..., first - top : end - top, :])
        return torch.cat(parts, dim=-2)

    def restore_band(self, latent: torch.Tensor, first: int, end: int) -> tuple[torch.Tensor, int]:
        """Restored image rows of latent rows ``first..end-1`` (from them and a halo), and the
        first of those image rows."""
        stride, halo = self.config.total_stride, restoring_halo(self.config.decoder)
        top, bottom = max(0, first - halo), min(latent.shape[-2], end + halo)
        restored = self.model.restore(latent[..., top:bottom, :])
        return restored[..., (first - top) * stride : (end - top) * stride, :], first * stride

    def evaluate(self) -> float:
        """Whole-image loss of the coded (rounded) latent; remembers the best state so far.

        Measured as the decoder will see it (rounded latent, pixels rounded to 0..255) rather
        than through the training proxy, so that the state kept is the best file.
        """
        config, height, width = self.config, self.height, self.width
        with torch.no_grad():
            latent = self.current_latent()
            coded = torch.round(latent)
            if config.latent_mode is LatentMode.BYTE:
                coded = torch.clamp(coded, 0, 255)
            if len(self.bands) == 1:
                restored = self.model.restore(coded)[..., :height, :width]
                restored = torch.clamp(torch.round(restored * 255.0), 0, 255)
                mse = torch.mean((restored - self.image[..., :height, :width] * 255.0) ** 2).item() / 255.0**2
            else:
                total, bits = 0.0, 0.0
                for first, end in self.bands:
                    restored, top = self.restore_band(coded, first, end)
                    rows = max(0, min(height - top, restored.shape[-2]))
                    restored = torch.clamp(torch.round(restored[..., :rows, :width] * 255.0), 0, 255)
                    target = self.image[..., top : top + rows, :width] * 255.0
                    total += torch.sum((restored - target) ** 2, dtype=torch.float64).item()
                    bits += self.entropy.bits(coded, (first, end)).item()
                mse = total / (self.image.shape[1] * height * width) / 255.0**2
            bpp = (self.entropy.bits(coded).item() if len(self.bands) == 1 else bits) / (height * width)
        squared_error_loss = rd_objective(bpp, mse, config, squared_error=True)
        psnr = 10 * math.log10(1.0 / max(mse, 1e-12))
        overhead = 0.0 if self.overhead_bits is None else self.overhead_bits(self.model, self.entropy)
        file_bpp = bpp + overhead / (height * width)
        self.last = Evaluation(rd_objective(bpp, mse, config), squared_error_loss, psnr, bpp, file_bpp)
        if self.last.loss < self.best.loss:
            self.best = self.last
            self.best_state = {
                "model": copy.deepcopy(self.model.state_dict()),
                "entropy": copy.deepcopy(self.entropy.state_dict()),
                "latent": None if self.latent is None else self.latent.detach().clone(),
            }
        return self.last.loss

    def diverged(self) -> bool:
        """Whether the whole image's squared-error loss jumped to 1.5 times that of the best
        state: the rollback test, the same for every preset and loss."""
        self.evaluate()
        return self.last.squared_error_loss > 1.5 * self.best.squared_error_loss

    def restore_best(self) -> None:
        """Go back to the best state evaluated so far (networks, entropy model, free latent)."""
        if self.best_state is None:
            return
        self.model.load_state_dict(self.best_state["model"])
        self.entropy.load_state_dict(self.best_state["entropy"])
        if self.latent is not None and self.best_state["latent"] is not None:
            with torch.no_grad():
                self.latent.copy_(self.best_state["latent"])

    def forget_best(self) -> None:
        """Track the best state afresh from the next evaluation (after the latent was freed or
        the price of a dB changed, earlier losses do not compare); the squared-error loss the
        divergence test compares with is kept until then."""
        self.best = Evaluation(math.inf, self.best.squared_error_loss, self.best.psnr, self.best.bpp)

    def free_latent(self) -> None:
        """Make the compressing network's latent of the best state a free tensor to optimise.

        The best loss starts afresh: states from before have no free latent to go back to. The
        squared-error loss the divergence test compares with is kept until the next evaluation.
        """
        self.evaluate()
        self.restore_best()
        with torch.no_grad():
            self.latent = torch.nn.Parameter(self.analyse_image().detach().clone())
        self.forget_best()
        self.evaluate()

    def report(self, label: str) -> None:
        """Tell the progress callback where training is, with the last whole-image measurement."""
        if self.progress is not None:
            self.progress(
                Progress(
                    self.step,
                    self.config.steps,
                    self.elapsed(),
                    self.config.seconds,
                    self.last.psnr,
                    self.last.file_bpp,
                    label,
                )
            )

    def parameter_groups(self, phase: TrainingPhase) -> list[tuple[list[torch.Tensor], float]]:
        """The tensors that learn in ``phase``, grouped by their learning rate.

        One optimizer group per rate (not per tensor), so that Adam updates each group's
        tensors in one multi-tensor call: the networks are small, and per-tensor updates took a
        third of a crop step.
        """
        if phase.learns == "networks":
            return [([*self.model.parameters(), *self.entropy.parameters()], phase.learning_rate)]
        if self.latent is None:
            raise RuntimeError(f"phase {phase.name!r} learns the latent before it was freed")
        decoder = [*self.model.decoder_weights, *self.model.decoder_biases]
        return [
            ([self.latent], phase.latent_learning_rate),
            ([*decoder, *self.entropy.parameters()], phase.learning_rate),
        ]

    def batches(self, phase: TrainingPhase) -> Callable[[], torch.Tensor]:
        """What each step of ``phase`` trains on: random crops (a multiple of the latent's
        stride in size), or the whole image when asked for or when no smaller crop fits."""
        if phase.data == "image":
            return lambda: self.image
        stride = self.config.total_stride
        padded = min(self.image.shape[-2], self.image.shape[-1])
        crop = max(stride, min(phase.crop_size, padded) // stride * stride)
        if crop >= padded:
            return lambda: self.image
        return lambda: _crop_batch(self.image, crop, phase.crops_per_step, self.rng)

    def backward(self, phase: TrainingPhase, target: torch.Tensor, hard: bool, fraction: float) -> float:
        """The training loss of one step of ``phase`` on ``target`` (a batch of crops or the
        image), its gradients accumulated in the tensors that learn."""
        if phase.learns == "latent" and len(self.bands) > 1:
            return self.banded_backward(phase, hard, fraction)
        latent = self.model.analyse(target) if phase.learns == "networks" else self.latent
        assert latent is not None
        squared_error = phase.loss == "squared_error"
        temperature = soft_round_temperature(phase, fraction)
        loss = rd_loss(
            self.model, self.entropy, latent, target, self.config, hard, squared_error, temperature
        )[0]
        loss.backward()
        return loss.item()

    def banded_backward(self, phase: TrainingPhase, hard: bool, fraction: float) -> float:
        """A whole-image step of the free latent, its gradients summed band by band.

        The loss is the latent's bits plus a function of the image's squared error, both sums
        over bands: each band's bits and error are backpropagated at once, the error weighted by
        the loss's slope in the squared error (:func:`distortion_gradient`, at the previous
        step's error, which moves little from one step to the next), into a detached copy of
        the rounded latent, whose gradient is then passed on through the rounding. Only one
        band's activations are alive at a time.
        """
        assert self.latent is not None
        config, image = self.config, self.image
        squared_error = phase.loss == "squared_error"
        temperature = soft_round_temperature(phase, fraction)
        restored_in, rate_in = quantize_for_training(self.latent, config, hard, temperature)
        assert rate_in is restored_in, "the free latent's rate and image come from one rounding"
        count, pixels = image.numel(), image.shape[0] * image.shape[-2] * image.shape[-1]
        detached = restored_in.detach().requires_grad_(True)
        if self.train_mse is None:
            with torch.no_grad():
                self.train_mse = self._banded_squared_error(detached) / count
        weight = distortion_gradient(self.train_mse, config, squared_error) / count
        total, bits = 0.0, 0.0
        for first, end in self.bands:
            restored, top = self.restore_band(detached, first, end)
            error = torch.sum((restored - image[..., top : top + restored.shape[-2], :]) ** 2)
            band_bits = self.entropy.bits(detached, (first, end))
            (error * weight + band_bits / pixels).backward()
            total, bits = total + error.item(), bits + band_bits.item()
        self.train_mse = total / count
        restored_in.backward(detached.grad)
        return rd_objective(bits / pixels, self.train_mse, config, squared_error)

    def _banded_squared_error(self, latent: torch.Tensor) -> float:
        """The summed squared error of the image restored from ``latent``, band by band."""
        total = 0.0
        for first, end in self.bands:
            restored, top = self.restore_band(latent, first, end)
            total += torch.sum((restored - self.image[..., top : top + restored.shape[-2], :]) ** 2).item()
        return total

    def steer(self) -> None:
        """Let the rate controller move the price of a dB after an evaluation (the next steps
        train at the new price; the best state is tracked afresh, since losses at different
        prices do not compare). Only the whole-image phases steer: on crops the rate follows
        the networks' learning more than the price, and steering there wound the price up by a
        factor of 700 on kodim23."""
        if self.controller is None:
            return
        scale = self.controller.steer(self.config.quality_scale, self.last.file_bpp, self.last.psnr)
        logger.debug(
            "rate control: step %d, scale %.3f -> %.3f, estimated %.4f bpp (x%.3f), %.2f dB",
            self.step,
            self.config.quality_scale,
            scale,
            self.last.file_bpp,
            self.controller.correction,
            self.last.psnr,
        )
        self.config = dataclasses.replace(self.config, quality_scale=scale)
        self.forget_best()

    def run_phase(
        self,
        phase: TrainingPhase,
        end: float = 1.0,
        time_end: float = 1.0,
        steps: int | None = None,
        warmup_steps: int = WARMUP_STEPS,
    ) -> None:
        """Train ``phase`` until the step count reaches ``end`` of the steps, or the clock
        ``time_end`` of the time budget when there is one.

        Adam under :func:`_set_learning_rates`' schedule, hard rounding over the last
        ``hard_share`` of the phase, a whole-image evaluation every ``eval_interval`` steps,
        and after a non-finite loss or a jump of the evaluated loss a rollback to the best state
        with a fresh optimizer at half the rate.
        """
        if phase.learns == "latent" and self.latent is None:
            self.free_latent()
        parameter_groups = self.parameter_groups(phase)
        params = [tensor for tensors, _ in parameter_groups for tensor in tensors]
        rates = [rate for _, rate in parameter_groups]
        batch = self.batches(phase)
        if steps is None:
            steps = max(1, round(self.config.steps * end) - self.step)
        budget = self.config.seconds
        seconds = math.inf if budget is None else max(budget * time_end - self.elapsed(), 1e-3)
        optimizer = Adam(parameter_groups)
        self.train_mse = None
        # the evaluations at which rate control packs the state for real (CALIBRATION_POINTS)
        interval = phase.eval_interval
        calibrations = {round(point * steps) // interval * interval for point in CALIBRATION_POINTS}
        phase_start, first, lr_scale = time.perf_counter(), self.step, 1.0
        while True:
            done = self.step - first
            fraction = max(done / steps, (time.perf_counter() - phase_start) / seconds)
            if fraction >= 1.0:
                break
            hard = fraction >= 1.0 - phase.hard_share
            _set_learning_rates(optimizer, rates, lr_scale, done, fraction, warmup_steps)
            optimizer.zero_grad()
            loss = self.backward(phase, batch(), hard, fraction)
            torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
            optimizer.step()
            self.step += 1
            due = done > 0 and (done + 1) % phase.eval_interval == 0
            if not math.isfinite(loss) or (due and self.diverged()):
                self.restore_best()
                optimizer = Adam(parameter_groups)
                lr_scale *= 0.5
            elif due and phase.learns == "latent":
                if self.calibrate is not None and done + 1 in calibrations:
                    self.calibrate(self)
                self.steer()
            self.report(f"{phase.name}, hard rounding" if hard else phase.name)

    def run(self, phases: Sequence[TrainingPhase]) -> FitResult:
        """Run ``phases`` in order, each to its share of the budget; return the best state."""
        ends = phase_ends([phase.share for phase in phases])
        time_ends = phase_ends(
            [phase.share if phase.time_share is None else phase.time_share for phase in phases]
        )
        self.evaluate()
        self.report("start")
        for phase, end, time_end in zip(phases, ends, time_ends):
            self.run_phase(phase, end, time_end)
        return self.finish()

    def finish(self) -> FitResult:
        """The best state of the last price, as the result (copies: training may resume)."""
        if self.evaluate() > self.best.loss:
            self.restore_best()
        self.report("done")
        return self.snapshot()

    def snapshot(self) -> FitResult:
        """The current state as a result, copied, so that training can go on."""
        with torch.no_grad():
            latent = self.current_latent().detach().clone()
        return FitResult(
            model=copy.deepcopy(self.model).cpu().eval(),
            entropy=copy.deepcopy(self.entropy).cpu(),
            latent=latent.cpu(),
            steps=self.step,
            seconds=self.elapsed(),
            stopped_by_time=self.step < self.config.steps,
        )

    def resume(self, phase: TrainingPhase, steps: int) -> FitResult:
        """Train ``steps`` more steps of ``phase`` (rate control's corrective pass), then finish.

        The learning rate warms up over a quarter of the steps (at most :data:`WARMUP_STEPS`):
        a pass of a few dozen steps would otherwise spend them all warming up."""
        self.forget_best()
        self.run_phase(phase, steps=steps, warmup_steps=max(1, min(WARMUP_STEPS, steps // 4)))
        return self.finish()

