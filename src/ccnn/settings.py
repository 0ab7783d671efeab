"""Encoder settings, defined once: the presets, the quality levels and the options a user sets.

A preset is a complete :class:`CodecConfig`. :class:`EncoderOptions` is the one typed
description of what a user may change (quality, steps, seconds, seed, ...): the command line's
flags, the API's keywords, the batch fingerprint and the bench's settings are all derived from
its fields, and :meth:`EncoderOptions.resolve` turns it into a range-checked configuration.
Only the decoder half of a configuration travels in the file (:meth:`CodecConfig.decoder_spec`);
the rest steers the encoder. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import numpy as np

from . import tomlfile
from .errors import ConfigError, ConfigFileError
from .format.container import MAX_KERNEL, MAX_LAYER_CHANNELS, MAX_LAYERS, MAX_STRIDE
from .format.entropy import MAX_CONTEXT_LEVELS
from .format.spec import METADATA_KINDS, DecoderSpec, LatentMode, LayerSpec, TextEnum

#: Rate-distortion trade-off per quality level (level 1 gives the smallest files): the loss is
#: bpp - slope * PSNR, the slope being what one dB is worth in bits per pixel, so every image
#: stops at the same price of a dB, the unit quality is averaged in.
#: Why these values: docs/decisions.md, "Quality slopes".
QUALITY_SLOPES: tuple[float, ...] = (0.032, 0.05, 0.079, 0.105, 0.139, 0.17, 0.21, 0.257, 0.33)
#: λ of the squared-error loss bpp + λ * 255^2 * MSE per level: the ``paper`` preset's loss (at
#: its fixed level 4) and the rate-distortion presets' loss on crops.
#: Why: docs/decisions.md, "Quality lambdas".
QUALITY_LAMBDAS: tuple[float, ...] = (0.0009, 0.0018, 0.0035, 0.0067, 0.0130, 0.0200, 0.0450, 0.0932, 0.19)
MAX_QUALITY = len(QUALITY_SLOPES)


#: What a user may ask the encoder to land on: a whole-file bpp, a file size in bytes (never
#: exceeded) or a PSNR (reached).
RateTargetKind = Literal["bpp", "bytes", "psnr"]


@dataclass(frozen=True)
class RateTarget:
    """A target for one encode: ``kind`` is ``"bpp"``, ``"bytes"`` or ``"psnr"``, ``value`` its number.

    The trainer steers the rate-distortion trade-off towards it while it trains (see
    ``ccnn.encoder.rate``); :data:`RATE_TOLERANCE` says when it counts as reached.
    """

    kind: RateTargetKind
    value: float

    def describe(self) -> str:
        unit = {"bpp": " bpp", "bytes": " bytes", "psnr": " dB"}[self.kind]
        name = {"bpp": "target bpp", "bytes": "at most", "psnr": "target PSNR"}[self.kind]
        return f"{name} {self.value:g}{unit}"


#: When a target counts as reached: a bpp within ±3%; a size at most the limit and at least
#: 95% of it; a PSNR at least the target (issue 21's contract).
RATE_TOLERANCE = {"bpp": 0.03, "bytes": 0.05, "psnr": 0.0}

#: Where rate control starts: per preset, each quality level's whole-file bpp and PSNR as a
#: function of the image's detail D (:func:`ccnn.metrics.block_mean_psnr`, low for a detailed
#: image), log(bpp) = a + b·D and PSNR = c + d·D, as (a, b, c, d) per level. Fitted on the
#: preset's Kodak-24 run (``python benchmarks/rate_model.py docs/results/kodak/results.csv
#: ../shared/data/kodak``, and ``kodak-fast`` for ``fast``; levels a run lacks are filled from
#: their neighbours). At one level the detail term leaves the rate's spread at ±10-20% (log-bpp
#: residual 0.10-0.20) against ±20-40% without it; the controller steers the rest.
RateModel = tuple[tuple[float, float, float, float], ...]
RATE_MODELS: dict[str, RateModel] = {
    "fast": (
        (-1.6997, -0.0386, 2.5484, 0.9510),
        (-1.0739, -0.0508, 3.6839, 0.9399),
        (-0.4481, -0.0630, 4.8195, 0.9288),
        (-0.1498, -0.0673, 5.2063, 0.9255),
        (0.1484, -0.0715, 5.5931, 0.9223),
        (0.2302, -0.0707, 5.9204, 0.9118),
        (0.2352, -0.0669, 5.8377, 0.9174),
        (0.2403, -0.0632, 5.7551, 0.9230),
        (0.2403, -0.0632, 5.7551, 0.9230),
    ),
    "default": (
        (-2.1441, -0.0119, 0.1190, 1.1278),
        (-0.6012, -0.0629, 4.6072, 0.9811),
        (0.9417, -0.1139, 9.0954, 0.8344),
        (1.9842, -0.1378, 16.0767, 0.6146),
        (3.0266, -0.1617, 23.0579, 0.3947),
        (1.9722, -0.0942, 19.6469, 0.6611),
        (1.9834, -0.0835, 20.0283, 0.7082),
        (1.9945, -0.0728, 20.4096, 0.7553),
        (2.1160, -0.0706, 21.3220, 0.7530),
    ),
}
#: The detail of an image whose detail is not known: Kodak's median.
TYPICAL_DETAIL = 22.6


class Distortion(TextEnum):
    """What the loss charges for error: squared error (bpp + λ·255²·MSE) or PSNR (bpp − slope·PSNR)."""

    MSE = "mse"
    PSNR = "psnr"


@dataclass(frozen=True)
class CodecConfig:
    """Everything that decides what the encoder produces.

    ``latent_mode`` is the poster's byte latent or a rate-distortion trained integer latent
    (:class:`ccnn.format.LatentMode`).
    ``context_levels`` is how many coarse-to-fine levels of spatial context that model uses
    (0: none; see :mod:`ccnn.format.entropy`). ``distortion`` is the whole-image loss
    (:class:`Distortion`; see :data:`QUALITY_SLOPES`).
    ``steps`` is the effort: training stops after that many steps, so the same image, settings
    and seed give the same file however busy the machine is. ``seconds`` is an optional time
    budget on top (``None``: none); when it stops training first, the result says so.
    ``refine_share`` is the whole-image phase's share of the steps, ``refine_time_share`` its
    share of a time budget (its steps cost far more than a crop step's).
    ``rate_target`` (:class:`RateTarget`), when set, has the trainer steer ``quality_scale``
    (a factor on the quality level's λ and slope, 1 otherwise) until the file lands on it.
    ``soft_rounding`` is ``(start, end)``: the whole-image phase trains through
    :func:`ccnn.encoder.quantize.soft_round_noise` at a temperature falling linearly from start to end
    before its hard-rounding part (``None``: plain uniform noise).
    """

    name: str
    encoder: tuple[LayerSpec, ...]
    decoder: tuple[LayerSpec, ...]
    slope: float = 0.1
    latent_mode: LatentMode = LatentMode.INTEGER
    latent_activation: bool = False
    output_activation: bool = False
    quality: int = 4
    steps: int = 2000
    seconds: float | None = None
    learning_rate: float = 5e-3
    crop_size: int = 32
    crops_per_step: int = 16
    hard_rounding_fraction: float = 0.1
    refine_share: float = 0.0
    refine_time_share: float = 0.5
    refine_learning_rate: float = 3e-3
    refine_latent_lr: float = 2e-2
    soft_rounding: tuple[float, float] | None = None
    context_levels: int = 0
    distortion: Distortion = Distortion.MSE
    seed: int = 0
    rate_target: RateTarget | None = None
    quality_scale: float = 1.0
    description: str = field(default="", compare=False)

    @property
    def total_stride(self) -> int:
        """Downsampling factor from image to latent (product of the encoder's strides)."""
        stride = 1
        for layer in self.encoder:
            stride *= layer.stride
        return stride

    @property
    def latent_channels(self) -> int:
        return self.encoder[-1].channels

    @property
    def rate_lambda(self) -> float:
        """λ of this quality level's squared-error loss (see :data:`QUALITY_LAMBDAS`), times
        ``quality_scale``."""
        return QUALITY_LAMBDAS[self.quality - 1] * self.quality_scale

    @property
    def psnr_slope(self) -> float:
        """Bits per pixel one dB is worth at this quality level (see :data:`QUALITY_SLOPES`),
        times ``quality_scale``."""
        return QUALITY_SLOPES[self.quality - 1] * self.quality_scale

    def decoder_spec(self) -> DecoderSpec:
        """The header's description of the restoring network these settings train."""
        return DecoderSpec(
            layers=self.decoder,
            latent_channels=self.latent_channels,
            latent_stride=self.total_stride,
            slope=float(np.float16(self.slope)),
            latent_mode=self.latent_mode,
            output_activation=self.output_activation,
            latent_context=self.context_levels > 0 and self.latent_mode is LatentMode.INTEGER,
        )

    def summary(self) -> str:
        """A short human-readable description of the network, for progress and ``info``."""
        enc = " ".join(f"conv{s.kernel}/{s.stride}->{s.channels}" for s in self.encoder)
        dec = " ".join(f"tconv{s.kernel}/{s.stride}->{s.channels}" for s in self.decoder)
        return f"{self.name}: [{enc}] | [{dec}] slope={self.slope:g}"


def _paper(ratio: int = 4, kernel: int = 10, slope: float = 0.1, channels: int = 3) -> CodecConfig:
    return CodecConfig(
        name="paper",
        encoder=(LayerSpec(channels * ratio, kernel, ratio),),
        decoder=(LayerSpec(channels, kernel, ratio),),
        slope=slope,
        latent_mode=LatentMode.BYTE,
        latent_activation=True,
        output_activation=True,
        steps=3000,
        learning_rate=2e-3,
        crop_size=max(64, 4 * ratio),
        crops_per_step=8,
        hard_rounding_fraction=1.0,
        description="the poster exactly: one strided conv, one transposed conv, byte latent",
    )


#: The rate-distortion presets' networks by name: (compressing layers, restoring layers).
#: ``small`` and ``medium`` have a latent at stride 8 (8 and 12 channels, 2.4k and 5.5k decoder
#: parameters), ``fine`` one at stride 4 (12 channels, 5.8k parameters).
#: Why: docs/decisions.md, "Network sizes".
RD_NETWORKS: dict[str, tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]]] = {
    "small": (
        (LayerSpec(24, 3, 2), LayerSpec(24, 3, 2), LayerSpec(24, 3, 2), LayerSpec(8, 3, 1)),
        (LayerSpec(8, 4, 2), LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)),
    ),
    "medium": (
        (LayerSpec(24, 3, 2), LayerSpec(24, 3, 2), LayerSpec(24, 3, 2), LayerSpec(12, 3, 1)),
        (LayerSpec(16, 4, 2), LayerSpec(8, 4, 2), LayerSpec(3, 4, 2)),
    ),
    "fine": (
        (LayerSpec(32, 3, 2), LayerSpec(32, 3, 2), LayerSpec(12, 3, 1)),
        (LayerSpec(24, 4, 2), LayerSpec(3, 4, 2)),
    ),
}

