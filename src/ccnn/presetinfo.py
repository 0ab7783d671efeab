"""``ccnn presets``: the built-in presets as a reader sees them, read off their definitions.

Everything printed is derived from :data:`ccnn.settings.PRESETS`, the network tiers and the
training schedule (:func:`ccnn.settings.training_phases`), so the listing cannot drift from
what the encoder does. ``ccnn presets --toml NAME`` prints
:meth:`ccnn.settings.EncoderOptions.spelled_out` as a settings file to edit.
"""

from __future__ import annotations

import math

from .settings import (
    MAX_QUALITY,
    NETWORK_REFERENCE_PIXELS,
    PRESET_NETWORKS,
    PRESETS,
    QUALITY_SLOPES,
    Distortion,
    EncoderOptions,
    Preset,
    describe_phases,
    effort_steps,
    training_phases,
)


def _levels(first: int, last: int) -> str:
    return f"q{first}" if first == last else f"q{first}-{last}"


def network_text(preset: Preset) -> str:
    """Which network ``preset`` trains, by quality and image detail, in one line."""
    config = PRESETS[preset]
    if preset not in PRESET_NETWORKS:
        (enc,), (dec,) = config.encoder, config.decoder
        return (
            f"the poster's: conv {enc.kernel}x{enc.kernel}/{enc.stride} -> {enc.channels} channels, "
            f"tconv {dec.kernel}x{dec.kernel}/{dec.stride} (--ratio sets the stride, --kernel the size)"
        )
    tiers = PRESET_NETWORKS[preset]
    parts = []
    for i, (first, choices) in enumerate(tiers):
        last = tiers[i + 1][0] - 1 if i + 1 < len(tiers) else MAX_QUALITY
        rules = [
            name if bound == math.inf else f"{name} below {bound:g} dB block-mean PSNR"
            for bound, name in choices
        ]
        parts.append(f"{_levels(first, last)}: {', else '.join(rules)}")
    text = "; ".join(parts) if len(tiers) > 1 else f"{tiers[0][1][0][1]} at every quality"
    return text + " (smaller images: one quality level lower per halving of the pixels)"


def loss_text(preset: Preset) -> str:
    """The training loss of ``preset`` in one line."""
    config = PRESETS[preset]
    phases = training_phases(config)
    by = f"of quality {config.quality}" if preset is Preset.PAPER else "by quality"
    whole = (
        f"bpp − slope·PSNR (slope {by})"
        if config.distortion is Distortion.PSNR
        else f"bpp + λ·255²·MSE (λ {by})"
    )
    if len(phases) == 1:
        return whole
    return f"crops bpp + λ·255²·MSE, whole image {whole}"


def steps_text(preset: Preset) -> str:
    """The effort of ``preset``: its steps for a 768x512 image, split by phase."""
    config = PRESETS[preset]
    crops, image = effort_steps(config, NETWORK_REFERENCE_PIXELS)
    if not image:
        return f"{config.steps} (all on crops)"
    return (
        f"{config.steps} for a 768x512 image: {crops} on crops + {image} on the whole image "
        "(their number scaled to the image's size)"
    )


def describe_preset(preset: Preset | str) -> str:
    """One preset: description, quality, steps, network, loss and its phases as a table."""
    preset = Preset(preset)
    config = PRESETS[preset]
    quality = (
        f"1 (smallest) to {MAX_QUALITY} (best), default {config.quality}; "
        f"slopes {QUALITY_SLOPES[0]:g} to {QUALITY_SLOPES[-1]:g} bpp per dB"
        if preset is not Preset.PAPER
        else f"fixed at {config.quality} (the rate is set by --ratio)"
    )
    lines = [
        f"{preset.value}: {config.description}",
        f"  quality   {quality}",
        f"  steps     {steps_text(preset)}",
        f"  network   {network_text(preset)}",
        f"  loss      {loss_text(preset)}",
        f"  phases    (ccnn presets --toml {preset.value} writes them all as a file to edit)",
    ]
    phases = describe_phases(training_phases(EncoderOptions(preset).resolve()))
    lines += ["  " + row for row in phases.splitlines()]
    return "\n".join(lines)


def overview() -> str:
    """One row per preset: its steps, network and whole-image loss, as a Markdown table."""
    rows = [("preset", "steps (768x512)", "network", "loss"), ("-", "-", "-", "-")]
    for preset in Preset:
        config = PRESETS[preset]
        crops, image = effort_steps(config, NETWORK_REFERENCE_PIXELS)
        steps = f"{config.steps} ({crops} + {image})" if image else str(config.steps)
        tiers = PRESET_NETWORKS.get(preset)
        if tiers is None:
            network = "the poster's"
        elif len(tiers) == 1 and len(tiers[0][1]) == 1:
            network = tiers[0][1][0][1]
        else:
            network = "by quality and image"
        loss = "bpp − slope·PSNR" if config.distortion is Distortion.PSNR else "bpp + λ·255²·MSE"
        rows.append((preset.value, steps, network, loss))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "| " + " | ".join(("-" * w if cell == "-" else cell.ljust(w)) for cell, w in zip(row, widths)) + " |"
        for row in rows
    )


def describe_presets() -> str:
    """The overview table, then every built-in preset in detail, separated by blank lines."""
    return "\n\n".join([overview(), *(describe_preset(preset) for preset in Preset)])


def preset_toml(preset: Preset | str) -> str:
    """``preset`` as a complete settings file, which ``--config`` reads back into the same encoder."""
    return EncoderOptions.spelled_out(preset).to_toml()
