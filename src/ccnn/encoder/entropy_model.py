"""The latent's learnable entropy model: the rate term of training, and the parameters stored.

It computes, differentiably, the bits the coder of :mod:`ccnn.format.entropy` would spend on
a (noisy or rounded) latent, with the same per-channel Laplace and the same coarse-to-fine
spatial context; at the end it hands over its parameters rounded as the file stores them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..format.entropy import (
    CONTEXT_OFFSET,
    CONTEXT_PARAMETERS,
    DIAGONAL,
    MAX_SCALE,
    MIN_SCALE,
    PATTERN_PARAMETERS,
    ContextPhase,
    GroupModel,
    context_from_ints,
    context_phases,
    context_to_ints,
)

_LOG2 = float(np.log(2.0))


def _phase_mask(phase: ContextPhase, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Float mask (1, 1, h, w) of the phase's positions."""
    mask = torch.zeros(1, 1, height, width, device=device)
    mask[0, 0, torch.from_numpy(phase.rows), torch.from_numpy(phase.cols)] = 1.0
    return mask


def _neighbour_total(x: torch.Tensor, pattern: tuple[tuple[int, int], ...], distance: int) -> torch.Tensor:
    """Sum of each position's neighbours at ``distance`` in ``pattern``, zero outside the plane.

    Four shifted slices of one padded tensor, faster than a dilated depthwise convolution
    (docs/decisions.md, "Entropy model speed").
    """
    height, width = x.shape[-2:]
    padded = F.pad(x, (distance, distance, distance, distance))
    total = torch.zeros_like(x)
    for dy, dx in pattern:
        top, left = distance + dy * distance, distance + dx * distance
        total = total + padded[..., top : top + height, left : left + width]
    return total


@dataclass(frozen=True)
class _PhaseMaps:
    """One context phase as training sees it: masks over the whole latent plane."""

    level: int
    pattern_index: int  # 0 diagonal, 1 direct: which (w, a, b) of the level
    distance: int
    pattern: tuple[tuple[int, int], ...]
    known: torch.Tensor
    target: torch.Tensor
    inverse_count: torch.Tensor