#: Which network each preset uses: tiers of (first quality level, choices), each choice a
#: (block-mean PSNR bound, network) pair; an image takes the first network whose bound its
#: :func:`ccnn.metrics.block_mean_psnr` (8x8 blocks) is below, and an unknown one counts as
#: smooth (the last bound is infinite). The network grows with quality, and between the tiers
#: the image's detail decides. Why these bounds: docs/decisions.md, "Network by quality and by
#: image detail" and "The fast preset's network".
NetworkTier = tuple[int, tuple[tuple[float, str], ...]]
PRESET_NETWORKS: dict[str, tuple[NetworkTier, ...]] = {
    "fast": ((1, ((math.inf, "small"),)),),
    "default": (
        (1, ((math.inf, "small"),)),
        (3, ((20.0, "fine"), (math.inf, "small"))),
        (4, ((22.6, "fine"), (math.inf, "medium"))),
        (6, ((math.inf, "fine"),)),
    ),
}

#: The image size the networks above were chosen for (Kodak, 768x512); see docs/decisions.md,
#: "Smaller images get a smaller network".
NETWORK_REFERENCE_PIXELS = 768 * 512


def rd_network(
    quality: int,
    channels: int = 3,
    pixels: int | None = None,
    preset: str = "default",
    block_psnr: float | None = None,
) -> tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]]:
    """(compressing, restoring) layers of the rate-distortion preset ``preset`` at ``quality``.

    ``block_psnr`` is the image's :func:`ccnn.metrics.block_mean_psnr`, which picks the
    network within the quality's tier of :data:`PRESET_NETWORKS` (unknown counts as smooth).
    The weights travel in the file, so a smaller image gets the network of a lower quality:
    one level down per halving of the pixel count below :data:`NETWORK_REFERENCE_PIXELS`
    (the 256x192 sample at quality 4 gets quality 1's network).
    """
    if pixels is not None and pixels < NETWORK_REFERENCE_PIXELS:
        quality = max(1, quality - round(math.log2(NETWORK_REFERENCE_PIXELS / max(pixels, 1))))
    detail = math.inf if block_psnr is None else block_psnr
    _, choices = next(tier for tier in reversed(PRESET_NETWORKS[preset]) if quality >= tier[0])
    network = next(name for bound, name in choices if detail < bound or bound == math.inf)
    encoder, decoder = RD_NETWORKS[network]
    last = decoder[-1]
    return encoder, (*decoder[:-1], LayerSpec(channels, last.kernel, last.stride))


def _rd(
    name: str,
    steps: int,
    refine_share: float,
    distortion: Distortion,
    description: str,
    soft_rounding: tuple[float, float] | None = None,
) -> CodecConfig:
    encoder, decoder = rd_network(CodecConfig.quality, preset=name)
    return CodecConfig(
        name=name,
        encoder=encoder,
        decoder=decoder,
        slope=0.1,
        steps=steps,
        learning_rate=1e-2,
        refine_share=refine_share,
        soft_rounding=soft_rounding,
        context_levels=2,
        distortion=distortion,
        description=description,
    )


#: Where training may run (``auto``: CUDA when present); the file decodes on any CPU either way.
DEVICES = ("auto", "cpu", "cuda")

#: Which metadata of the input travels into the file (``--metadata``, ``metadata=``): by
#: default all of it, as avifenc does, since a photo without its ICC profile shows other
#: colours and one without its EXIF loses its date and camera. The bytes count in the rate.
METADATA_DEFAULT = "all"
METADATA_CHOICES = ("all", "none", *METADATA_KINDS)

