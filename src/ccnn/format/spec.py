"""What a .ccnn file describes: the restoring network's shape, its latent and its limits.

These types are shared by the decoder (which reads them from the header) and the encoder
(which derives them from its settings); nothing here needs torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

#: Largest image ccnn reads, writes or decodes, in pixels (64 megapixels), and largest side.
MAX_PIXELS = 1 << 26
MAX_SIDE = 1 << 15


class TextEnum(str, enum.Enum):
    """An enum whose members are their text: ``str()`` and f-strings give the value, not the name."""

    def __str__(self) -> str:
        return self.value


class LatentMode(TextEnum):
    """How the latent is quantized and coded; the value is what the CLI and ``info`` show.

    ``BYTE``: the poster's saturating cast of the compressing layer's output to 0..255 (pixel
    units, one step is 1/255). ``INTEGER``: a rate-distortion trained latent rounded to
    integers (one step is 1) and coded with a learned entropy model.
    """

    BYTE = "uint8"
    INTEGER = "integer"

    @property
    def step(self) -> float:
        """The value of one latent step in the restoring network's input units."""
        return 1.0 / 255.0 if self is LatentMode.BYTE else 1.0


@dataclass(frozen=True)
class LayerSpec:
    """One (transposed) convolution: output channels, square kernel size and stride."""

    channels: int
    kernel: int
    stride: int

    @property
    def padding(self) -> tuple[int, int]:
        """Zero padding (before, after) that makes a stride-s layer map n*s samples to n exactly."""
        total = max(self.kernel - self.stride, 0)
        return total // 2, total - total // 2


@dataclass(frozen=True)
class DecoderSpec:
    """What the decoder must know about the restoring network, as stored in the file header."""

    layers: tuple[LayerSpec, ...]
    latent_channels: int
    latent_stride: int
    slope: float
    latent_mode: LatentMode
    output_activation: bool
    latent_context: bool = False

    def parameter_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of (weight, bias) per layer, in file order."""
        shapes: list[tuple[int, ...]] = []
        in_ch = self.latent_channels
        for spec in self.layers:
            shapes.append((in_ch, spec.channels, spec.kernel, spec.kernel))
            shapes.append((spec.channels,))
            in_ch = spec.channels
        return shapes

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.parameter_shapes())


@dataclass(frozen=True)
class QuantizedTensor:
    """An integer tensor and the power-of-two step it is counted in: value = ints * 2**-exponent."""

    ints: np.ndarray
    exponent: int

    def values(self) -> np.ndarray:
        return self.ints.astype(np.float64) * (2.0**-self.exponent)


#: The kinds of metadata a file can carry, in the order of their sections (docs/format.md).
METADATA_KINDS = ("icc", "exif", "xmp")


@dataclass(frozen=True)
class Metadata:
    """Metadata that travels with the pixels, as bytes: a camera's or an editor's, not ccnn's.

    ``icc`` is an ICC colour profile, ``exif`` the EXIF as a TIFF structure (starting ``II*\\0``
    or ``MM\\0*``, without JPEG's ``Exif\\0\\0`` prefix: every container wraps it its own way),
    ``xmp`` an XMP packet. ccnn does not interpret them (the pixels are coded as they are, not
    converted to sRGB), so a decoded image needs them to look as the original did.
    """

    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None

    def present(self) -> dict[str, bytes]:
        """The kinds that are here, in section order, with their bytes (empty ones are absent)."""
        return {kind: value for kind in METADATA_KINDS if (value := getattr(self, kind))}

    def only(self, kinds: frozenset[str] | set[str]) -> Metadata:
        """The same metadata with only ``kinds`` kept."""
        return Metadata(**{kind: value for kind, value in self.present().items() if kind in kinds})