class LatentEntropyModel(nn.Module):
    """The latent's learnable entropy model, for training the rate and for the file.

    A Laplace (location, log-scale) per channel; with ``context_levels`` K >= 1 only the grid
    of spacing 2**K uses it, and every other position gets a Laplace predicted from
    already-coded neighbours (see the module docstring).
    """

    def __init__(self, channels: int, initial_scale: float = 1.0, context_levels: int = 0) -> None:
        super().__init__()
        self.location = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.full((channels,), float(np.log(initial_scale))))
        self.context_levels = context_levels
        # (level, channel, pattern, [w, a, b, g]); starts as "no context": scale 2**a = initial
        start = torch.zeros(context_levels, channels, 2, PATTERN_PARAMETERS)
        start[..., 1] = float(np.log2(initial_scale))
        self.context_weights = nn.Parameter(start) if context_levels else None
        self._maps: dict[tuple[int, int, str], tuple[torch.Tensor, list[_PhaseMaps]]] = {}

    def bits(self, latent: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Total bits of a (noisy or rounded) latent (N, L, h, w) under the model: differentiable.

        ``rows`` = (first, end) counts only those latent rows, read with the rows their context
        reaches beyond them: a whole-image pass in bands sums the bands' bits to the whole's.
        """
        loc = self.location.view(1, -1, 1, 1)
        scale = torch.exp(self.log_scale).clamp(MIN_SCALE, MAX_SCALE).view(1, -1, 1, 1)
        if self.context_weights is None:
            return _laplace_bits(latent if rows is None else latent[..., rows[0] : rows[1], :], loc, scale)
        channels, height = latent.shape[1], latent.shape[-2]
        grid, phases = self._phase_maps(height, latent.shape[-1], latent.device)
        first, end = (0, height) if rows is None else rows
        reach = max((phase.distance for phase in phases), default=0)
        top, bottom = max(0, first - reach), min(height, end + reach)
        latent = latent[..., top:bottom, :]
        # every position gets the location and log2(scale) of its own phase, then one Laplace
        location_map = loc * grid[..., top:bottom, :]
        log2_scale_map = (self.log_scale / _LOG2).view(1, -1, 1, 1) * grid[..., top:bottom, :]
        for phase in phases:
            masked = latent * phase.known[..., top:bottom, :]
            both = torch.cat([masked, masked.abs()], dim=1)
            inverse_count = phase.inverse_count[..., top:bottom, :]
            sums = _neighbour_total(both, phase.pattern, phase.distance) * inverse_count
            mean, mean_abs = sums[:, :channels], sums[:, channels:]
            activity = mean_abs.mean(dim=1, keepdim=True)
            params = self.context_weights[phase.level - 1]
            weight, offset, slope, shared = (
                params[:, phase.pattern_index, k].view(1, -1, 1, 1) for k in range(PATTERN_PARAMETERS)
            )
            target = phase.target[..., top:bottom, :]
            location_map = location_map + target * (weight * mean)
            log2_scale = (
                offset
                + slope * torch.log2(CONTEXT_OFFSET + mean_abs)
                + shared * torch.log2(CONTEXT_OFFSET + activity)
            )
            log2_scale_map = log2_scale_map + target * log2_scale
        scale_map = torch.exp2(log2_scale_map).clamp(MIN_SCALE, MAX_SCALE)
        own = slice(first - top, end - top)
        return _laplace_bits(latent[..., own, :], location_map[..., own, :], scale_map[..., own, :])

    def _phase_maps(
        self, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, list[_PhaseMaps]]:
        """Masks of the coarsest grid and of each context phase, cached per latent size.

        Training calls :meth:`bits` thousands of times on latents of one or two sizes, so the
        masks are built once (docs/decisions.md, "Entropy model speed").
        """
        key = (height, width, str(device))
        if key not in self._maps:
            # the coder's phases (context_phases), with C and D of a level merged: they share
            # the pattern, and neither is a neighbour of the other, so one convolution serves both
            first, *rest = context_phases(height, width, self.context_levels)
            grid = _phase_mask(first, height, width, device)
            known, phases = grid, []
            for phase in rest:
                target = _phase_mask(phase, height, width, device)
                index = 0 if phase.pattern == DIAGONAL else 1
                if phases and (phases[-1].level, phases[-1].pattern_index) == (phase.level, index):
                    phases[-1] = dataclasses.replace(phases[-1], target=phases[-1].target + target)
                else:
                    d = phase.distance
                    inverse_count = 1.0 / _neighbour_total(known, phase.pattern, d).clamp(min=1.0)
                    maps = _PhaseMaps(phase.level, index, d, phase.pattern, known, target, inverse_count)
                    phases.append(maps)
                known = known + target
            self._maps[key] = (grid, phases)
        return self._maps[key]

    def group_models(self, latent: np.ndarray) -> list[GroupModel]:
        """Stored models for an integer latent (L, h, w): learned parameters, observed ranges."""
        models = []
        for c in range(latent.shape[0]):
            channel = latent[c]
            models.append(
                GroupModel.stored(
                    float(self.location[c].detach()),
                    float(torch.exp(self.log_scale[c].detach())),
                    int(channel.min()),
                    int(channel.max()),
                )
            )
        return models

    def stored_context(self) -> np.ndarray | None:
        """The context parameters (K, L, 8) rounded as the file stores them, or None."""
        if self.context_weights is None:
            return None
        values = self.context_weights.detach().cpu().numpy().astype(np.float64)
        values = values.reshape(self.context_levels, -1, CONTEXT_PARAMETERS)
        return context_from_ints(context_to_ints(values))


def _laplace_bits(latent: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Total bits of integer (or noisy) values under discretised Laplaces, broadcast elementwise.

    The mass of [x - 1/2, x + 1/2] at distance d = |x - loc| from the location, with scale b,
    is P(d) = 1 - (exp(-(1/2 - d)/b) + exp(-(1/2 + d)/b))/2 for d <= 1/2, and beyond that
    P(d) = P(1/2) exp(-(d - 1/2)/b). So -ln P(d) = max(d - 1/2, 0)/b - ln P(min(d, 1/2)): no
    branch, no difference of two CDFs close to 1 (exact far in the tails, where such a
    difference rounds to zero in float32 and loses the gradient), and fewer operations than the
    two-CDF form (its ``where`` calls took a quarter of the pass).
    """
    inverse = 1.0 / scale
    distance = torch.abs(latent - loc)
    near = torch.clamp(distance, max=0.5)
    mass = -0.5 * (torch.expm1((near - 0.5) * inverse) + torch.expm1(-(near + 0.5) * inverse))
    nats = torch.clamp(distance - 0.5, min=0.0) * inverse - torch.log(torch.clamp(mass, min=1e-30))
    return nats.sum() / _LOG2


