"""encode(): image -> .ccnn bytes.

Fit the network on the image, quantize the latent, tune the latent's entropy model on the
actual symbols, choose each restoring layer's weight quantization step by the full
rate-distortion cost (each candidate decoded exactly, as the decoder will), then range-code and
pack. The file is decoded once at the end by the decoder itself (:func:`ccnn.format.decode`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

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
from ..metrics import mse, psnr
from ..settings import RATE_CONTROL_INTERVAL, CodecConfig, training_phases
from .entropy_model import LatentEntropyModel
from .model import CCNN
from .optim import Adam
from .quantize import quantize_latent, quantize_tensor
from .rate import RateController
from .result import EncodeResult, ProgressCallback
from .train import FitResult, Trainer, rd_objective

#: Bias steps are fine (there are few biases); weight steps are searched over this range of
#: "bits below the tensor's standard deviation".
BIAS_EXPONENT = 10
WEIGHT_PRECISIONS = range(0, 11)
#: Where the search starts: the precision most Kodak encodes end at.
WEIGHT_PRECISION_START = 4
#: Rate control's corrective pass, when the first file misses its target: this share of the
#: whole-image steps more, about a fifth of a plain encode's time (issue 21 allows 1.3 times in all).
CORRECTIVE_SHARE = 0.4


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


def _search_precisions(cost_of: Callable[[tuple[int, ...]], float], count: int) -> tuple[int, ...]:
    """One weight precision per restoring layer, by least rate-distortion cost.

    First one precision shared by all layers, then each layer walked on its own from there: the
    layers differ in how much an error in their weights costs (the last layer's errors land on
    the pixels directly, the first layer's are smoothed by the ones after it).
    """
    shared = _descend(lambda p: cost_of((p,) * count), WEIGHT_PRECISION_START, WEIGHT_PRECISIONS)
    precisions = [shared] * count
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
    With a ``config.rate_target``, training steers towards it (:mod:`ccnn.encoder.rate`) and,
    when the packed file misses, one corrective pass of
    :data:`CORRECTIVE_SHARE` of the whole-image steps continues against a target corrected by
    the estimate's measured error; of all the files packed on the way (calibrations included),
    the best that meets the target is kept (:meth:`RateController.choose`).
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
    # every file packed under rate control, as (bytes, decoded pixels, PSNR): the best is kept
    packed_files: list[tuple[bytes, np.ndarray, float]] = []

    def keep(data: bytes) -> tuple[bytes, np.ndarray, float]:
        decoded = decode(data)
        packed_files.append((data, decoded, psnr(pixels, decoded[:, :, :channels])))
        return packed_files[-1]

    def calibrate(trainer: Trainer) -> None:
        """Pack the state just evaluated, and teach the controller the estimate's error."""
        assert controller is not None
        data, _, quality = keep(_pack(pixels, trainer.config, trainer.snapshot(), alpha_data, metadata, note))
        controller.calibrate(trainer.last.file_bpp, trainer.last.psnr, len(data), quality)

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
    data, decoded, quality = keep(_pack(pixels, trainer.config, result, alpha_data, metadata, note))
    target_note, target_reached = None, True
    if controller is not None:
        if not controller.reached(len(data), quality):
            trainer.evaluate()  # the estimate at the state that was packed
            controller.calibrate(trainer.last.file_bpp, trainer.last.psnr, len(data), quality)
            scale = controller.jump(trainer.config.quality_scale, len(data), quality)
            trainer.config = dataclasses.replace(trainer.config, quality_scale=scale)
            refine = phases[-1]
            extra = max(RATE_CONTROL_INTERVAL * 2, round(CORRECTIVE_SHARE * config.steps * refine.share))
            result = trainer.resume(refine, extra)
            keep(_pack(pixels, trainer.config, result, alpha_data, metadata, note))
            data, decoded, quality = packed_files[
                controller.choose([(len(data), quality) for data, _, quality in packed_files])
            ]
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


def _pack(
    pixels: np.ndarray,
    config: CodecConfig,
    result: FitResult,
    alpha_data: bytes | None,
    metadata: Metadata,
    note: str = "",
) -> bytes:
    """Quantize and code a training result into the bytes of a .ccnn file.

    The latent is rounded and its entropy model tuned on the actual symbols; each restoring
    layer's weight step is chosen by the rate-distortion cost at ``config``'s price of a dB,
    each candidate decoded exactly as the decoder will.
    """
    height, width, channels = pixels.shape
    spec = config.decoder_spec()
    latent = quantize_latent(result.latent, config.latent_mode)
    _tune_entropy(result.entropy, latent)
    latent_models = result.entropy.group_models(latent)
    latent_context = result.entropy.stored_context()
    latent_data = encode_latent(latent, latent_models, latent_context, tabled=True)

    costs: dict[tuple[int, ...], tuple[float, list[QuantizedTensor], list[GroupModel]]] = {}

    def weight_cost(precisions: tuple[int, ...]) -> float:
        """Rate-distortion cost of the weights at ``precisions``, decoded exactly as the decoder will."""
        if precisions not in costs:
            tensors = _quantize_decoder(result.model, precisions)
            models = [weight_model(t.ints) for t in tensors]
            weight_bits = sum(estimate_bits(t.ints, m) for t, m in zip(tensors, models))
            decoded = restore_exact(spec, tensors, latent, (height, width))
            # in bands, exact: the whole image in float64 three times over would be 1.7 GB at 24 MP
            error = mse(pixels, decoded) / 255.0**2
            cost = rd_objective(weight_bits / (height * width), error, config)
            costs[precisions] = (cost, tensors, models)
        return costs[precisions][0]

    _, tensors, weight_models = costs[_search_precisions(weight_cost, len(result.model.decoder_weights))]
    weight_data = encode_groups([t.ints for t in tensors], weight_models)
    contents = container.CCNNFile(
        height=height,
        width=width,
        channels=channels,
        spec=spec,
        weight_exponents=tuple(t.exponent for t in tensors),
        weight_models=tuple(weight_models),
        weight_data=weight_data,
        latent_models=tuple(latent_models),
        latent_context=latent_context,
        latent_data=latent_data,
        alpha_data=alpha_data,
        metadata=metadata,
        note=note,
    )
    return container.pack(contents)