#: The rate-distortion presets' effort: training steps in all, and of them the whole-image
#: phase's (the rest train on crops). Calibrated so that a Kodak image (768x512) with the
#: largest network encodes in about 15 s (``fast``) and 120 s (``default``) on one idle core
#: of the reference machine: docs/decisions.md, "Effort, not time: presets stop on steps".
FAST_STEPS, FAST_REFINE_STEPS = 700, 190
DEFAULT_STEPS, DEFAULT_REFINE_STEPS = 4500, 570


#: Bounds of the factor by which the whole-image phase's steps grow for an image smaller than
#: :data:`NETWORK_REFERENCE_PIXELS` (its steps are that much cheaper) and shrink for a larger one.
REFINE_SCALE_BOUNDS = (0.25, 8.0)

#: The most whole-image work (steps x pixels) any image gets, in multiples of a reference-size
#: image's: past 24 reference images (9.4 MP) the phase's time stops growing with the size, so
#: that a 24 MP photo encodes in bounded time (docs/decisions.md, "Whole-image passes in bands").
REFINE_WORK_BOUND = 6.0


def effort_steps(config: CodecConfig, pixels: int | None) -> tuple[int, int]:
    """(crop steps, whole-image steps) of ``config``'s effort for an image of ``pixels``.

    A crop step costs the same on any image, a whole-image step costs in proportion to the
    pixels. The presets' counts are those of a Kodak-size image
    (:data:`NETWORK_REFERENCE_PIXELS`); another size keeps the crop steps and scales the
    whole-image steps inversely with its pixels (within :data:`REFINE_SCALE_BOUNDS`), so that the
    phase does about the same work: a small image, whose weights weigh most in its file, gets
    many more cheap whole-image steps, and a camera-size one a bounded time (at most
    :data:`REFINE_WORK_BOUND` times the reference's whole-image work). It depends on the
    size alone, so the file stays the same whatever the machine's load.
    """
    crop_steps = round(config.steps * (1.0 - config.refine_share))
    refine_steps = config.steps - crop_steps
    if pixels is not None and refine_steps > 0:
        low, high = REFINE_SCALE_BOUNDS
        size = NETWORK_REFERENCE_PIXELS / max(pixels, 1)
        scale = min(max(size, low), high, REFINE_WORK_BOUND * size)
        refine_steps = max(1, round(refine_steps * scale))
    return crop_steps, refine_steps


def metadata_kinds(value: str | Iterable[str] | None = METADATA_DEFAULT) -> frozenset[str]:
    """The metadata kinds that ``value`` selects: ``all``, ``none``, a kind, a comma list, or several.

    ``--metadata icc --metadata exif`` and ``--metadata icc,exif`` mean the same; ``none``
    alone selects nothing, and ``all`` wins over anything named beside it.
    """
    if value is None:
        value = METADATA_DEFAULT
    words = [value] if isinstance(value, str) else list(value)
    names = [name.strip().lower() for word in words for name in str(word).split(",") if name.strip()]
    unknown = [name for name in names if name not in METADATA_CHOICES]
    if unknown or not names:
        raise ConfigError(
            f"metadata must be {', '.join(METADATA_CHOICES)} or a comma list of kinds, "
            f"not {(unknown or [''])[0]!r}"
        )
    if "all" in names:
        return frozenset(METADATA_KINDS)
    if "none" in names and len(set(names)) > 1:
        raise ConfigError(f"metadata 'none' cannot go with other kinds ({', '.join(names)})")
    return frozenset(name for name in names if name != "none")


class Preset(TextEnum):
    """The named presets: ``paper`` reproduces the poster, ``fast`` and ``default`` are effort levels."""

    PAPER = "paper"
    FAST = "fast"
    DEFAULT = "default"


PRESETS: dict[Preset, CodecConfig] = {
    Preset.PAPER: _paper(),
    # docs/decisions.md, "Effort, not time: presets stop on steps" and "Fast preset uses the
    # PSNR loss too"
    Preset.FAST: _rd(
        "fast",
        FAST_STEPS,
        FAST_REFINE_STEPS / FAST_STEPS,
        Distortion.PSNR,
        description="rate-distortion network, short training",
    ),
    # docs/decisions.md, "Effort, not time: presets stop on steps" and "Soft rounding in the
    # whole-image phase"
    Preset.DEFAULT: _rd(
        "default",
        DEFAULT_STEPS,
        DEFAULT_REFINE_STEPS / DEFAULT_STEPS,
        Distortion.PSNR,
        description="rate-distortion network",
        soft_rounding=(0.3, 0.1),
    ),
}


@dataclass(frozen=True)
class OptionInfo:
    """How a user sets one encoder option: its help, its range and the presets it applies to.

    The command line's flags, the API's keywords, the batch fingerprint and the bench's settings
    are all read off these, so an option is described in this one place.
    """

    help: str
    short: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    presets: tuple[Preset, ...] = tuple(Preset)


def _option(help: str, **info: Any) -> Any:
    return field(default=None, metadata={"option": OptionInfo(help, **info)})


# --- Training overrides (presets from files) -----------------------------------------------------
#
# What a settings file (``--config FILE.toml``, :meth:`EncoderOptions.from_toml`) may say beyond
# the user options: the training and the network, mirroring the fields of :class:`CodecConfig`
# that steer the encoder. Kept apart from :class:`EncoderOptions`' own fields so that the
# command line's flags stay the short list users need, while a preset file, and the tuner that
# will write them, can describe a complete encoder.


def _training(help: str, **info: Any) -> Any:
    return field(default=None, metadata={"training": OptionInfo(help, **info)})


