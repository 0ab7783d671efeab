"""Rate control: steer the price of a dB while training, so that one encode lands on a target.

The anchors (cwebp ``-size``, avifenc ``--target-size``) search by re-encoding. ccnn measures
the coded latent's rate and PSNR at every whole-image evaluation anyway, so the trainer steers
the trade-off as it goes: after each evaluation of the whole-image phase,
:meth:`RateController.steer` scales the quality level's λ and slope (``quality_scale``) by how
far the whole file's estimated size (latent, weights, entropy model, header, alpha, metadata)
or its PSNR is from the target. The encoder then measures the real file, and when it missed,
one short corrective pass continues training against a target corrected by the estimate's
measured error (``ccnn.encoder.encode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..settings import RATE_TOLERANCE, RateTarget

#: How strongly one evaluation corrects the price of a dB: a share of the log error (bpp), or
#: of the PSNR error over :data:`DB_PER_LOG_SCALE` (the price's effect on PSNR, roughly: the
#: quality levels' slopes span a factor 10 over about 13 dB on Kodak, 5.5 dB per unit of log).
#: Below 1, because the latent follows a new price over some steps, and a full correction at
#: every evaluation would overshoot.
GAIN = 0.5
DB_PER_LOG_SCALE = 5.5
#: How the whole file's rate follows the price of a dB late in training (rate ∝ price^0.5):
#: what the corrective pass's first step assumes.
RATE_ELASTICITY = 0.5
#: Most one evaluation may change the price, as a factor either way.
MAX_STEP = 1.5
#: What the controller aims at inside the tolerance: a size limit is aimed 2.5% under, a PSNR
#: 0.05 dB over, so that the estimate's small errors land inside the contract.
BYTES_AIM = 0.975
PSNR_MARGIN = 0.05


#: The price of a dB stays within this factor of the starting quality level's: beyond, the
#: next level's network would serve better, and a controller that winds up further only
#: oscillates.
SCALE_BOUND = 16.0


def _bounded(scale: float) -> float:
    return min(max(scale, 1.0 / SCALE_BOUND), SCALE_BOUND)


@dataclass
class RateController:
    """Steers ``quality_scale`` towards ``target`` for an image of ``pixels``.

    ``correction`` is the ratio of the real file's rate to the trainer's estimate of it,
    learnt when the first packing missed, so that the corrective pass aims true.
    """

    target: RateTarget
    pixels: int
    correction: float = 1.0
    psnr_offset: float = 0.0

    def calibrate(self, estimated_bpp: float, estimated_psnr: float, file_bytes: int, psnr: float) -> None:
        """Learn the estimate's error from a real packing of the state that was estimated: the
        weights' quantization, chosen at the current price, moves both rate and PSNR."""
        self.correction = 8.0 * file_bytes / self.pixels / max(estimated_bpp, 1e-9)
        self.psnr_offset = psnr - estimated_psnr

    def aim_bpp(self) -> float:
        """The whole-file bpp aimed at (bpp and size targets)."""
        if self.target.kind == "bytes":
            return BYTES_AIM * 8.0 * self.target.value / self.pixels
        return self.target.value

    def steer(self, scale: float, file_bpp: float, psnr: float) -> float:
        """The new ``quality_scale`` after an evaluation that estimated the whole file at
        ``file_bpp`` and measured ``psnr``."""
        if self.target.kind == "psnr":
            error = (self.target.value + PSNR_MARGIN - psnr - self.psnr_offset) / DB_PER_LOG_SCALE
        else:
            error = math.log(self.aim_bpp() / max(self.correction * file_bpp, 1e-9))
        step = min(max(GAIN * error, -math.log(MAX_STEP)), math.log(MAX_STEP))
        return _bounded(scale * math.exp(step))

    def jump(self, scale: float, file_bytes: int, psnr: float) -> float:
        """The price of a dB to restart from when a packed file missed: the whole error at once,
        assuming the rate grows as the square root of the price (:data:`RATE_ELASTICITY`) late in
        training, when the latent moves least."""
        if self.target.kind == "psnr":
            return _bounded(scale * math.exp((self.target.value + PSNR_MARGIN - psnr) / DB_PER_LOG_SCALE))
        ratio = self.aim_bpp() / max(8.0 * file_bytes / self.pixels, 1e-9)
        return _bounded(scale * ratio ** (1.0 / RATE_ELASTICITY))

    def reached(self, file_bytes: int, psnr: float) -> bool:
        """Whether a file of ``file_bytes`` and ``psnr`` meets the target (:data:`RATE_TOLERANCE`)."""
        tolerance = RATE_TOLERANCE[self.target.kind]
        if self.target.kind == "psnr":
            return psnr >= self.target.value
        if self.target.kind == "bytes":
            return (1.0 - tolerance) * self.target.value <= file_bytes <= self.target.value
        bpp = 8.0 * file_bytes / self.pixels
        return abs(bpp / self.target.value - 1.0) <= tolerance

    def size_side(self, file_bytes: int) -> int:
        """For a size or bpp target: -1 when a file of ``file_bytes`` is too small for it, 1 when
        too large, 0 when it reaches it (:data:`RATE_TOLERANCE`)."""
        tolerance = RATE_TOLERANCE[self.target.kind]
        if self.target.kind == "bytes":
            low, high = (1.0 - tolerance) * self.target.value, float(self.target.value)
        else:
            aim = self.target.value * self.pixels / 8.0  # the target in bytes
            low, high = (1.0 - tolerance) * aim, (1.0 + tolerance) * aim
        return -1 if file_bytes < low else 1 if file_bytes > high else 0

    def choose(self, candidates: list[tuple[int, float]]) -> int:
        """Which of the files packed during the encode, as (bytes, PSNR), to keep.

        Every packing is a real file (the calibrations' and the final ones), so the one kept
        is the best that meets the target: the highest PSNR among those that reach it (for a
        PSNR target, the smallest file); when none does, the nearest, and a size limit is never
        exceeded when any file keeps to it. A file that another beats on both counts (no larger,
        and a higher PSNR) is not the nearest: an early calibration's packing of a latent still
        soft-rounded can be the largest file and the worst, and was kept for a 1 bpp target on
        the 256x192 sample (0.78 bpp at 24.6 dB).
        """
        indices = range(len(candidates))
        reached = [i for i in indices if self.reached(*candidates[i])]
        if reached and self.target.kind == "psnr":
            return min(reached, key=lambda i: candidates[i][0])
        if reached:
            return max(reached, key=lambda i: candidates[i][1])
        if self.target.kind == "psnr":
            return max(indices, key=lambda i: candidates[i][1])
        indices = [
            i
            for i in indices
            if not any(
                candidates[j][0] <= candidates[i][0] and candidates[j][1] > candidates[i][1] for j in indices
            )
        ]
        if self.target.kind == "bytes":
            within = [i for i in indices if candidates[i][0] <= self.target.value]
            if within:
                return max(within, key=lambda i: candidates[i][0])
            return min(indices, key=lambda i: candidates[i][0])
        aim = self.target.value * self.pixels / 8.0  # the target in bytes
        return min(indices, key=lambda i: abs(math.log(candidates[i][0] / aim)))

    def outcome(self, file_bytes: int, psnr: float) -> str:
        """What the encode reached, against the target, for the user."""
        bpp = 8.0 * file_bytes / self.pixels
        reached = "reached" if self.reached(file_bytes, psnr) else "missed"
        return f"{reached} {self.target.describe()}: {file_bytes} bytes, {bpp:.4f} bpp, PSNR {psnr:.2f} dB"
