"""Classical codecs (and ccnn itself) behind one interface, for comparisons at equal file size.

Each codec encodes uint8 H x W x C pixels at a quality setting into the bytes of a real file
and decodes those bytes back, so sizes and PSNRs are those of the files a user would get.
A codec says which library and settings it uses (:meth:`Codec.settings`), which library
versions (:meth:`Codec.versions`), and whether its library is installed
(:meth:`Codec.missing`); everything that can change its output goes into :meth:`Codec.key`,
the part of the benchmark's cache key that names the codec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import PIL
from PIL import Image, features

from .. import (
    FORMAT_VERSION,
    MAX_QUALITY,
    EncodeResult,
    EncoderOptions,
    Preset,
    __version__,
    compress_image,
    decompress,
)
from ..errors import ConfigError
from ..imageio import to_pil
from ..install import pip_hint
from ..metrics import psnr

Quality = float


def _pil_encode(image: Image.Image, format: str, **options: Any) -> bytes:
    """The bytes of ``image`` saved by Pillow as ``format`` with the encoder ``options``."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("L" if image.mode == "L" else "RGB"))
    return array[:, :, None] if array.ndim == 2 else array


def _pillow_version(feature: str) -> str:
    return f"Pillow {PIL.__version__}, {feature} {features.version(feature) or '?'}"


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


@dataclass(frozen=True)
class Codec:
    """The interface of every codec of the benchmark (subclasses fill it in).

    ``qualities`` are the codec's own settings, swept in order: JPEG/WebP/HEIF/AVIF quality,
    JPEG 2000 target bpp, JPEG XL distance, ccnn ``--quality`` (or λ for ``--preset paper``).
    ``threads`` is how many threads the codec's library may use; it changes timings, not files.
    """

    name: str = "codec"
    label: str = "codec"
    qualities: tuple[Quality, ...] = ()
    threads: int = 1

    #: What the quality values are, as written in the settings ("quality", "distance", ...).
    sweep: str = "quality"

    def options(self) -> str:
        """Library and encoder settings, without the quality sweep."""
        raise NotImplementedError

    def settings(self) -> str:
        """Library, encoder settings and the quality sweep, as written in the report."""
        return f"{self.options()}, {self.sweep} {_span(self)}"

    def versions(self) -> str:
        """Versions of the libraries that make the files."""
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why this codec cannot run here (a library is not installed), or None when it can."""
        return None

    def key(self, quality: Quality) -> dict[str, Any]:
        """Everything that decides the file this codec makes at ``quality``, except the image.

        The quality range itself is left out, so adding points to a sweep keeps the others.
        """
        return {
            "codec": self.name,
            "settings": self.options(),
            "versions": self.versions(),
            "quality": float(quality),
        }

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def quality_label(self, quality: Quality) -> str:
        """How a quality setting is written in tables, e.g. ``q=50``."""
        return f"q={quality:g}"


@dataclass(frozen=True)
class JpegCodec(Codec):
    """JPEG through Pillow (libjpeg-turbo): 4:2:0 chroma subsampling, optimized Huffman tables."""

    name: str = "jpeg"
    label: str = "JPEG"
    qualities: tuple[Quality, ...] = tuple(range(2, 96))
    subsampling: str = "4:2:0"

    def options(self) -> str:
        return f"Pillow/libjpeg-turbo, {self.subsampling}, optimize=True, baseline"

    def versions(self) -> str:
        return _pillow_version("jpg")

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        return _pil_encode(
            to_pil(pixels), "JPEG", quality=int(quality), subsampling=self.subsampling, optimize=True
        )

    def decode(self, data: bytes) -> np.ndarray:
        return _pil_decode(data)


@dataclass(frozen=True)
class WebpCodec(Codec):
    """Lossy WebP through Pillow (libwebp), method 6 (slowest, best)."""

    name: str = "webp"
    label: str = "WebP"
    qualities: tuple[Quality, ...] = tuple(range(0, 101, 5))

    def options(self) -> str:
        return "Pillow/libwebp, lossy (4:2:0), method=6"

    def versions(self) -> str:
        return _pillow_version("webp")

    def missing(self) -> str | None:
        return None if features.check("webp") else "Pillow was built without WebP"

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        return _pil_encode(to_pil(pixels), "WEBP", quality=int(quality), method=6)

    def decode(self, data: bytes) -> np.ndarray:
        return _pil_decode(data)


@dataclass(frozen=True)
class Jpeg2000Codec(Codec):
    """JPEG 2000 through Pillow (OpenJPEG): 9/7 wavelet, colour transform, a rate target per point."""

    name: str = "jpeg2000"
    label: str = "JPEG 2000"
    qualities: tuple[Quality, ...] = (
        0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0,
    )  # fmt: skip

    sweep: str = "target bpp"

    def options(self) -> str:
        return (
            "Pillow/OpenJPEG, J2K codestream, irreversible=True (9/7 wavelet), mct=1 (ICT colour "
            "transform), quality_mode='rates', one layer of ratio 24/bpp"
        )

    def versions(self) -> str:
        return _pillow_version("jpg_2000")

    def missing(self) -> str | None:
        return None if features.check("jpg_2000") else "Pillow was built without OpenJPEG"

    def quality_label(self, quality: Quality) -> str:
        return f"{quality:g} bpp target"

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        return _pil_encode(
            to_pil(_rgb(pixels)),
            "JPEG2000",
            irreversible=True,
            mct=1,
            quality_mode="rates",
            quality_layers=[24.0 / float(quality)],
            no_jp2=True,
        )

    def decode(self, data: bytes) -> np.ndarray:
        return _pil_decode(data)


@dataclass(frozen=True)
class HeifCodec(Codec):
    """HEIF (HEVC intra, x265) through pillow-heif, full-resolution chroma (4:4:4)."""

    name: str = "heif"
    label: str = "HEIF"
    qualities: tuple[Quality, ...] = tuple(range(0, 91, 5))

    def options(self) -> str:
        return "pillow-heif/libheif/x265, chroma=444, 8-bit"

    def versions(self) -> str:
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif not installed"
        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info['libheif']}, {info['HEIF']}"

    def missing(self) -> str | None:
        try:
            import pillow_heif
        except ImportError:
            return f"pillow-heif is not installed ({pip_hint('bench')})"
        return None if pillow_heif.libheif_info().get("HEIF") else "libheif has no HEVC encoder"

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(to_pil(_rgb(pixels))).save(
            buffer,
            quality=int(quality),
            chroma=444,
            enc_params={"x265:pools": str(self.threads), "x265:frame-threads": "1"},
        )
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return np.asarray(heif)[:, :, :3]


@dataclass(frozen=True)
class AvifCodec(Codec):
    """AVIF (AV1 intra, libaom) through Pillow's libavif, 4:4:4."""

    name: str = "avif"
    label: str = "AVIF"
    qualities: tuple[Quality, ...] = tuple(range(0, 96, 5))
    speed: int = 6
    #: libaom's tuning; libavif's own default for aom is "ssim", which costs about 5 points of
    #: BD-rate in PSNR on Kodak. This benchmark measures PSNR, so it tunes for PSNR.
    tune: str = "psnr"

    def options(self) -> str:
        return (
            f"Pillow/libavif/libaom, subsampling=4:4:4, speed={self.speed}, tune={self.tune} "
            "(advanced codec option), 8-bit"
        )

    def versions(self) -> str:
        try:
            from PIL import _avif

            return f"{_pillow_version('avif')}, {_avif.codec_versions()}"
        except ImportError:
            return "Pillow without AVIF"

    def missing(self) -> str | None:
        try:
            from PIL import _avif
        except ImportError:
            return "Pillow was built without AVIF (Pillow 11.3+ wheels have it)"
        if not _avif.encoder_codec_available("aom"):
            return "Pillow's libavif has no libaom encoder"
        return None

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        return _pil_encode(
            to_pil(_rgb(pixels)),
            "AVIF",
            quality=int(quality),
            subsampling="4:4:4",
            speed=self.speed,
            codec="aom",
            max_threads=self.threads,
            advanced={"tune": self.tune},
        )

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = self.threads
        return _pil_decode(data)


