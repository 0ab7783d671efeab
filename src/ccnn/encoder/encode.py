"""encode(): image -> .ccnn bytes.

Fit the network on the image, quantize the latent, tune the latent's entropy model on the
actual symbols, choose each restoring layer's weight quantization step by the full
rate-distortion cost (each candidate decoded exactly, as the decoder will), then range-code and
pack. The file is decoded once at the end by the decoder itself (:func:`ccnn.format.decode`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..format import container
from ..format.alpha import encode_alpha
from ..format.decode import decode
from ..format.entropy import (
    CONTEXT_PARAMETERS,
    GroupModel,
    encode_groups,
    encode_latent,
    estimate_bits,
    weight_model,
)
from ..format.exact import restore_exact
from ..format.spec import Metadata, QuantizedTensor
from ..metrics import bpp as bits_per_pixel
from ..metrics import mse, psnr, psnr_from_mse
from ..settings import CodecConfig, TrainingPhase, training_phases
from .entropy_model import LatentEntropyModel
from .model import CCNN
from .optim import Adam
from .quantize import quantize_latent, quantize_tensor
from .rate import RateController
from .result import EncodeResult, ProgressCallback
from .train import FitResult, Trainer, phase_ends, rd_objective

logger = logging.getLogger(__name__)

#: Bias steps are fine (there are few biases); weight steps are searched over this range of
#: "bits below the tensor's standard deviation".
BIAS_EXPONENT = 10
WEIGHT_PRECISIONS = range(0, 11)
#: Where the search starts: the precision most Kodak encodes end at.
WEIGHT_PRECISION_START = 4
#: Rate control's corrective pass, when the first file misses its target, does this share of a
#: plain encode's training work (:func:`training_work`), so that with the calibration packings
#: and the denser evaluations a controlled encode costs about 1.2 times a plain one at any image
#: size (issue 21 allows 1.3; docs/results/rate-control.md). It was 40% of the whole-image
#: steps, which are most of a small image's work: 1.9 times a plain encode on the 256x192 sample.
CORRECTIVE_WORK_SHARE = 0.12
#: What one training step costs besides the pixels it passes through the networks (optimizer,
#: entropy model, Python), in pixels: ``benchmarks/step_time.py`` gives 7-8 ms of fixed cost
#: per step for either network, about 2 crop steps' pixels (2 x 16 x 32^2) of the ``fine`` one.
STEP_OVERHEAD_PIXELS = 32768


def training_work(phases: Sequence[TrainingPhase], steps: int, height: int, width: int) -> list[float]:
    """What one step of each of ``phases`` costs, in pixels passed plus :data:`STEP_OVERHEAD_PIXELS`,
    and (last) the whole run's work over ``steps``: a crop step passes its crops (or the image,
    when no smaller crop fits), a whole-image step the image. A measure of the effort that
    depends on the sizes alone, so that rate control's extra training is the same on any load."""
    image = height * width
    costs = []
    for phase in phases:
        pixels = image if phase.data == "image" else min(image, phase.crops_per_step * phase.crop_size**2)
        costs.append(float(pixels + STEP_OVERHEAD_PIXELS))
    ends = phase_ends([phase.share for phase in phases])
    done, total = 0, 0.0
    for cost, end in zip(costs, ends):
        count = round(steps * end) - done
        total, done = total + count * cost, done + count
    return [*costs, total]


def corrective_steps(phases: Sequence[TrainingPhase], steps: int, height: int, width: int) -> int:
    """Steps of rate control's corrective pass (a step of the last phase): :data:`CORRECTIVE_WORK_SHARE`
    of the plain encode's work, and at least one evaluation's worth (20 steps; a large image's
    share is fewer)."""
    *costs, total = training_work(phases, steps, height, width)
    return max(phases[-1].eval_interval, round(CORRECTIVE_WORK_SHARE * total / costs[-1]))


def _descend(cost_of: Callable[[int], float], start: int, candidates: range) -> int:
    """The candidate of least cost, walking from ``start`` in the direction that lowers it.

    The cost is the weights' rate plus the priced distortion (``train.rd_objective``), which
    falls then rises as the precision grows; walking from a likely optimum decodes the image a
    few times instead of once per candidate (docs/decisions.md, "Weight precision").
    """
    best, best_cost = start, cost_of(start)
    for direction in (-1, 1):
        precision, improved = start + direction, False
        while precision in candidates:
            cost = cost_of(precision)
            if cost >= best_cost:
                break
            best, best_cost, improved = precision, cost, True
            precision += direction
        if improved:
            break
    return best