@dataclass(frozen=True)
class TrainingOverrides:
    """Overrides of the preset's training and network, each ``None`` for "the preset's value".

    The scalar fields are :class:`CodecConfig`'s of the same name, except ``reference_steps``,
    which is its ``steps``: the effort for a 768x512 image, whose whole-image steps
    :func:`effort_steps` scales to the image's size (the user option ``steps`` instead sets the
    exact count). ``soft_rounding`` is ``(start, end)`` or ``()`` to turn it off. ``network``
    forces one of :data:`RD_NETWORKS` at every quality and image; ``encoder_layers`` and
    ``decoder_layers`` (given together, instead of ``network``) spell a network out, the last
    restoring layer's channels being the image's whatever is written. Every value is checked on
    construction and an error names the setting.
    """

    network: str | None = _training(f"a network to use at every quality: {', '.join(RD_NETWORKS)}")
    encoder_layers: tuple[LayerSpec, ...] | None = _training(
        "compressing layers as [channels, kernel, stride] (with decoder_layers, instead of network)"
    )
    decoder_layers: tuple[LayerSpec, ...] | None = _training(
        "restoring layers as [channels, kernel, stride]; the last one's channels become the image's"
    )
    latent_mode: LatentMode | None = _training(  # noqa: RUF009 (a field(), as for every setting)
        f"the latent: {' or '.join(m.value for m in LatentMode)} (the poster's byte latent)"
    )
    latent_activation: bool | None = _training("Leaky ReLU on the latent (the poster's)")
    output_activation: bool | None = _training("Leaky ReLU on the output (the poster's)")
    reference_steps: int | None = _training(
        "training steps for a 768x512 image; other sizes scale the whole-image part", minimum=1
    )
    learning_rate: float | None = _training("learning rate of the crop phase", positive=True)
    crop_size: int | None = _training("side of the training crops", minimum=4, maximum=4096)
    crops_per_step: int | None = _training("crops per training step", minimum=1, maximum=4096)
    hard_rounding_fraction: float | None = _training(
        "share of the last phase trained through hard rounding", minimum=0.0, maximum=1.0
    )
    refine_share: float | None = _training(
        "share of the steps in the whole-image phase (0: none); below 1", minimum=0.0, maximum=1.0
    )
    refine_time_share: float | None = _training(
        "share of a time budget in the whole-image phase; between 0 and 1", minimum=0.0, maximum=1.0
    )
    refine_learning_rate: float | None = _training(
        "learning rate of the networks in the whole-image phase", positive=True
    )
    refine_latent_lr: float | None = _training(
        "learning rate of the latent in the whole-image phase", positive=True
    )
    soft_rounding: tuple[float, ...] | None = _training(
        "soft rounding temperatures [start, end] of the whole-image phase; [] turns it off"
    )
    context_levels: int | None = _training(
        "coarse-to-fine levels of the entropy model's spatial context (0: none)",
        minimum=0,
        maximum=MAX_CONTEXT_LEVELS,
    )
    distortion: Distortion | None = _training(  # noqa: RUF009 (a field(), as for every setting)
        f"whole-image loss: {' or '.join(d.value for d in Distortion)} (bpp + λ·255²·MSE or bpp − slope·PSNR)"
    )

    def __post_init__(self) -> None:
        hints = get_type_hints(TrainingOverrides)
        for name in training_infos():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked_training(name, value, hints[name]))
        if self.network is not None and (self.encoder_layers or self.decoder_layers):
            raise ConfigError("network and encoder_layers/decoder_layers cannot both be set")
        if (self.encoder_layers is None) != (self.decoder_layers is None):
            raise ConfigError("encoder_layers and decoder_layers go together: set both or neither")
        if self.encoder_layers is not None and self.decoder_layers is not None:
            down = math.prod(layer.stride for layer in self.encoder_layers)
            up = math.prod(layer.stride for layer in self.decoder_layers)
            if down != up:
                raise ConfigError(
                    f"encoder_layers' strides multiply to {down}, decoder_layers' to {up}: they must match"
                )
            if down > MAX_TOTAL_STRIDE:
                raise ConfigError(f"the layers' strides multiply to {down}, more than {MAX_TOTAL_STRIDE}")
        if self.refine_share is not None and self.refine_share >= 1.0:
            raise ConfigError(
                f"refine_share must be below 1 (the crop phase needs steps), not {self.refine_share}"
            )
        if self.refine_time_share is not None and not 0.0 < self.refine_time_share < 1.0:
            raise ConfigError(
                f"refine_time_share must be between 0 and 1 (exclusive), not {self.refine_time_share}"
            )

    def chosen(self) -> dict[str, Any]:
        """The overrides given (not None), by name."""
        return {name: getattr(self, name) for name in training_infos() if getattr(self, name) is not None}

    def forces_network(self) -> bool:
        """Whether the network is set here rather than chosen by the preset, quality and image."""
        return self.network is not None or self.encoder_layers is not None

    def apply(self, config: CodecConfig) -> CodecConfig:
        """``config`` with the scalar overrides applied (the network is :meth:`layers`' business)."""
        updates = {
            ("steps" if name == "reference_steps" else name): value
            for name, value in self.chosen().items()
            if name not in ("network", "encoder_layers", "decoder_layers")
        }
        if "soft_rounding" in updates:
            updates["soft_rounding"] = updates["soft_rounding"] or None
        return dataclasses.replace(config, **updates)

    def layers(self, channels: int) -> tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]] | None:
        """(compressing, restoring) layers forced here for an image of ``channels``, else None."""
        if self.network is not None:
            encoder, decoder = RD_NETWORKS[self.network]
        elif self.encoder_layers is not None and self.decoder_layers is not None:
            encoder, decoder = self.encoder_layers, self.decoder_layers
        else:
            return None
        last = decoder[-1]
        return encoder, (*decoder[:-1], LayerSpec(channels, last.kernel, last.stride))

    @classmethod
    def of(cls, config: CodecConfig) -> TrainingOverrides:
        """Every scalar training setting of ``config`` spelled out (the network left to the preset)."""
        return cls(
            **{
                name: config.steps
                if name == "reference_steps"
                else (getattr(config, name) or ())
                if name == "soft_rounding"
                else getattr(config, name)
                for name in training_infos()
                if name not in ("network", "encoder_layers", "decoder_layers")
            }
        )


#: The largest product of strides a file may have (the container's limit).
MAX_TOTAL_STRIDE = 1024


def training_infos() -> dict[str, OptionInfo]:
    """Every training override (:class:`TrainingOverrides`' fields) and its help and range."""
    return {
        f.name: f.metadata["training"]
        for f in dataclasses.fields(TrainingOverrides)
        if "training" in f.metadata
    }


