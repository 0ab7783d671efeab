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
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

import numpy as np

from .errors import ConfigError
from .format.spec import DecoderSpec, LatentMode, LayerSpec, TextEnum

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
    seconds: float = 60.0
    learning_rate: float = 5e-3
    crop_size: int = 32
    crops_per_step: int = 16
    hard_rounding_fraction: float = 0.1
    refine_share: float = 0.0
    refine_learning_rate: float = 3e-3
    refine_latent_lr: float = 2e-2
    soft_rounding: tuple[float, float] | None = None
    context_levels: int = 0
    distortion: Distortion = Distortion.MSE
    seed: int = 0
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
        """λ of this quality level's squared-error loss (see :data:`QUALITY_LAMBDAS`)."""
        return QUALITY_LAMBDAS[self.quality - 1]

    @property
    def psnr_slope(self) -> float:
        """Bits per pixel one dB is worth at this quality level (see :data:`QUALITY_SLOPES`)."""
        return QUALITY_SLOPES[self.quality - 1]

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
        seconds=120.0,
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
    seconds: float,
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
        seconds=seconds,
        learning_rate=1e-2,
        refine_share=0.5,
        soft_rounding=soft_rounding,
        context_levels=2,
        distortion=distortion,
        description=description,
    )


#: Where training may run (``auto``: CUDA when present); the file decodes on any CPU either way.
DEVICES = ("auto", "cpu", "cuda")


#: Where training may run (``auto``: CUDA when present); the file decodes on any CPU either way.
DEVICES = ("auto", "cpu", "cuda")


class Preset(TextEnum):
    """The named presets: ``paper`` reproduces the poster, ``fast`` and ``default`` are effort levels."""

    PAPER = "paper"
    FAST = "fast"
    DEFAULT = "default"


PRESETS: dict[Preset, CodecConfig] = {
    Preset.PAPER: _paper(),
    # docs/decisions.md, "Fast preset budget" and "Fast preset uses the PSNR loss too"
    Preset.FAST: _rd(
        "fast", 3000, 13.0, Distortion.PSNR, description="rate-distortion network, short training"
    ),
    # docs/decisions.md, "Default preset budget" and "Soft rounding in the whole-image phase"
    Preset.DEFAULT: _rd(
        "default",
        16000,
        110.0,
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
        "training time budget in seconds (the first budget reached stops)", positive=True
    )
    seed: int | None = _option("random seed (same seed, same file)", minimum=0, maximum=2**32 - 1)
    ratio: int | None = _option(
        "the poster's compression ratio λ (the stride)", minimum=1, maximum=32, presets=(Preset.PAPER,)
    )
    kernel: int | None = _option("the poster's filter size k", minimum=1, maximum=64, presets=(Preset.PAPER,))
    slope: float | None = _option("Leaky ReLU slope ε", minimum=0.0, maximum=0.5)

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

    @classmethod
    def create(cls, preset: Preset | str = Preset.DEFAULT, **settings: Any) -> EncoderOptions:
        """Options from keyword arguments, refusing names that are not settings."""
        unknown = sorted(set(settings) - set(option_infos()))
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
            + [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.chosen().items()]
        )

    def resolve(
        self, channels: int = 3, pixels: int | None = None, block_psnr: float | None = None
    ) -> CodecConfig:
        """The complete :class:`CodecConfig` for an image of ``channels`` channels.

        ``pixels`` (height x width) and ``block_psnr`` (:func:`ccnn.metrics.block_mean_psnr`),
        when known, let the rate-distortion presets pick a network that suits the image's size
        and detail (see :func:`rd_network`).
        """
        if channels not in (1, 3):
            raise ConfigError(f"images must have 1 or 3 channels, not {channels}")
        base = PRESETS[self.preset]
        if self.preset is Preset.PAPER:
            config = _paper(
                ratio=self.ratio or base.encoder[0].stride,
                kernel=self.kernel or base.encoder[0].kernel,
                slope=base.slope,
                channels=channels,
            )
        else:
            level = base.quality if self.quality is None else self.quality
            encoder, decoder = rd_network(level, channels, pixels, self.preset, block_psnr)
            config = dataclasses.replace(base, encoder=encoder, decoder=decoder)
        updates = {
            name: getattr(self, name)
            for name in ("quality", "steps", "seconds", "seed", "slope")
            if getattr(self, name) is not None
        }
        return dataclasses.replace(config, **updates)

    def fingerprint(self, channels: int = 3) -> str:
        """A short hash of the resolved settings: equal when they would encode alike.

        Taken over the whole resolved configuration, so that ``quality=4`` and the preset's
        default quality 4 count as the same, and a preset whose definition changed does not
        pass for the old one.
        """
        fields = dataclasses.asdict(self.resolve(channels))
        fields.pop("description", None)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def option_infos() -> dict[str, OptionInfo]:
    """Every user-settable encoder option (all fields but ``preset``) and how it is set."""
    return {
        f.name: f.metadata["option"] for f in dataclasses.fields(EncoderOptions) if "option" in f.metadata
    }


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
    the step and time budget (a run's shares add up to 1; each phase ends where the running sum
    of shares does, so time or steps a phase leaves unused go to the next). ``quantizer``: the
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
        learning_rate=config.refine_learning_rate,
        latent_learning_rate=config.refine_latent_lr,
        quantizer="noise" if config.soft_rounding is None else "soft_round",
        temperature=config.soft_rounding,
        hard_share=config.hard_rounding_fraction,
        loss="preset",
        eval_interval=REFINE_EVAL_INTERVAL,
        crop_size=config.crop_size,
        crops_per_step=config.crops_per_step,
    )
    return (crops, whole_image)


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