def _search_precisions(
    cost_of: Callable[[tuple[int, ...]], float], count: int, per_layer: bool = True
) -> tuple[int, ...]:
    """One weight precision per restoring layer, by least rate-distortion cost.

    First one precision shared by all layers, then each layer walked on its own from there: the
    layers differ in how much an error in their weights costs (the last layer's errors land on
    the pixels directly, the first layer's are smoothed by the ones after it). Without
    ``per_layer``, the shared precision alone (rate control's calibration packings).
    """
    shared = _descend(lambda p: cost_of((p,) * count), WEIGHT_PRECISION_START, WEIGHT_PRECISIONS)
    precisions = [shared] * count
    if not per_layer:
        return tuple(precisions)
    for layer in range(count):

        def cost_of_layer(p: int, layer: int = layer) -> float:
            return cost_of((*precisions[:layer], p, *precisions[layer + 1 :]))

        precisions[layer] = _descend(cost_of_layer, shared, WEIGHT_PRECISIONS)
    return tuple(precisions)


#: Most latent positions the final entropy tuning looks at (a Kodak-size ``fine`` latent has
#: 24,576): a larger latent is represented by a mosaic of crops of TUNE_CROP x TUNE_CROP
#: positions spread over it, so that tuning costs about what it costs on Kodak.
TUNE_POSITIONS = 1 << 15
TUNE_CROP = 64
TUNE_ACROSS = 4  # crops per row of the mosaic