@dataclass(frozen=True)
class JpegXlCodec(Codec):
    """JPEG XL (libjxl) through imagecodecs, VarDCT at a Butteraugli distance per point, effort 7."""

    name: str = "jpegxl"
    label: str = "JPEG XL"
    qualities: tuple[Quality, ...] = (
        25.0, 20.0, 15.0, 12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0,
        2.5, 2.0, 1.5, 1.2, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3,
    )  # fmt: skip
    effort: int = 7

    sweep: str = "distance"

    def options(self) -> str:
        return f"imagecodecs/libjxl, lossy VarDCT, effort={self.effort}, bare codestream"

    def versions(self) -> str:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs not installed"
        return f"imagecodecs {imagecodecs.__version__}, libjxl {imagecodecs.jpegxl_version()}"

    def missing(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return f"imagecodecs is not installed ({pip_hint('bench')})"
        return None if imagecodecs.JPEGXL.available else "imagecodecs was built without JPEG XL"

    def quality_label(self, quality: Quality) -> str:
        return f"d={quality:g}"

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        import imagecodecs

        array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
        return bytes(
            imagecodecs.jpegxl_encode(
                np.ascontiguousarray(array),
                distance=float(quality),
                effort=self.effort,
                numthreads=self.threads,
            )
        )

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        array = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=self.threads))
        return array[:, :, None] if array.ndim == 2 else array


