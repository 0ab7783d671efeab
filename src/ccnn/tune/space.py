"""What ``ccnn tune`` searches: dimensions read off the encoder settings, and the options they make.

The settings are defined once, in :mod:`ccnn.settings`: their names, types and allowed ranges
(:class:`~ccnn.settings.OptionInfo`), and each preset's values (:data:`~ccnn.settings.PRESETS`).
A dimension here takes all three from there and adds only how far the search strays from the
preset's value (:data:`RD_SEARCH`), so that a setting added, renamed or re-ranged there moves
the search with it, and every setting is either searched or left out for a stated reason
(:data:`RD_LEFT_OUT`; a test checks that none is forgotten).

A search space turns sampled parameters into :class:`~ccnn.settings.EncoderOptions`
(:meth:`SearchSpace.options`), and knows the parameters of the preset's own settings
(:meth:`SearchSpace.defaults`): the first trial of every study, so that the search is measured
against the untuned preset on the same images at the same budget. Nothing here imports Optuna:
anything with Optuna's ``suggest_*`` methods samples a space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, get_type_hints

from ..format.container import MAX_KERNEL
from ..format.spec import LayerSpec, TextEnum
from ..settings import (
    PRESETS,
    RD_NETWORKS,
    EncoderOptions,
    OptionInfo,
    Preset,
    TrainingOverrides,
    option_infos,
    training_infos,
)


class Suggester(Protocol):
    """What samples a space: Optuna's ``Trial`` (or a stand-in with the same methods)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