def _tuning_sample(latent: np.ndarray) -> np.ndarray:
    """The latent (1, L, h, w), or for a large one a mosaic of crops spread over it (1, L, h', w').

    Tuning a few numbers per channel needs a sample of the symbols, not all of them: the whole
    latent of a 3072x2048 photo took 30 s of CPU to tune, a batch of eight 64 x 64 crops still
    twice a Kodak latent's 15 s; one mosaic of them costs what Kodak does. The crops start on
    multiples of 16, so their context phases are the latent's; only the seams between them
    mix neighbours from two places.
    """
    _, height, width = latent.shape
    if height * width <= TUNE_POSITIONS:
        return latent[None]
    side_h, side_w = min(TUNE_CROP, height), min(TUNE_CROP, width)
    count = max(1, TUNE_POSITIONS // (side_h * side_w))
    down = max(1, min(count, round(math.sqrt(count * height / width))))
    across = max(1, count // down)
    tops = sorted({int(t) // 16 * 16 for t in np.linspace(0, height - side_h, down)})
    lefts = sorted({int(t) // 16 * 16 for t in np.linspace(0, width - side_w, across)})
    crops = [latent[:, t : t + side_h, x : x + side_w] for t in tops for x in lefts]
    per_row = min(TUNE_ACROSS, len(crops))
    rows = [
        np.concatenate(crops[i : i + per_row], axis=2) for i in range(0, len(crops) - per_row + 1, per_row)
    ]
    return np.concatenate(rows, axis=1)[None]


def _tune_entropy(entropy: LatentEntropyModel, latent: np.ndarray, steps: int = 50) -> None:
    """Fit the entropy model to the actual integer latent (cheap: a few numbers per channel).

    Why 50 steps: docs/decisions.md, "Final entropy tuning". A large latent is tuned on a
    sample of it (:func:`_tuning_sample`).
    """
    symbols = torch.from_numpy(_tuning_sample(latent).astype(np.float32))
    optimizer = Adam([(list(entropy.parameters()), 0.05)])
    for _ in range(steps):
        optimizer.zero_grad()
        bits = entropy.bits(symbols)
        bits.backward()
        optimizer.step()


def _quantize_decoder(model: CCNN, precisions: tuple[int, ...]) -> list[QuantizedTensor]:
    tensors: list[QuantizedTensor] = []
    layers = zip(model.decoder_weights, model.decoder_biases, precisions, strict=True)
    for weight, bias, precision in layers:
        std = float(weight.detach().std()) or 1.0
        exponent = int(precision - math.floor(math.log2(std)))
        tensors.append(quantize_tensor(weight, exponent))
        tensors.append(quantize_tensor(bias, BIAS_EXPONENT))
    return tensors


def overhead_estimator(fixed_bytes: int) -> Callable[[CCNN, LatentEntropyModel], float]:
    """Bits of a file outside its latent, estimated from the networks being trained.

    The restoring network's weights at the precision most encodes end at
    (:data:`WEIGHT_PRECISION_START`), the entropy model's parameters as stored, and
    ``fixed_bytes`` (header, section framing, alpha, metadata): what progress shows and rate
    control steers by, so that both speak of the whole file.
    """

    def overhead_bits(model: CCNN, entropy: LatentEntropyModel) -> float:
        tensors = _quantize_decoder(model, (WEIGHT_PRECISION_START,) * len(model.decoder_weights))
        return 8.0 * fixed_bytes + sum(estimate_bits(t.ints, weight_model(t.ints)) for t in tensors)

    return overhead_bits


def _framing_bytes(
    config: CodecConfig,
    height: int,
    width: int,
    channels: int,
    alpha_data: bytes | None,
    metadata: Metadata,
    note: str,
) -> int:
    """Bytes of a file of these settings that are not coded weights or latent symbols: the
    header, section framing, the weight and latent models' parameters, the context model,
    alpha, metadata and the checksum (a file packed with empty data sections)."""
    spec = config.decoder_spec()
    placeholder = GroupModel(0.0, 1.0, 0, 0)
    context = None
    if spec.latent_context:
        context = np.zeros((config.context_levels, spec.latent_channels, CONTEXT_PARAMETERS))
    empty = container.CCNNFile(
        height=height,
        width=width,
        channels=channels,
        spec=spec,
        weight_exponents=(0,) * (2 * len(spec.layers)),
        weight_models=(placeholder,) * (2 * len(spec.layers)),
        weight_data=b"",
        latent_models=(placeholder,) * spec.latent_channels,
        latent_context=context,
        latent_data=b"",
        alpha_data=alpha_data,
        metadata=metadata,
        note=note,
    )
    return len(container.pack(empty))


def encode(
    pixels: np.ndarray,
    config: CodecConfig,
    progress: ProgressCallback | None = None,
    device: str | None = None,
    alpha: np.ndarray | None = None,
    metadata: Metadata | None = None,
) -> EncodeResult:
    """Compress uint8 H x W x C ``pixels`` (C is 1 or 3) into the bytes of a .ccnn file.

    ``alpha`` (uint8 H x W) is coded losslessly beside the pixels and ``metadata`` stored as
    it is; both count in the file's size and bpp. The PSNR is that of the colour channels.
    With a ``config.rate_target``, training steers towards it (:mod:`ccnn.encoder.rate`); the
    packed file's weight precisions are moved off their rate-distortion optimum when that alone
    brings a near miss inside the target (:func:`_fit_precisions`), and when the file still
    misses, one corrective pass of :func:`corrective_steps` continues against a target corrected
    by the estimate's measured error; of all the files packed on the way (calibrations
    included), the best that meets the target is kept (:meth:`RateController.choose`).
    """
    start = time.perf_counter()
    height, width, channels = pixels.shape
    container.check_decodable(config.decoder_spec(), height, width, operation="compressing")
    metadata = metadata or Metadata()
    alpha_data = None if alpha is None else encode_alpha(alpha)
    note = "" if config.rate_target is None else config.rate_target.describe()
    framing = _framing_bytes(config, height, width, channels, alpha_data, metadata, note)
    controller = None if config.rate_target is None else RateController(config.rate_target, height * width)
    phases = training_phases(config)
    # every file packed under rate control: the best is kept
    packed_files: list[Packed] = []
    optimal: list[tuple[int, ...]] = []  # the precisions each packing chose, before a fit

    def calibrate(trainer: Trainer) -> None:
        """Pack the state just evaluated, and teach the controller the estimate's error. The
        first calibration searches one weight precision shared by all layers, later ones reuse
        the latest optimum (one exact decode instead of a dozen: the precisions move little late
        in training). Every packing chooses the precisions at the level's own price
        (``config``), not the steered one."""
        assert controller is not None
        previous = optimal[-1] if optimal else None
        state = trainer.snapshot()
        packed = _pack(pixels, config, state, alpha_data, metadata, note, previous, per_layer=False)[0]
        packed_files.append(packed)
        optimal.append(packed.precisions)
        controller.calibrate(trainer.last.file_bpp, trainer.last.psnr, len(packed.data), packed.psnr)

    trainer = Trainer(
        pixels,
        config,
        progress,
        device,
        overhead_estimator(framing),
        controller,
        calibrate if controller is not None else None,
    )
    result = trainer.run(phases)
    if result.stopped_by_time:
        budget = f"a time budget ended training after {result.steps} of {config.steps} steps"
        note = f"{note}; {budget}" if note else budget
    # the weights' precisions are chosen at the quality level's price of a dB, not the steered
    # one: rate control steers the latent, and the fit moves the precisions (see _pack)
    packs = _pack(pixels, config, result, alpha_data, metadata, note, fit=controller)
    packed_files.extend(packs)
    optimal.append(packs[0].precisions)
    packed, target_note, target_reached = packs[0], None, True
    if controller is not None and not controller.reached(len(packed.data), packed.psnr):
        # the file at the weights' optimum missed (a fitted one may not have): a corrective pass
        trainer.evaluate()  # the estimate at the state that was packed
        controller.calibrate(trainer.last.file_bpp, trainer.last.psnr, len(packed.data), packed.psnr)
        scale = controller.jump(trainer.config.quality_scale, len(packed.data), packed.psnr)
        logger.debug("rate control: missed, price %.3f -> %.3f", trainer.config.quality_scale, scale)
        # a price already at its bound (SCALE_BOUND) would train on as before: a target beyond
        # the network's reach costs no corrective pass
        if abs(math.log(scale / trainer.config.quality_scale)) > 1e-9:
            trainer.config = dataclasses.replace(trainer.config, quality_scale=scale)
            padded = [-(-side // config.total_stride) * config.total_stride for side in (height, width)]
            result = trainer.resume(phases[-1], corrective_steps(phases, config.steps, *padded))
            # the precisions at the level's price move little in a short pass: reused (one
            # exact decode instead of a dozen, which weigh most on a large image)
            reuse = packed.precisions
            packs = _pack(pixels, config, result, alpha_data, metadata, note, reuse, fit=controller)
            packed_files.extend(packs)
    if controller is not None:
        packed = packed_files[controller.choose([(len(p.data), p.psnr) for p in packed_files])]
    data = packed.data
    decoded = decode(data)
    quality = psnr(pixels, decoded[:, :, :channels])
    if controller is not None:
        target_note = controller.outcome(len(data), quality)
        target_reached = controller.reached(len(data), quality)
    return EncodeResult(
        data=data,
        decoded=decoded,
        psnr=quality,
        bpp=bits_per_pixel(len(data), height, width),
        steps=result.steps,
        train_seconds=result.seconds,
        encode_seconds=time.perf_counter() - start,
        planned_steps=config.steps,
        stopped_by_time=result.stopped_by_time,
        target=target_note,
        target_reached=target_reached,
    )


@dataclasses.dataclass(frozen=True)
class Packed:
    """A packed file, its PSNR (from the exact restoration the precision search decoded, which
    is what the decoder gives) and the weight precisions it was packed at."""

    data: bytes
    psnr: float
    precisions: tuple[int, ...]


#: How far :func:`_fit_precisions` moves the weight precisions off their optimum: at most this
#: many bits on every restoring layer.
FIT_BITS = 3


def _precision_chain(start: tuple[int, ...], direction: int) -> list[tuple[int, ...]]:
    """Weight precisions moving away from ``start`` by one layer's bit at a time, in
    ``direction``: all layers +1 one after the other, then +2, up to :data:`FIT_BITS` (a
    file that grows or shrinks by small steps)."""
    chain: list[tuple[int, ...]] = []
    low, high = WEIGHT_PRECISIONS[0], WEIGHT_PRECISIONS[-1]
    for bits in range(1, FIT_BITS + 1):
        for layer in range(len(start)):
            shift = [direction * (bits if i <= layer else bits - 1) for i in range(len(start))]
            candidate = tuple(min(max(p + d, low), high) for p, d in zip(start, shift))
            if candidate != (chain[-1] if chain else start):
                chain.append(candidate)
    return chain


def _fit_precisions(
    start: tuple[int, ...], size_of: Callable[[tuple[int, ...]], int], controller: RateController
) -> tuple[int, ...]:
    """The weight precisions nearest ``start`` (the rate-distortion optimum) whose file reaches
    a size or bpp target, or ``start`` when it does already or none of :func:`_precision_chain`
    does: a final adjustment of a few percent of the file that costs no training, and a
    packing per candidate (no decoding; the sizes are exact)."""
    side = controller.size_side(size_of(start))
    if side == 0:
        return start
    for candidate in _precision_chain(start, -side):
        moved = controller.size_side(size_of(candidate))
        if moved == 0:
            return candidate
        if moved != side:  # stepped over the window
            break
    return start


def _pack(
    pixels: np.ndarray,
    config: CodecConfig,
    result: FitResult,
    alpha_data: bytes | None,
    metadata: Metadata,
    note: str = "",
    precisions: tuple[int, ...] | None = None,
    fit: RateController | None = None,
    per_layer: bool = True,
) -> list[Packed]:
    """Quantize and code a training result into the bytes of a .ccnn file (and maybe a second).

    The latent is rounded and its entropy model tuned on the actual symbols; each restoring
    layer's weight step is chosen by the rate-distortion cost at ``config``'s price of a dB,
    each candidate decoded exactly as the decoder will, unless ``precisions`` are given. With
    ``fit`` (a size or bpp target), a file at precisions moved to land a near miss on the
    target (:func:`_fit_precisions`) follows the one at the optimum, when they differ.
    """
    height, width, channels = pixels.shape
    spec = config.decoder_spec()
    latent = quantize_latent(result.latent, config.latent_mode)
    _tune_entropy(result.entropy, latent)
    latent_models = result.entropy.group_models(latent)
    latent_context = result.entropy.stored_context()
    latent_data = encode_latent(latent, latent_models, latent_context, tabled=True)

    weights: dict[tuple[int, ...], tuple[list[QuantizedTensor], list[GroupModel]]] = {}
    costs: dict[tuple[int, ...], tuple[float, float]] = {}

    def weights_at(precisions: tuple[int, ...]) -> tuple[list[QuantizedTensor], list[GroupModel]]:
        if precisions not in weights:
            tensors = _quantize_decoder(result.model, precisions)
            weights[precisions] = (tensors, [weight_model(t.ints) for t in tensors])
        return weights[precisions]

    def weight_cost(precisions: tuple[int, ...]) -> float:
        """Rate-distortion cost of the weights at ``precisions``, decoded exactly as the decoder will."""
        if precisions not in costs:
            tensors, models = weights_at(precisions)
            weight_bits = sum(estimate_bits(t.ints, m) for t, m in zip(tensors, models))
            decoded = restore_exact(spec, tensors, latent, (height, width))
            # in bands, exact: the whole image in float64 three times over would be 1.7 GB at 24 MP
            error = mse(pixels, decoded)
            cost = rd_objective(weight_bits / (height * width), error / 255.0**2, config)
            costs[precisions] = (cost, error)
        return costs[precisions][0]

    def packed_at(precisions: tuple[int, ...]) -> bytes:
        tensors, weight_models = weights_at(precisions)
        contents = container.CCNNFile(
            height=height,
            width=width,
            channels=channels,
            spec=spec,
            weight_exponents=tuple(t.exponent for t in tensors),
            weight_models=tuple(weight_models),
            weight_data=encode_groups([t.ints for t in tensors], weight_models),
            latent_models=tuple(latent_models),
            latent_context=latent_context,
            latent_data=latent_data,
            alpha_data=alpha_data,
            metadata=metadata,
            note=note,
        )
        return container.pack(contents)

    if precisions is None:
        precisions = _search_precisions(weight_cost, len(result.model.decoder_weights), per_layer)
    weight_cost(precisions)
    packs = [Packed(packed_at(precisions), psnr_from_mse(costs[precisions][1]), precisions)]
    if fit is not None and fit.target.kind != "psnr":
        sizes = {precisions: len(packs[0].data)}

        def size_of(candidate: tuple[int, ...]) -> int:
            if candidate not in sizes:
                sizes[candidate] = len(packed_at(candidate))
            return sizes[candidate]

        fitted = _fit_precisions(precisions, size_of, fit)
        if fitted != precisions:
            weight_cost(fitted)
            packs.append(Packed(packed_at(fitted), psnr_from_mse(costs[fitted][1]), fitted))
    for packed in packs:
        logger.debug(
            "packed at step %d: %d bytes, %.2f dB, weight precisions %s",
            result.steps,
            len(packed.data),
            packed.psnr,
            packed.precisions,
        )
    return packs