def _code_fingerprint() -> str:
    """A hash of the encoder's source (settings, format, encoder, and the image measures and entry
    point that choose the network), so results of changed code are not reused."""
    digest = hashlib.sha256()
    package = resources.files("ccnn")
    names = ["settings.py", "imageio.py", "metrics.py", "__init__.py"]
    for folder in ("format", "encoder"):
        names += sorted(
            f"{folder}/{entry.name}" for entry in (package / folder).iterdir() if entry.name.endswith(".py")
        )
    for name in names:
        digest.update(name.encode())
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CcnnCodec(Codec):
    """ccnn itself through the public API: per-image training, then the whole .ccnn file.

    The quality is the ``quality`` setting (1 to ``MAX_QUALITY``), or the poster's λ (``ratio``)
    for the paper preset; ``encoder`` holds every other encoder setting. Its encode time
    includes training.
    """

    name: str = "ccnn"
    label: str = "ccnn"
    qualities: tuple[Quality, ...] = ()
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    device: str | None = None
    fingerprint: str = field(default_factory=_code_fingerprint)

    def __post_init__(self) -> None:
        if self.encoder.quality is not None or self.encoder.ratio is not None:
            raise ConfigError("a benchmark sweeps the quality: give the qualities, not a quality setting")
        if not self.qualities:
            default = (2, 4, 6, 8, 12, 16) if self._sweeps_ratio else tuple(range(1, MAX_QUALITY + 1))
            object.__setattr__(self, "qualities", default)
        if self._sweeps_ratio:
            object.__setattr__(self, "sweep", "λ (ratio)")

    @property
    def _sweeps_ratio(self) -> bool:
        """The paper preset's rate is set by its ratio λ, the others' by the quality level."""
        return self.encoder.preset is Preset.PAPER

    def point(self, quality: Quality) -> EncoderOptions:
        """The encoder settings of one point of the sweep (range-checked)."""
        setting = "ratio" if self._sweeps_ratio else "quality"
        return dataclasses.replace(self.encoder, **{setting: quality})

    def config(self, quality: Quality) -> Any:
        """The resolved :class:`ccnn.CodecConfig` of one quality point (range-checks the options)."""
        return self.point(quality).resolve()

    def options(self) -> str:
        chosen = self.encoder.chosen()
        extra = ", " + self.encoder.describe() if chosen else " (the preset's training budget)"
        return f"ccnn --preset {self.encoder.preset.value}{extra}, whole .ccnn file"

    def versions(self) -> str:
        return f"ccnn {__version__}, format {FORMAT_VERSION}, code {self.fingerprint}"

    def key(self, quality: Quality) -> dict[str, Any]:
        key = {
            **super().key(quality),
            "preset": self.encoder.preset.value,
            "config": repr(dataclasses.asdict(self.config(quality))),
            "device": self.device or "auto",
        }
        if self.encoder.training.forces_network():  # else the image picks it: not in "config"
            key["network"] = "forced"
        return key

    def quality_label(self, quality: Quality) -> str:
        return f"λ={quality:g}" if self._sweeps_ratio else f"q={quality:g}"

    def encode_full(self, pixels: np.ndarray, quality: Quality) -> EncodeResult:
        """The :class:`ccnn.EncodeResult` of one point (training included)."""
        return compress_image(pixels, options=self.point(quality), device=self.device)

    def encode(self, pixels: np.ndarray, quality: Quality) -> bytes:
        return self.encode_full(pixels, quality).data

    def decode(self, data: bytes) -> np.ndarray:
        return decompress(data)


#: The codecs ``ccnn bench`` knows, in the order they are reported.
CODEC_NAMES: tuple[str, ...] = ("ccnn", "jpeg", "webp", "jpeg2000", "heif", "avif", "jpegxl")
CLASSICAL: dict[str, type[Codec]] = {
    "jpeg": JpegCodec,
    "webp": WebpCodec,
    "jpeg2000": Jpeg2000Codec,
    "heif": HeifCodec,
    "avif": AvifCodec,
    "jpegxl": JpegXlCodec,
}


def _span(codec: Codec) -> str:
    values = list(codec.qualities)
    if len(values) > 3:
        steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
        if len(steps) == 1:
            return f"{values[0]:g} to {values[-1]:g} step {steps.pop():g} ({len(values)} points)"
    return ", ".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class SizeMatch:
    """A classical codec's quality at a target file size: PSNR interpolated at that size."""

    psnr: float
    nearest_bytes: int
    nearest_quality: int
    nearest_decoded: np.ndarray


def psnr_at_size(codec: Codec, pixels: np.ndarray, target_bytes: int) -> SizeMatch:
    """PSNR of ``codec`` at ``target_bytes``, linearly interpolated between the two qualities
    whose files bracket that size (clamped at the ends of the quality range)."""
    points = []
    for quality in codec.qualities:
        data = codec.encode(pixels, quality)
        points.append((len(data), psnr(pixels, codec.decode(data)), quality))
    points.sort(key=lambda p: p[0])
    sizes = np.array([p[0] for p in points], dtype=np.float64)
    psnrs = np.array([p[1] for p in points], dtype=np.float64)
    nearest_bytes, _, nearest_quality = min(points, key=lambda p: abs(p[0] - target_bytes))
    # only the nearest file is kept: decode it again rather than hold every quality's pixels
    return SizeMatch(
        psnr=float(np.interp(target_bytes, sizes, psnrs)),
        nearest_bytes=nearest_bytes,
        nearest_quality=nearest_quality,
        nearest_decoded=codec.decode(codec.encode(pixels, nearest_quality)),
    )


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    """``function(*args)`` and the seconds it took."""
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start