Kind = Literal["float", "log", "int", "choice"]


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its name (Optuna's), its distribution and the preset's value.

    ``kind`` is ``float`` (uniform in [low, high]), ``log`` (log-uniform), ``int`` (whole
    numbers in [low, high]) or ``choice`` (one of ``choices``). ``when`` makes it conditional:
    (another dimension, the values of it for which this one is sampled).
    """

    name: str
    kind: Kind
    default: Any
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    when: tuple[str, tuple[Any, ...]] | None = None

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if self.default is not None and self.default not in self.choices:
                raise ValueError(f"{self.name}: the preset's {self.default!r} is not among {self.choices}")
        elif self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"{self.name}: the preset's {self.default} is outside [{self.low}, {self.high}]")

    def active(self, params: Mapping[str, Any]) -> bool:
        """Whether this dimension is sampled, given the parameters sampled before it."""
        return self.when is None or params.get(self.when[0]) in self.when[1]

    def sample(self, trial: Suggester) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def span(self) -> str:
        """The searched range as the report writes it."""
        if self.kind == "choice":
            return ", ".join(str(c) for c in self.choices)
        scale = " (log)" if self.kind == "log" else ""
        return f"{self.low:g} to {self.high:g}{scale}"


# --- How far the search strays from a preset's value, per setting -------------------------------


@dataclass(frozen=True)
class Log:
    """Log-uniform over the preset's value divided and multiplied by ``factor`` (rates)."""

    factor: float = 4.0


@dataclass(frozen=True)
class Span:
    """Uniform from the setting's minimum to ``factor`` times the preset's value (shares, slopes),
    at most ``cap``."""

    factor: float = 3.0
    cap: float = math.inf


@dataclass(frozen=True)
class Halves:
    """Half, the same or double the preset's value (sizes, whose cost grows with them)."""


@dataclass(frozen=True)
class Every:
    """Every value the setting allows (small integer ranges, enums, booleans)."""


Rule = Log | Span | Halves | Every

#: The settings the rate-distortion search varies (``--preset fast|default``), and how far.
#: Why these spreads: a factor of 4 either way brackets the learning rates that train at all
#: on a short budget; shares and the Leaky ReLU slope go from none to three times the preset's;
#: crop sizes and counts double or halve, which changes a step's cost. ``refine_share`` stays
#: below 0.9 because the crop phase must train the networks the whole-image phase starts from.
RD_SEARCH: dict[str, Rule] = {
    "learning_rate": Log(),
    "refine_learning_rate": Log(),
    "refine_latent_lr": Log(),
    "refine_share": Span(cap=0.9),
    "hard_rounding_fraction": Span(),
    "crop_size": Halves(),
    "crops_per_step": Halves(),
    "context_levels": Every(),
    "distortion": Every(),
    "slope": Span(),
}

#: The settings the search leaves alone, and why. Together with :data:`RD_SEARCH` and the
#: network and soft-rounding dimensions (``soft_rounding``, ``network`` and the layers) they
#: cover every field of :class:`~ccnn.settings.TrainingOverrides` and every user option.
RD_LEFT_OUT: dict[str, str] = {
    "reference_steps": "the budget (--steps): every trial trains as many steps",
    "steps": "the budget (--steps): every trial trains as many steps",
    "seconds": "a cap on top of the steps (--budget-seconds), not a setting to tune",
    "seed": "held fixed (--seed), so that trials differ by their settings only",
    "quality": "swept: the score is a BD-rate over the quality levels (--qualities)",
    "refine_time_share": "applies only when a time budget stops training",
    "latent_mode": "the poster's byte latent: ccnn tune --paper searches the poster's design",
    "latent_activation": "the poster's byte latent: ccnn tune --paper searches the poster's design",
    "output_activation": "the poster's byte latent: ccnn tune --paper searches the poster's design",
    "target_bpp": "rate control lands on a rate; the search scores whole rate-distortion curves",
    "max_bytes": "rate control lands on a rate; the search scores whole rate-distortion curves",
    "target_psnr": "rate control lands on a rate; the search scores whole rate-distortion curves",
    "ratio": "the paper preset's (ccnn tune --paper)",
    "kernel": "the paper preset's (ccnn tune --paper)",
}

#: The network: the preset's own choice by quality and image detail ("preset"), or one of
#: :data:`~ccnn.settings.RD_NETWORKS` at every quality, reshaped by the dimensions below.
PRESET_NETWORK = "preset"
NETWORK_DIMENSIONS = ("network", "latent_channels", "latent_stride", "encoder_kernel", "decoder_kernel")
SOFT_ROUNDING_DIMENSIONS = ("soft_rounding", "soft_rounding_start", "soft_rounding_end")

#: The poster's own space (``--paper``): the compression ratio λ over the poster's sweep, the
#: filter size k from the poster's 10x10 to beyond its 35x35, and the Leaky ReLU slope ε.
PAPER_RANGES: dict[str, tuple[float, float]] = {"ratio": (2, 16), "kernel": (10, 50), "slope": (0.0, 0.15)}


def _preset_values(preset: Preset) -> dict[str, Any]:
    """Every setting's value under ``preset``: training settings, then the user options."""
    config = PRESETS[preset]
    values = dict(TrainingOverrides.of(config).chosen())
    values["slope"] = config.slope
    return values


def _info(name: str) -> OptionInfo:
    return training_infos().get(name) or option_infos()[name]


def _kind(name: str) -> Any:
    """The value type of setting ``name``, from its annotation (``int``, ``float``, an enum, ...)."""
    hints = get_type_hints(TrainingOverrides) if name in training_infos() else get_type_hints(EncoderOptions)
    return next(arg for arg in get_args(hints[name]) if arg is not type(None))


def _dimension(name: str, rule: Rule, default: Any) -> Dimension:
    """The dimension of setting ``name`` under ``rule`` around the preset's ``default``."""
    info, kind = _info(name), _kind(name)
    low = -math.inf if info.minimum is None else info.minimum
    high = math.inf if info.maximum is None else info.maximum
    if isinstance(rule, Log):
        return Dimension(
            name, "log", default, max(default / rule.factor, low), min(default * rule.factor, high)
        )
    if isinstance(rule, Span):
        top = min(default * rule.factor, high, rule.cap)
        return Dimension(name, "float", default, max(low, 0.0), top)
    if isinstance(rule, Halves):
        choices = sorted({max(int(low), default // 2), default, min(int(high), default * 2)})
        return Dimension(name, "choice", default, choices=tuple(choices))
    if isinstance(kind, type) and issubclass(kind, TextEnum):
        return Dimension(name, "choice", default.value, choices=tuple(member.value for member in kind))
    if kind is bool:
        return Dimension(name, "choice", default, choices=(False, True))
    return Dimension(name, "int", default, low, high)


def _soft_rounding_dimensions(default: tuple[float, ...]) -> tuple[Dimension, ...]:
    """Soft rounding on or off, and its (start, end) temperatures around the presets' own.

    A preset without soft rounding (``fast``) searches temperatures around those of the preset
    that has it, so both searches cover the same temperatures.
    """
    reference = next(config.soft_rounding for config in PRESETS.values() if config.soft_rounding)
    start, end = default or reference
    when = ("soft_rounding", (True,))
    factor = Log().factor
    return (
        Dimension("soft_rounding", "choice", bool(default), choices=(False, True)),
        Dimension(
            "soft_rounding_start",
            "log",
            start if default else None,
            start / factor,
            start * factor,
            when=when,
        ),
        Dimension(
            "soft_rounding_end", "log", end if default else None, end / factor, end * factor, when=when
        ),
    )


def _network_dimensions() -> tuple[Dimension, ...]:
    """The network: the preset's choice, or a named one with its latent and kernels reshaped.

    Each shape dimension covers half to double the named networks' own latent channels and
    stride, and kernels two smaller or larger; the ranges are the same whichever network is
    named, as Optuna's samplers expect of one parameter.
    """
    encoders = [encoder for encoder, _ in RD_NETWORKS.values()]
    decoders = [decoder for _, decoder in RD_NETWORKS.values()]
    channels = [encoder[-1].channels for encoder in encoders]
    strides = {math.prod(layer.stride for layer in encoder) for encoder in encoders}
    named = tuple(RD_NETWORKS)

    def around(values: set[int], spread: int, top: int) -> tuple[int, ...]:
        return tuple(sorted({v + d for v in values for d in (-spread, 0, spread) if 1 <= v + d <= top}))

    when = ("network", named)
    return (
        Dimension("network", "choice", PRESET_NETWORK, choices=(PRESET_NETWORK, *named)),
        Dimension("latent_channels", "int", None, min(channels) // 2, max(channels) * 2, when=when),
        Dimension(
            "latent_stride",
            "choice",
            None,
            choices=tuple(sorted({size for s in strides for size in (s // 2, s, s * 2) if size >= 2})),
            when=when,
        ),
        Dimension(
            "encoder_kernel",
            "choice",
            None,
            choices=around({layer.kernel for e in encoders for layer in e}, 2, MAX_KERNEL),
            when=when,
        ),
        Dimension(
            "decoder_kernel",
            "choice",
            None,
            choices=around({layer.kernel for d in decoders for layer in d}, 2, MAX_KERNEL),
            when=when,
        ),
    )


def shaped_network(
    name: str, latent_channels: int, latent_stride: int, encoder_kernel: int, decoder_kernel: int
) -> tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]]:
    """(compressing, restoring) layers: network ``name`` reshaped.

    The latent gets ``latent_channels`` at ``latent_stride`` (a power of two: one stride-2
    layer each way per halving, the widest restoring layer, next to the latent, going first
    when layers are dropped and repeated when added) and every layer the given kernel. The
    last restoring layer's channels become the image's when the encoder resolves them.
    """
    encoder, decoder = RD_NETWORKS[name]
    stages = round(math.log2(latent_stride))
    if 2**stages != latent_stride or stages < 1:
        raise ValueError(f"latent_stride must be a power of two, at least 2, not {latent_stride}")

    def resized(layers: tuple[LayerSpec, ...]) -> tuple[LayerSpec, ...]:
        if stages <= len(layers):
            return layers[len(layers) - stages :]
        return (layers[0],) * (stages - len(layers)) + layers

    hidden = tuple(LayerSpec(layer.channels, encoder_kernel, 2) for layer in resized(encoder[:-1]))
    restoring = tuple(LayerSpec(layer.channels, decoder_kernel, 2) for layer in resized(decoder))
    return (*hidden, LayerSpec(latent_channels, encoder_kernel, 1)), restoring


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions searched for ``preset``, and how their values become encoder options."""

    preset: Preset
    dimensions: tuple[Dimension, ...]

    @property
    def paper(self) -> bool:
        return self.preset is Preset.PAPER

    def sample(self, trial: Suggester) -> dict[str, Any]:
        """One point of the space, drawn by ``trial``: the active dimensions' values by name."""
        params: dict[str, Any] = {}
        for dimension in self.dimensions:
            if dimension.active(params):
                params[dimension.name] = dimension.sample(trial)
        return params

    def defaults(self) -> dict[str, Any]:
        """The parameters of the preset's own settings (its first trial)."""
        params: dict[str, Any] = {}
        for dimension in self.dimensions:
            if dimension.active(params):
                params[dimension.name] = dimension.default
        return params

    def options(self, params: Mapping[str, Any], **settings: Any) -> EncoderOptions:
        """The encoder options of ``params``, with ``settings`` (``steps``, ``seed``) on top.

        Raises :class:`ccnn.errors.ConfigError` for a combination the settings refuse.
        """
        if self.paper:
            return EncoderOptions(
                self.preset,
                ratio=params["ratio"],
                kernel=params["kernel"],
                slope=params["slope"],
                **settings,
            )
        training: dict[str, Any] = {
            name: params[name] for name in RD_SEARCH if name in params and name in training_infos()
        }
        training["soft_rounding"] = (
            (params["soft_rounding_start"], params["soft_rounding_end"]) if params["soft_rounding"] else ()
        )
        network = params["network"]
        if network != PRESET_NETWORK:
            shape = {name: params[name] for name in NETWORK_DIMENSIONS[1:]}
            encoder, decoder = shaped_network(network, **shape)
            if (encoder, decoder) == RD_NETWORKS[network]:  # the named network as it is: say so
                training["network"] = network
            else:
                training.update(encoder_layers=encoder, decoder_layers=decoder)
        return EncoderOptions(self.preset, slope=params["slope"], training=training, **settings)

    def changed(self, params: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The parameters of ``params`` that differ from the preset's: name -> (value, preset's)."""
        defaults = self.defaults()
        return {
            name: (value, defaults.get(name))
            for name, value in params.items()
            if name not in defaults or defaults[name] != value
        }


def search_space(preset: Preset | str) -> SearchSpace:
    """The space ``ccnn tune`` searches for ``preset`` (``paper``: the poster's own)."""
    preset = Preset(preset)
    values = _preset_values(preset)
    if preset is Preset.PAPER:
        config = PRESETS[preset]
        paper_defaults = {"ratio": config.encoder[0].stride, "kernel": config.encoder[0].kernel}
        paper_defaults["slope"] = config.slope
        dimensions = tuple(
            Dimension(name, "float" if name == "slope" else "int", paper_defaults[name], low, high)
            for name, (low, high) in PAPER_RANGES.items()
        )
        return SearchSpace(preset, dimensions)
    searched = tuple(_dimension(name, rule, values[name]) for name, rule in RD_SEARCH.items())
    soft = _soft_rounding_dimensions(values["soft_rounding"])
    return SearchSpace(preset, (*_network_dimensions(), *searched, *soft))


def covered_settings() -> set[str]:
    """Every setting the rate-distortion space searches or leaves out for a reason."""
    return {*RD_SEARCH, *RD_LEFT_OUT, "soft_rounding", "network", "encoder_layers", "decoder_layers"}


def unaccounted_settings() -> set[str]:
    """Settings in :mod:`ccnn.settings` that the search neither varies nor explains (should be none)."""
    every = {*training_infos(), *option_infos()}
    return every - covered_settings()