def _checked_training(name: str, value: Any, hint: Any) -> Any:
    """``value`` as training override ``name``'s type (from its annotation ``hint``), or a ConfigError."""
    info = training_infos()[name]
    kind = next(arg for arg in get_args(hint) if arg is not type(None))
    if get_args(kind) == (LayerSpec, ...):
        return _checked_layers(name, value)
    if get_args(kind) == (float, ...):  # soft_rounding: () or two temperatures
        if not isinstance(value, (list, tuple)) or len(value) not in (0, 2):
            raise ConfigError(f"{name} must be [start, end] temperatures or [] (off), not {value!r}")
        positive = OptionInfo(info.help, positive=True)
        return tuple(_checked_number(name, t, positive, float) for t in value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if isinstance(kind, type) and issubclass(kind, TextEnum):
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(
                f"{name} must be {' or '.join(repr(m.value) for m in kind)}, not {value!r}"
            ) from None
    if kind is str:
        if value not in RD_NETWORKS:
            raise ConfigError(f"{name} must be one of {', '.join(RD_NETWORKS)}, not {value!r}")
        return value
    return _checked_number(name, value, info, kind)


def _checked_number(name: str, value: Any, info: OptionInfo, kind: type) -> Any:
    """``value`` as an ``int`` or ``float`` within ``info``'s range, or a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    value = kind(value)
    if not math.isfinite(value) or (info.positive and value <= 0):
        raise ConfigError(f"{name} must be a {'positive' if info.positive else 'finite'} number, not {value}")
    low, high = info.minimum, info.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {kind(low)} and {kind(high)}" if high is not None else f"at least {kind(low)}"
        raise ConfigError(f"{name} must be {bounds}, not {value}")
    return value


def _checked_layers(name: str, value: Any) -> tuple[LayerSpec, ...]:
    """Layers given as LayerSpecs or [channels, kernel, stride] triples, within the file format's limits."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_LAYERS:
        raise ConfigError(f"{name} must be a list of 1 to {MAX_LAYERS} [channels, kernel, stride] layers")
    layers = []
    for i, layer in enumerate(value):
        triple = dataclasses.astuple(layer) if isinstance(layer, LayerSpec) else layer
        if not isinstance(triple, (list, tuple)) or len(triple) != 3:
            raise ConfigError(f"{name}[{i}] must be [channels, kernel, stride], not {layer!r}")
        numbers = [
            _checked_number(f"{name}[{i}] {what}", number, OptionInfo("", minimum=1, maximum=high), int)
            for what, number, high in zip(
                ("channels", "kernel", "stride"), triple, (MAX_LAYER_CHANNELS, MAX_KERNEL, MAX_STRIDE)
            )
        ]
        layers.append(LayerSpec(*numbers))
    return tuple(layers)


@dataclass(frozen=True)
class EncoderOptions:
    """The encoder settings a user chooses; the preset supplies everything else.

    ``None`` means "the preset's value". Every value is checked on construction, and an error
    names the setting (``quality must be ...``), not a command-line flag.
    """

    preset: Preset = Preset.DEFAULT
    quality: int | None = _option(
        f"rate-distortion level 1 (smallest) to {MAX_QUALITY} (best)",
        short="-q",
        minimum=1,
        maximum=MAX_QUALITY,
        presets=(Preset.FAST, Preset.DEFAULT),
    )
    steps: int | None = _option("training steps (the effort; with a seed, the same file)", minimum=1)
    seconds: float | None = _option(
        "a time budget in seconds on top of the steps (training stops at whichever ends first; "
        "the file then depends on the machine's speed and load)",
        positive=True,
    )
    seed: int | None = _option("random seed (same seed, same file)", minimum=0, maximum=2**32 - 1)
    target_bpp: float | None = _option(
        "land the whole file within ±3% of this many bits per pixel (steers the quality while it trains)",
        minimum=0.001,
        maximum=24.0,
        presets=(Preset.FAST, Preset.DEFAULT),
    )
    max_bytes: int | None = _option(
        "a file of at most this many bytes, and at least 95% of it (k and M suffixes on the command line)",
        minimum=64,
        presets=(Preset.FAST, Preset.DEFAULT),
    )
    target_psnr: float | None = _option(
        "reach at least this PSNR in dB with as small a file as the preset makes",
        minimum=10.0,
        maximum=60.0,
        presets=(Preset.FAST, Preset.DEFAULT),
    )
    ratio: int | None = _option(
        "the poster's compression ratio λ (the stride)", minimum=1, maximum=32, presets=(Preset.PAPER,)
    )
    kernel: int | None = _option("the poster's filter size k", minimum=1, maximum=64, presets=(Preset.PAPER,))
    slope: float | None = _option("Leaky ReLU slope ε", minimum=0.0, maximum=0.5)

    # --- Presets from files: the training and network a settings file may also set ---------
    #: Overrides of the preset's training and network (:class:`TrainingOverrides`); the API
    #: takes a dict of them too. Not a flag each: they come from ``--config FILE.toml``.
    training: TrainingOverrides = field(default_factory=TrainingOverrides)
    # --- end of presets from files ----------------------------------------------------------

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "preset", Preset(self.preset))
        except ValueError:
            raise ConfigError(
                f"unknown preset {self.preset!r} (choose from {', '.join(p.value for p in Preset)})"
            ) from None
        for name, info in option_infos().items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked(name, value, info, self.preset))
        targets = [name for name in TARGET_OPTIONS if getattr(self, name) is not None]
        if len(targets) > 1:
            raise ConfigError(f"give one target, not {' and '.join(targets)}")
        self._check_training()

    @property
    def rate_target(self) -> RateTarget | None:
        """The target these options ask for, if any."""
        for name, kind in TARGET_OPTIONS.items():
            value = getattr(self, name)
            if value is not None:
                return RateTarget(kind, float(value))
        return None

    @classmethod
    def create(cls, preset: Preset | str = Preset.DEFAULT, **settings: Any) -> EncoderOptions:
        """Options from keyword arguments, refusing names that are not settings."""
        unknown = sorted(set(settings) - set(option_infos()) - {"training"})
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} (settings: {', '.join(option_infos())})")
        return cls(preset, **settings)

    def chosen(self) -> dict[str, Any]:
        """The settings given (not None), by name."""
        return {name: getattr(self, name) for name in option_infos() if getattr(self, name) is not None}

    def describe(self) -> str:
        """``preset=fast, steps=30, seed=1``: for reports and progress lines."""
        return ", ".join(
            [f"preset={self.preset.value}"]
            + [
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in {**self.chosen(), **_described(self.training.chosen())}.items()
            ]
        )

    def resolve(
        self, channels: int = 3, pixels: int | None = None, block_psnr: float | None = None
    ) -> CodecConfig:
        """The complete :class:`CodecConfig` for an image of ``channels`` channels.

        ``pixels`` (height x width) and ``block_psnr`` (:func:`ccnn.metrics.block_mean_psnr`),
        when known, let the rate-distortion presets pick a network that suits the image's size
        and detail (see :func:`rd_network`) and size their whole-image phase (see
        :func:`effort_steps`).
        """
        if channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, not {channels}")
        base = self.training.apply(PRESETS[self.preset])
        if self.preset is Preset.PAPER:
            config = _paper(
                ratio=self.ratio or base.encoder[0].stride,
                kernel=self.kernel or base.encoder[0].kernel,
                slope=base.slope,
                channels=channels,
            )
            config = self.training.apply(config)
        else:
            target = self.rate_target
            if self.quality is not None:
                level = self.quality
            elif target is not None:
                level = starting_quality(
                    target, pixels or NETWORK_REFERENCE_PIXELS, block_psnr, self.preset.value
                )
            else:
                level = base.quality
            encoder, decoder = rd_network(level, channels, pixels, self.preset, block_psnr)
            crop_steps, refine_steps = effort_steps(base, pixels)
            config = dataclasses.replace(
                base,
                encoder=encoder,
                decoder=decoder,
                steps=crop_steps + refine_steps,
                refine_share=refine_steps / (crop_steps + refine_steps),
            )
        updates = {
            name: getattr(self, name)
            for name in ("quality", "steps", "seconds", "seed", "slope")
            if getattr(self, name) is not None
        }
        if self.rate_target is not None:
            updates.update(quality=level, rate_target=self.rate_target)
        forced = self.training.layers(channels)
        if forced is not None:
            updates.update(encoder=forced[0], decoder=forced[1])
        return dataclasses.replace(config, **updates)

    def fingerprint(self, channels: int = 3) -> str:
        """A short hash of the resolved settings: equal when they would encode alike.

        Taken over the whole resolved configuration, so that ``quality=4`` and the preset's
        default quality 4 count as the same, and a preset whose definition changed does not
        pass for the old one.
        """
        fields = dataclasses.asdict(self.resolve(channels))
        fields.pop("description", None)
        if self.training.forces_network():  # else the network depends on the image, unlike here
            fields["forced_network"] = True
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    # --- Presets from files ---------------------------------------------------------------

    def _check_training(self) -> None:
        """Take ``training`` as a dict too, and refuse a network set twice for the paper preset."""
        if isinstance(self.training, dict):
            unknown = sorted(set(self.training) - set(training_infos()))
            if unknown:
                raise ConfigError(
                    f"unknown training setting {unknown[0]!r} (settings: {', '.join(training_infos())})"
                )
            object.__setattr__(self, "training", TrainingOverrides(**self.training))
        elif not isinstance(self.training, TrainingOverrides):
            raise ConfigError(f"training must be a TrainingOverrides or a dict, not {self.training!r}")
        if self.training.forces_network() and (self.ratio is not None or self.kernel is not None):
            raise ConfigError(
                "ratio and kernel shape the paper preset's own network: not with network or layers"
            )

    @classmethod
    def spelled_out(cls, preset: Preset | str) -> EncoderOptions:
        """``preset`` with every setting written out at the preset's value: a file to edit.

        It resolves to the same configuration as the bare preset for any image. Left unset are
        ``steps`` and ``seconds`` (the effort is ``training.reference_steps``, scaled to the
        image's size; an exact ``steps`` would not scale) and the network (the preset chooses
        it by quality and image).
        """
        preset = Preset(preset)
        base = PRESETS[preset]
        settings: dict[str, Any] = {"seed": base.seed, "slope": base.slope}
        if preset is Preset.PAPER:
            settings.update(ratio=base.encoder[0].stride, kernel=base.encoder[0].kernel)
        else:
            settings["quality"] = base.quality
        return cls(preset, training=TrainingOverrides.of(base), **settings)

    @classmethod
    def from_toml(cls, text: str | os.PathLike[str], source: str = "<string>") -> EncoderOptions:
        """Options from the text of a settings file (see :meth:`to_toml`); ``source`` names it in errors.

        A ``pathlib.Path`` (not a ``str``, which is always text) is read as
        :meth:`from_toml_file` reads it.

        Top-level keys are ``preset`` and the user options, the ``[training]`` table holds
        :class:`TrainingOverrides`. An unknown key or table, or a bad value, is a
        :class:`ccnn.errors.ConfigFileError` naming the key and ``source``.
        """
        if isinstance(text, os.PathLike):
            return cls.from_toml_file(text)
        return _options_from_document(cls, tomlfile.parse(text, source), source)

    @classmethod
    def from_toml_file(cls, path: str | os.PathLike[str]) -> EncoderOptions:
        """Options from the settings file at ``path`` (``ccnn compress --config``)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigFileError(f"{path}: cannot read the settings file ({reason})") from None
        return cls.from_toml(text, str(path))

    def to_toml(self) -> str:
        """These options as a settings file: every setting, unset ones as comments.

        ``from_toml(to_toml())`` gives these options back exactly (floats are written in their
        shortest exact form), and ``to_toml(from_toml(text))`` gives ``text`` back for any text
        written here, so a tuner's files can be compared and diffed.
        """
        top: list[tuple[str, Any, str]] = [("preset", self.preset.value, f"one of {', '.join(Preset)}")]
        for name, info in option_infos().items():
            if self.preset in info.presets:
                top.append((name, getattr(self, name), info.help))
        training = [
            (name, _toml_value(getattr(self.training, name)), info.help)
            for name, info in training_infos().items()
        ]
        header = (
            "ccnn encoder settings: ccnn compress IMAGE --config THIS.toml (flags override them).",
            "A setting commented out takes the preset's value.",
        )
        return tomlfile.write(header, [(None, top), ("training", training)])


def option_infos() -> dict[str, OptionInfo]:
    """Every user-settable encoder option (all fields but ``preset``) and how it is set."""
    return {
        f.name: f.metadata["option"] for f in dataclasses.fields(EncoderOptions) if "option" in f.metadata
    }


#: The options that set a :class:`RateTarget`, and the kind each sets.
TARGET_OPTIONS: dict[str, RateTargetKind] = {"target_bpp": "bpp", "max_bytes": "bytes", "target_psnr": "psnr"}


def starting_quality(target: RateTarget, pixels: int, detail: float | None, preset: str) -> int:
    """The quality level whose predicted result (:data:`RATE_MODELS`) for an image of ``pixels``
    and ``detail`` under ``preset`` is nearest ``target``: rate control starts there and steers
    the rest."""
    model = RATE_MODELS[preset]
    detail = TYPICAL_DETAIL if detail is None else detail
    if target.kind == "psnr":
        psnrs = [c + d * detail for _, _, c, d in model]
        return 1 + int(np.argmin([abs(p - target.value) for p in psnrs]))
    bpp = target.value if target.kind == "bpp" else 8.0 * target.value / max(pixels, 1)
    predicted = [a + b * detail for a, b, _, _ in model]
    return 1 + int(np.argmin([abs(p - math.log(max(bpp, 1e-6))) for p in predicted]))


def option_type(name: str) -> type:
    """``int`` or ``float``: the type of option ``name``'s values, read off its annotation."""
    return int if get_type_hints(EncoderOptions)[name] == int | None else float


def _checked(name: str, value: Any, info: OptionInfo, preset: Preset) -> Any:
    """``value`` as the option's type, or a ConfigError naming the setting."""
    kind = option_type(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    value = kind(value)
    if preset not in info.presets:
        names = " or ".join(p.value for p in info.presets)
        raise ConfigError(f"{name} applies to the {names} preset only, not to {preset.value}")
    if info.positive and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, not {value}")
    low, high = info.minimum, info.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {kind(low)} and {kind(high)}" if high is not None else f"at least {kind(low)}"
        raise ConfigError(f"{name} must be {bounds}, not {value}")
    return value


# --- Training schedule ---------------------------------------------------------------------------
#
# How the encoder trains is data: a tuple of :class:`TrainingPhase`, run in order by
# ``ccnn.encoder.train.Trainer``, as Cool-chic's ``TrainerPhase`` presets are. The phases are
# derived from a :class:`CodecConfig` by :func:`training_phases`, so the presets and command-line
# overrides above stay the one place where a schedule is chosen.

#: Whole-image evaluations (best-state tracking, divergence checks, progress PSNR) come every
#: this many steps of a crop and of a whole-image phase: counted in steps, not seconds, so that
#: a seeded run whose step budget binds gives the same file however busy the machine is.
#: Why these values: docs/decisions.md, "Evaluation every 250 crop and 40 refine steps".
CROP_EVAL_INTERVAL = 250
REFINE_EVAL_INTERVAL = 40
#: With a rate target, the whole-image phase is evaluated (and its price of a dB steered) this
#: often instead: more corrections, each smaller (``ccnn.encoder.rate.GAIN``).
RATE_CONTROL_INTERVAL = 20

#: What a training phase trains on, what learns, its rounding stand-in and its loss.
PhaseData = Literal["crops", "image"]
PhaseLearns = Literal["networks", "latent"]
PhaseQuantizer = Literal["noise", "soft_round"]
PhaseLoss = Literal["squared_error", "preset"]


@dataclass(frozen=True)
class TrainingPhase:
    """One phase of the per-image training: what it trains on, what learns, and how.

    ``data``: ``"crops"`` (random ``crop_size`` squares, ``crops_per_step`` per step, cheap
    steps; the whole image when it is no larger than one crop) or ``"image"`` (the whole image).
    ``learns``: ``"networks"`` (compressing and restoring networks and entropy model, all at
    ``learning_rate``) or ``"latent"`` (the whole image's latent as a free tensor at
    ``latent_learning_rate``, with the restoring network and the entropy model at
    ``learning_rate``; the latent is taken from the compressing network when the first such
    phase starts, and the best state is tracked afresh from there). ``share``: the phase's part of
    the steps, ``time_share`` its part of a time budget when there is one (``None``: ``share``).
    A run's shares add up to 1, and each phase ends where the running sum of shares does, so
    steps or time a phase leaves unused go to the next. ``quantizer``: the
    rounding stand-in of the latent, ``"noise"`` (additive uniform noise) or ``"soft_round"``
    (soft rounding with noise at a temperature falling linearly from ``temperature[0]`` to
    ``temperature[1]`` before the hard part), followed by straight-through hard rounding over the
    last ``hard_share`` of the phase, so that what is optimised at the end is what is coded (the
    poster's byte latent is always a saturating cast). ``loss``: ``"squared_error"`` (bpp + λ ·
    255² · MSE) or ``"preset"`` (the config's ``distortion``). ``eval_interval``: steps between
    whole-image evaluations.
    """

    name: str
    data: PhaseData
    learns: PhaseLearns
    share: float
    learning_rate: float
    time_share: float | None = None
    latent_learning_rate: float = 0.0
    quantizer: PhaseQuantizer = "noise"
    temperature: tuple[float, float] | None = None
    hard_share: float = 0.0
    loss: PhaseLoss = "squared_error"
    eval_interval: int = CROP_EVAL_INTERVAL
    crop_size: int = 32
    crops_per_step: int = 16

    #: (title, width) of the columns of :meth:`describe`, for :func:`describe_phases`.
    COLUMNS = (
        ("phase", 8),
        ("data", 14),
        ("learns", 8),
        ("share", 5),
        ("time", 4),
        ("lr", 7),
        ("latent lr", 9),
        ("quantizer", 15),
        ("hard", 4),
        ("loss", 14),
        ("eval", 4),
    )

    def __post_init__(self) -> None:
        """Refuse a phase the trainer could not run, here rather than mid-training."""
        for value, allowed, what in (
            (self.data, get_args(PhaseData), "data"),
            (self.learns, get_args(PhaseLearns), "learns"),
            (self.quantizer, get_args(PhaseQuantizer), "quantizer"),
            (self.loss, get_args(PhaseLoss), "loss"),
        ):
            if value not in allowed:
                raise ConfigError(f"phase {self.name!r}: {what} must be one of {allowed}, not {value!r}")
        if not 0.0 < self.share <= 1.0 or not 0.0 <= self.hard_share <= 1.0:
            raise ConfigError(f"phase {self.name!r}: share must be in (0, 1] and hard_share in [0, 1]")
        if self.time_share is not None and not 0.0 < self.time_share <= 1.0:
            raise ConfigError(f"phase {self.name!r}: time_share must be in (0, 1]")
        if (self.quantizer == "soft_round") != (self.temperature is not None):
            raise ConfigError(f"phase {self.name!r}: soft_round needs a temperature, and only it")
        if self.learns == "latent" and (self.data != "image" or self.latent_learning_rate <= 0.0):
            raise ConfigError(f"phase {self.name!r}: a free latent learns on the image, at a positive rate")
        if self.eval_interval < 1 or self.crop_size < 1 or self.crops_per_step < 1:
            raise ConfigError(f"phase {self.name!r}: eval_interval and crop sizes must be positive")

    def describe(self) -> str:
        """The phase as one row of :func:`describe_phases`'s table (Cool-chic prints its presets so)."""
        data = f"{self.crop_size}² crops x{self.crops_per_step}" if self.data == "crops" else "whole image"
        quantizer = "noise"
        if self.hard_share >= 1.0:
            quantizer = "hard"
        elif self.temperature is not None:
            quantizer = f"soft {self.temperature[0]:g}->{self.temperature[1]:g}"
        latent_lr = f"{self.latent_learning_rate:.1e}" if self.learns == "latent" else "-"
        loss = "bpp+λ·255²·MSE" if self.loss == "squared_error" else "preset"
        cells = (
            self.name,
            data,
            self.learns,
            f"{self.share:.2f}",
            f"{self.share if self.time_share is None else self.time_share:.2f}",
            f"{self.learning_rate:.1e}",
            latent_lr,
            quantizer,
            f"{self.hard_share:.0%}",
            loss,
            str(self.eval_interval),
        )
        return _table_row(cells)


def _table_row(cells: tuple[str, ...]) -> str:
    widths = (width for _, width in TrainingPhase.COLUMNS)
    return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"


def describe_phases(phases: tuple[TrainingPhase, ...]) -> str:
    """A Markdown table of ``phases``, one row each: what ``ccnn`` shows of a training schedule."""
    header = _table_row(tuple(title for title, _ in TrainingPhase.COLUMNS))
    rule = "|" + "|".join("-" * (width + 2) for _, width in TrainingPhase.COLUMNS) + "|"
    return "\n".join([header, rule, *(phase.describe() for phase in phases)])


def training_phases(config: CodecConfig) -> tuple[TrainingPhase, ...]:
    """The training schedule ``config`` asks for, as the trainer runs it.

    A rate-distortion preset (``refine_share`` > 0, integer latent) gets two phases: the
    networks on crops under the squared-error loss and plain noise (on crops the noisy latent's
    error is several dB worse than the coded image's, see :data:`QUALITY_LAMBDAS`), then the
    free latent on the whole image under the preset's own loss, through soft rounding when
    ``soft_rounding`` is set, ending in ``hard_rounding_fraction`` of hard rounding. Otherwise
    (``paper``) the crop phase is the whole run and ends in the hard rounding itself; the
    poster's byte latent cannot be a free integer tensor.
    """
    refine = config.refine_share > 0.0 and config.latent_mode is LatentMode.INTEGER
    crops = TrainingPhase(
        name="crops",
        data="crops",
        learns="networks",
        share=1.0 - config.refine_share if refine else 1.0,
        time_share=1.0 - config.refine_time_share if refine else 1.0,
        learning_rate=config.learning_rate,
        hard_share=0.0 if refine else config.hard_rounding_fraction,
        loss="squared_error",
        eval_interval=CROP_EVAL_INTERVAL,
        crop_size=config.crop_size,
        crops_per_step=config.crops_per_step,
    )
    if not refine:
        return (crops,)
    whole_image = TrainingPhase(
        name="refine",
        data="image",
        learns="latent",
        share=config.refine_share,
        time_share=config.refine_time_share,
        learning_rate=config.refine_learning_rate,
        latent_learning_rate=config.refine_latent_lr,
        quantizer="noise" if config.soft_rounding is None else "soft_round",
        temperature=config.soft_rounding,
        hard_share=config.hard_rounding_fraction,
        loss="preset",
        eval_interval=REFINE_EVAL_INTERVAL if config.rate_target is None else RATE_CONTROL_INTERVAL,
        crop_size=config.crop_size,
        crops_per_step=config.crops_per_step,
    )
    return (crops, whole_image)


# --- Presets from files: the mapping between settings files and EncoderOptions -------------------


def _described(training: dict[str, Any]) -> dict[str, Any]:
    """Training overrides as short values for :meth:`EncoderOptions.describe`."""
    return {
        name: "/".join(f"{s.channels}x{s.kernel}s{s.stride}" for s in value)
        if name.endswith("_layers")
        else ",".join(f"{t:g}" for t in value) or "off"
        if name == "soft_rounding"
        else value
        for name, value in training.items()
    }


def _toml_value(value: Any) -> Any:
    """A training override as TOML writes it: layers as [channels, kernel, stride] triples."""
    if isinstance(value, tuple) and value and isinstance(value[0], LayerSpec):
        return [list(dataclasses.astuple(layer)) for layer in value]
    return value


def _options_from_document(
    cls: type[EncoderOptions], document: dict[str, Any], source: str
) -> EncoderOptions:
    """:class:`EncoderOptions` from a parsed settings file, every error naming ``source``."""
    top = {key: value for key, value in document.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in document.items() if isinstance(value, dict)}
    unknown_tables = sorted(set(tables) - {"training"})
    if unknown_tables:
        raise ConfigFileError(f"{source}: unknown table [{unknown_tables[0]}] (tables: [training])")
    known = {"preset", *option_infos()}
    unknown = sorted(set(top) - known)
    if unknown:
        raise ConfigFileError(
            f"{source}: unknown setting {unknown[0]!r} (settings: {', '.join(sorted(known))}, and [training])"
        )
    training = tables.get("training", {})
    unknown = sorted(set(training) - set(training_infos()))
    if unknown:
        raise ConfigFileError(
            f"{source}: unknown setting {unknown[0]!r} in [training] "
            f"(settings: {', '.join(training_infos())})"
        )
    preset = top.pop("preset", Preset.DEFAULT.value)
    try:
        return cls(preset, training=TrainingOverrides(**training), **top)
    except ConfigFileError:
        raise
    except ConfigError as exc:
        raise ConfigFileError(f"{source}: {exc}") from None


# --- Video ---------------------------------------------------------------------------------------
#
# A clip is coded by one restoring network and two entropy models shared by its frames, each
# frame's latent coded either alone (intra) or as its difference from the previous frame's
# (docs/decisions.md, "Video: latent deltas under one shared network"). The image presets above
# are not used for clips; these are.

#: Bits per frame pixel one dB of PSNR-YUV is worth, per quality level (1 smallest .. 9 best).
#: A clip's rates are a tenth of an image's (most of each frame is predicted), so a dB must cost
#: less than :data:`QUALITY_SLOPES` says for images, or every clip would stop at the lowest
#: quality. Chosen by measurement on carphone: docs/results/video.md.
VIDEO_QUALITY_SLOPES: tuple[float, ...] = (0.0015, 0.0025, 0.004, 0.006, 0.009, 0.013, 0.019, 0.028, 0.04)
#: The weights of Y, U and V in PSNR-YUV (6:1:1) and in the training loss that targets it.
YUV_WEIGHTS: tuple[float, float, float] = (6 / 8, 1 / 8, 1 / 8)


@dataclass(frozen=True)
class VideoConfig:
    """Everything that decides what the clip encoder produces; training stops on ``steps`` only.

    ``network`` names one of :data:`RD_NETWORKS`. ``crop_share`` of the steps train the
    networks on pairs of co-located crops of consecutive frames (the first coded intra, the
    second as a latent delta); the rest optimise every frame's latent as a free tensor with the
    restoring network and both entropy models, ``frames_per_step`` consecutive frames per step
    (0: the whole clip). ``intra_period`` puts an intra frame every that many frames (0: the
    first frame only). ``prediction``: ``"latent"`` codes a predicted frame's latent as its
    difference from the previous frame's; ``"pixels"`` codes a latent whose restoration is
    added to the previous decoded frame (a residual), and then re-fits each frame's latent for
    ``closed_loop_steps`` steps on the exactly decoded previous frame, so that the quantized
    weights' errors do not pile up along the clip.
    """

    name: str
    network: str = "small"
    quality: int = 4
    steps: int = 1500
    crop_share: float = 0.4
    intra_period: int = 0
    learning_rate: float = 1e-2
    refine_learning_rate: float = 3e-3
    refine_latent_lr: float = 2e-2
    crop_size: int = 32
    crops_per_step: int = 8
    hard_rounding_fraction: float = 0.1
    soft_rounding: tuple[float, float] | None = (0.3, 0.1)
    context_levels: int = 2
    frames_per_step: int = 8
    prediction: Literal["latent", "pixels"] = "latent"
    closed_loop_steps: int = 10
    seed: int = 0
    description: str = field(default="", compare=False)

    @property
    def psnr_slope(self) -> float:
        """Bits per frame pixel one dB of PSNR-YUV is worth at this quality level."""
        return VIDEO_QUALITY_SLOPES[self.quality - 1]

    @property
    def rate_lambda(self) -> float:
        """λ of the crop phase's squared-error loss (bpp + λ·255²·MSE-YUV) at this quality level.

        As for images, the networks first learn on crops under a squared error, whose pull does
        not fade when the error is large, as minus the PSNR's does (its gradient is the slope
        over the MSE): under the PSNR alone, a clip's first steps could let the rate win, and
        the latent collapsed to constants with some seeds (docs/decisions.md, "Video: the crop
        phase under a squared error"). λ is the image level's :data:`QUALITY_LAMBDAS` times the
        clips' slope over the images' :data:`QUALITY_SLOPES`: the two losses then pull alike at
        the squared error where the image level's two losses do.
        """
        level = self.quality - 1
        return QUALITY_LAMBDAS[level] * VIDEO_QUALITY_SLOPES[level] / QUALITY_SLOPES[level]

    def codec_config(self) -> CodecConfig:
        """The image settings of the shared network: its layers, latent and context levels."""
        encoder, decoder = RD_NETWORKS[self.network]
        return CodecConfig(
            name=f"video-{self.name}",
            encoder=encoder,
            decoder=decoder,
            slope=0.1,
            quality=self.quality,
            steps=self.steps,
            learning_rate=self.learning_rate,
            crop_size=self.crop_size,
            crops_per_step=self.crops_per_step,
            hard_rounding_fraction=self.hard_rounding_fraction,
            refine_share=1.0 - self.crop_share,
            refine_learning_rate=self.refine_learning_rate,
            refine_latent_lr=self.refine_latent_lr,
            soft_rounding=self.soft_rounding,
            context_levels=self.context_levels,
            distortion=Distortion.PSNR,
            seed=self.seed,
        )

    def intra(self, index: int) -> bool:
        """Whether frame ``index`` is coded intra."""
        return index == 0 or (self.intra_period > 0 and index % self.intra_period == 0)


#: The clip presets. Why these budgets and networks: docs/decisions.md and docs/results/video.md.
VIDEO_PRESETS: dict[str, VideoConfig] = {
    "fast": VideoConfig("fast", network="small", steps=600, description="short training, small network"),
    "default": VideoConfig("default", network="medium", steps=2400, description="the clip default"),
}


def video_config(
    preset: str = "default",
    quality: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    intra_period: int | None = None,
    prediction: str | None = None,
) -> VideoConfig:
    """The :class:`VideoConfig` of ``preset`` with the given settings, range-checked."""
    if preset not in VIDEO_PRESETS:
        raise ConfigError(f"unknown clip preset {preset!r} (choose from {', '.join(VIDEO_PRESETS)})")
    updates: dict[str, Any] = {}
    if prediction is not None:
        if prediction not in ("latent", "pixels"):
            raise ConfigError(f"prediction must be latent or pixels, not {prediction!r}")
        updates["prediction"] = prediction
    for name, value, low, high in (
        ("quality", quality, 1, len(VIDEO_QUALITY_SLOPES)),
        ("steps", steps, 1, 10**7),
        ("seed", seed, 0, 2**32 - 1),
        ("intra_period", intra_period, 0, 1 << 20),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ConfigError(f"{name} must be a whole number, not {value!r}")
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
        updates[name] = int(value)
    return dataclasses.replace(VIDEO_PRESETS[preset], **updates)
