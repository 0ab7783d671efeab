"""The ``.ccnn`` container: header fields, length-prefixed sections and a CRC32.

Layout (all integers little-endian; the full specification is docs/format.md)::

    magic      4 bytes  b"CCNN"
    version    u8       FORMAT_VERSION
    hdr_len    u16      length of the header fields that follow
    header     hdr_len  image size, pixel mode, the restoring network, optional sections (v5, v7)
    3 sections          tag u8 | length u32 | payload; tags 1 weights, 2 entropy, 3 latent
    0-5 sections        versions 5, 7, as the header's last byte says: 4 alpha, 5 ICC, 6 EXIF, 7 XMP,
                        8 encoder note
    crc32      u32      zlib.crc32 of every byte before it

Parsing runs no network and allocates nothing that depends on a size before every field has
been range-checked against the limits below, so a hostile header is refused cheaply.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError, LimitError
from .entropy import (
    CONTEXT_BYTES,
    CONTEXT_PARAMETERS,
    CONTEXT_VALUES,
    MAX_CONTEXT_LEVELS,
    GroupModel,
    context_from_ints,
    context_to_ints,
)
from .exact import Band, band_height, band_of, input_margin, row_reach
from .spec import MAX_PIXELS, MAX_SIDE, METADATA_KINDS, DecoderSpec, LatentMode, LayerSpec, Metadata

MAGIC = b"CCNN"
FORMAT_VERSION = 7
#: Versions this reader decodes: version 1 is version 2 without the spatial-context flag,
#: version 2 is version 3 with one context level that the file does not state, version 3
#: is version 4 without the cross-channel term of the context model (three parameters per
#: pattern instead of four; it reads as g = 0), version 4 is version 5 without optional
#: sections (no alpha, no metadata) and without the header byte that lists them, and
#: version 5 is version 7 with the context phases coded by constriction's Laplace per symbol
#: instead of tables. Version 6 is a clip (:mod:`ccnn.format.video`).
READABLE_VERSIONS = (1, 2, 3, 4, 5, 7)
#: The first version with optional sections (alpha plane, ICC, EXIF, XMP).
OPTIONAL_SECTIONS_VERSION = 5
#: The first version whose context phases are coded with tables (:func:`ccnn.format.entropy._code_tabled`).
TABLED_VERSION = 7

SECTION_WEIGHTS = 1
SECTION_ENTROPY = 2
SECTION_LATENT = 3
SECTION_ALPHA = 4
#: Metadata sections by kind, in file order (tags 5, 6, 7).
SECTION_METADATA = {kind: SECTION_ALPHA + 1 + i for i, kind in enumerate(METADATA_KINDS)}
#: What the encoder was asked for when it matters to a reader: a rate target, or a time budget
#: that ended training early (UTF-8 text; written only then, since its bytes count in the rate).
SECTION_NOTE = SECTION_ALPHA + 1 + len(METADATA_KINDS)
SECTION_NAMES = {
    SECTION_WEIGHTS: "decoder weights",
    SECTION_ENTROPY: "entropy model",
    SECTION_LATENT: "latent",
    SECTION_ALPHA: "alpha",
    **{tag: kind.upper() for kind, tag in SECTION_METADATA.items()},
    SECTION_NOTE: "encoder note",
}
#: Optional sections (version 5): bit ``tag - 4`` of the header's last byte says the section is there.
OPTIONAL_SECTIONS = (SECTION_ALPHA, *SECTION_METADATA.values(), SECTION_NOTE)
#: Longest encoder note a reader accepts, in bytes (a few dozen are written).
MAX_NOTE_BYTES = 1024
#: Longest metadata section (ICC profile, EXIF or XMP packet) a reader accepts, in bytes. Real
#: ones are kilobytes (JPEG caps EXIF at 64 KiB; large ICC profiles and XMP with an editing
#: history reach a few MiB).
MAX_METADATA_BYTES = 1 << 24
#: How an EXIF section must start: a TIFF header, little- or big-endian.
EXIF_HEADERS = (b"II*\x00", b"MM\x00*")

#: Latent modes by their number in the header.
LATENT_MODES = (LatentMode.BYTE, LatentMode.INTEGER)

#: Header flag bits.
FLAG_OUTPUT_ACTIVATION = 1
FLAG_LATENT_CONTEXT = 2

#: Limits a header must respect; anything outside is refused before decoding starts.
MAX_LAYERS = 16
MAX_LAYER_CHANNELS = 256
MAX_KERNEL = 64
MAX_STRIDE = 32
MAX_DECODER_PARAMETERS = 1 << 22
#: Largest array of the whole image a decode holds: the latent's symbols or the pixels' values
#: (64 megapixels of RGB is 2**27.6). The restoring network's arrays are those of one band
#: (:func:`ccnn.format.exact.restore_exact`), bounded by :func:`decode_cost`.
MAX_WORK_ELEMENTS = 1 << 28
#: Most memory a decode may need at its peak, as :func:`decode_cost` estimates it from the header
#: (the latent, the entropy decoder's arrays, one band of the restoring network and the
#: pixels). Every file the encoder makes within the limits above needs less: at most some
#: 0.9 GiB (the ``fine`` network on 32768 x 2048), 0.8 GiB on 8192 x 8192, 0.3 GiB on a
#: 24-megapixel photo (docs/decisions.md, "Banded decoding").
MAX_DECODE_BYTES = 1 << 30
#: Most work the restoring network may cost, as :func:`decode_cost` counts it: multiply-adds
#: plus one step per output value and latent symbol, some ten seconds of one CPU core. The
#: largest legitimate file, 32768 x 2048 through the ``fine`` network, costs 2**35.5.
MAX_DECODE_WORK = 1 << 36
#: The context decoder's zero border: 2**(levels - 1) for at most MAX_CONTEXT_LEVELS levels.
_CONTEXT_PAD = 2 ** (MAX_CONTEXT_LEVELS - 1)

_PREFIX = struct.Struct("<4sBH")
_FIXED = struct.Struct("<IIBBBeBB")  # height, width, channels, latent mode, flags, slope, latent ch, layers
_LAYER = struct.Struct("<HBB")
_SECTION = struct.Struct("<BI")
_GROUP = struct.Struct("<eehh")
_WEIGHT_EXPONENT = struct.Struct("<b")
_CONTEXT_LEVELS = struct.Struct("<B")
_OPTIONAL = struct.Struct("<B")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class CCNNFile:
    """The decoded contents of a .ccnn file, before any network runs."""

    height: int
    width: int
    channels: int
    spec: DecoderSpec
    weight_exponents: tuple[int, ...]
    weight_models: tuple[GroupModel, ...]
    weight_data: bytes
    latent_models: tuple[GroupModel, ...]
    latent_context: np.ndarray | None  # (levels, latent channels, CONTEXT_PARAMETERS)
    latent_data: bytes
    alpha_data: bytes | None = None  # the alpha section's payload (ccnn.format.alpha), if any
    metadata: Metadata = field(default_factory=Metadata)
    note: str = ""  # the encoder note (SECTION_NOTE); empty: none
    #: context phases coded with tables (version 7, what :func:`pack` writes); False: versions 2-5
    tabled: bool = True

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        stride = self.spec.latent_stride
        return (
            self.spec.latent_channels,
            -(-self.height // stride),
            -(-self.width // stride),
        )


@dataclass(frozen=True)
class FileInfo:
    """What ``ccnn info`` shows: format, image, network and the byte breakdown of a file."""

    version: int
    height: int
    width: int
    channels: int
    spec: DecoderSpec
    header_bytes: int
    weight_bytes: int
    entropy_bytes: int
    latent_bytes: int
    alpha_bytes: int = 0  # 0: no alpha plane (the image is opaque)
    metadata: Metadata = field(default_factory=Metadata)
    note: str = ""  # what the encoder was asked for, when it matters (a target, a time budget)

    @property
    def alpha(self) -> bool:
        """Whether the image has an alpha plane: decoding gives LA or RGBA."""
        return self.alpha_bytes > 0

    @property
    def metadata_bytes(self) -> dict[str, int]:
        """Bytes of each metadata kind in the file (0 when absent), in section order."""
        present = self.metadata.present()
        return {kind: len(present.get(kind, b"")) for kind in METADATA_KINDS}

    @property
    def total_bytes(self) -> int:
        return (
            self.header_bytes
            + self.weight_bytes
            + self.entropy_bytes
            + self.latent_bytes
            + self.alpha_bytes
            + sum(self.metadata_bytes.values())
            + len(self.note.encode())
        )

    @property
    def bpp(self) -> float:
        return 8.0 * self.total_bytes / (self.height * self.width)

    @property
    def decoder_parameters(self) -> int:
        return self.spec.parameter_count

    def as_dict(self) -> dict:
        return {
            "format_version": self.version,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "alpha": self.alpha,
            "latent_mode": self.spec.latent_mode.value,
            "latent_channels": self.spec.latent_channels,
            "latent_stride": self.spec.latent_stride,
            "spatial_context": self.spec.latent_context,
            "slope": self.spec.slope,
            "restoring_layers": [
                {"channels": s.channels, "kernel": s.kernel, "stride": s.stride} for s in self.spec.layers
            ],
            "decoder_parameters": self.decoder_parameters,
            "bytes": {
                "header": self.header_bytes,
                "decoder_weights": self.weight_bytes,
                "entropy_model": self.entropy_bytes,
                "latent": self.latent_bytes,
                "alpha": self.alpha_bytes,
                **self.metadata_bytes,
                "encoder_note": len(self.note.encode()),
                "total": self.total_bytes,
            },
            "bpp": self.bpp,
            "encoder_note": self.note,
        }


def _pack_group(model: GroupModel) -> bytes:
    return _GROUP.pack(model.location, model.scale, model.lo, model.hi)


def pack(contents: CCNNFile) -> bytes:
    """Serialise ``contents`` into the bytes of a .ccnn file."""
    spec = contents.spec
    flags = (FLAG_OUTPUT_ACTIVATION if spec.output_activation else 0) | (
        FLAG_LATENT_CONTEXT if spec.latent_context else 0
    )
    header = _FIXED.pack(
        contents.height,
        contents.width,
        contents.channels,
        LATENT_MODES.index(spec.latent_mode),
        flags,
        spec.slope,
        spec.latent_channels,
        len(spec.layers),
    ) + b"".join(_LAYER.pack(s.channels, s.kernel, s.stride) for s in spec.layers)
    optional = _optional_payloads(contents)
    header += _OPTIONAL.pack(sum(1 << (tag - SECTION_ALPHA) for tag in optional))
    weights = (
        b"".join(
            _WEIGHT_EXPONENT.pack(exp) + _pack_group(model)
            for exp, model in zip(contents.weight_exponents, contents.weight_models)
        )
        + contents.weight_data
    )
    entropy = b"".join(_pack_group(model) for model in contents.latent_models)
    if spec.latent_context:
        assert contents.latent_context is not None
        if not contents.tabled:
            raise ValueError(
                f"a latent coded as versions 2-5 code it cannot be written as version {FORMAT_VERSION}"
            )
        ints = context_to_ints(contents.latent_context)
        if not np.array_equal(context_from_ints(ints), contents.latent_context):
            raise ValueError("context parameters must lie on the grid the file stores (see stored_context)")
        entropy += _CONTEXT_LEVELS.pack(contents.latent_context.shape[0])
        entropy += ints.tobytes()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    for tag, payload in (
        (SECTION_WEIGHTS, weights),
        (SECTION_ENTROPY, entropy),
        (SECTION_LATENT, contents.latent_data),
        *optional.items(),
    ):
        body += _SECTION.pack(tag, len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def _optional_payloads(contents: CCNNFile) -> dict[int, bytes]:
    """The optional sections of ``contents`` by tag, in file order, checked as a reader would."""
    optional: dict[int, bytes] = {}
    if contents.alpha_data is not None:
        optional[SECTION_ALPHA] = contents.alpha_data
    for kind, value in contents.metadata.present().items():
        if len(value) > MAX_METADATA_BYTES:
            raise ValueError(f"{kind} metadata of {len(value)} bytes (at most {MAX_METADATA_BYTES})")
        if kind == "exif" and value[:4] not in EXIF_HEADERS:
            raise ValueError("EXIF must be a TIFF structure (no Exif\\0\\0 prefix)")
        optional[SECTION_METADATA[kind]] = value
    if contents.note:
        note = contents.note.encode()
        if len(note) > MAX_NOTE_BYTES:
            raise ValueError(f"an encoder note of {len(note)} bytes (at most {MAX_NOTE_BYTES})")
        optional[SECTION_NOTE] = note
    return optional


def _split(data: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    """Check magic, version, structure and checksum; return version, header and sections."""
    if len(data) == 0:
        raise FormatError("file is empty")
    head = data[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise FormatError("not a ccnn file (bad magic)")
    if len(data) < _PREFIX.size:
        raise FormatError("file is truncated (incomplete header)")
    magic, version, header_len = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError("not a ccnn file (bad magic)")
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"unsupported format version {version} (this ccnn reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    offset = _PREFIX.size + header_len
    if offset > len(data):
        raise FormatError("file is truncated (incomplete header)")
    header = data[_PREFIX.size : offset]
    expected_tags = [SECTION_WEIGHTS, SECTION_ENTROPY, SECTION_LATENT]
    if version >= OPTIONAL_SECTIONS_VERSION:
        if not header:
            raise FormatError("file is corrupted (header too short)")
        listed = header[-1]
        if listed >> len(OPTIONAL_SECTIONS):
            raise LimitError(f"header lists unknown optional sections {listed:#x}")
        expected_tags += [tag for tag in OPTIONAL_SECTIONS if listed & (1 << (tag - SECTION_ALPHA))]
    sections: dict[int, bytes] = {}
    for expected in expected_tags:
        if offset + _SECTION.size > len(data):
            raise FormatError(f"file is truncated (missing {SECTION_NAMES[expected]} section)")
        tag, length = _SECTION.unpack_from(data, offset)
        if tag != expected:
            raise FormatError(f"file is corrupted (expected section {expected}, found {tag})")
        offset += _SECTION.size
        # lengths are checked before anything is sliced: a hostile length costs nothing
        if expected == SECTION_NOTE and length > MAX_NOTE_BYTES:
            raise LimitError(f"file claims an encoder note of {length} bytes (at most {MAX_NOTE_BYTES})")
        if expected in SECTION_METADATA.values() and length > MAX_METADATA_BYTES:
            raise LimitError(
                f"file claims {length} bytes of {SECTION_NAMES[expected]} metadata "
                f"(at most {MAX_METADATA_BYTES})"
            )
        if offset + length > len(data):
            raise FormatError(f"file is truncated (in the {SECTION_NAMES[expected]} section)")
        sections[tag] = data[offset : offset + length]
        offset += length
    if offset + _CRC.size > len(data):
        raise FormatError("file is truncated (missing checksum)")
    if offset + _CRC.size < len(data):
        raise FormatError("file is corrupted (unexpected bytes after the checksum)")
    (stored_crc,) = _CRC.unpack_from(data, offset)
    if zlib.crc32(data[:offset]) != stored_crc:
        raise FormatError("file is corrupted (checksum mismatch)")
    if sections.get(SECTION_ALPHA) == b"":
        raise FormatError("file is corrupted (empty alpha section)")
    if version >= OPTIONAL_SECTIONS_VERSION:
        header = header[:-1]  # the list of optional sections, read above
    return version, header, sections


def _metadata(sections: dict[int, bytes]) -> Metadata:
    """The metadata sections as :class:`Metadata`; an EXIF section must be a TIFF structure."""
    found = {kind: sections[tag] for kind, tag in SECTION_METADATA.items() if tag in sections}
    for kind, value in found.items():
        if not value:
            raise FormatError(f"file is corrupted (empty {SECTION_NAMES[SECTION_METADATA[kind]]} section)")
    if "exif" in found and found["exif"][:4] not in EXIF_HEADERS:
        raise FormatError("file is corrupted (EXIF section does not start with a TIFF header)")
    return Metadata(**found)


def _note(sections: dict[int, bytes]) -> str:
    """The encoder note, or "" when the file has none; it must be non-empty UTF-8 text."""
    if SECTION_NOTE not in sections:
        return ""
    try:
        note = sections[SECTION_NOTE].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("file is corrupted (encoder note is not UTF-8 text)") from None
    if not note or not note.isprintable():
        raise FormatError("file is corrupted (encoder note is empty or not printable text)")
    return note


def _parse_header(header: bytes) -> tuple[int, int, int, DecoderSpec]:
    if len(header) < _FIXED.size:
        raise FormatError("file is corrupted (header too short)")
    height, width, channels, mode, flags, slope, latent_channels, layers = _FIXED.unpack_from(header, 0)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise LimitError(
            f"header claims a {width}x{height} image, beyond this decoder's limits "
            f"({MAX_SIDE} per side, {MAX_PIXELS // (1 << 20)} megapixels)"
        )
    if channels not in (1, 3):
        raise LimitError(f"header claims {channels} channels (1 or 3 are supported)")
    if mode >= len(LATENT_MODES):
        raise LimitError(f"header names unknown latent mode {mode}")
    if flags & ~(FLAG_OUTPUT_ACTIVATION | FLAG_LATENT_CONTEXT):
        raise LimitError(f"header has unknown flags {flags:#x}")
    if flags & FLAG_LATENT_CONTEXT and LATENT_MODES[mode] is not LatentMode.INTEGER:
        raise FormatError("file is corrupted (spatial context on a byte latent)")
    if not (np.isfinite(slope) and 0.0 <= slope <= 1.0):
        raise LimitError(f"header claims Leaky ReLU slope {slope} (0..1 allowed)")
    if not 1 <= latent_channels <= MAX_LAYER_CHANNELS:
        raise LimitError(f"header claims {latent_channels} latent channels (1..{MAX_LAYER_CHANNELS})")
    if not 1 <= layers <= MAX_LAYERS:
        raise LimitError(f"header claims {layers} restoring layers (1..{MAX_LAYERS})")
    if len(header) != _FIXED.size + layers * _LAYER.size:
        raise FormatError("file is corrupted (header length does not match its layer count)")
    specs = []
    for i in range(layers):
        ch, kernel, stride = _LAYER.unpack_from(header, _FIXED.size + i * _LAYER.size)
        if not (1 <= ch <= MAX_LAYER_CHANNELS and 1 <= kernel <= MAX_KERNEL and 1 <= stride <= MAX_STRIDE):
            raise LimitError(
                f"header claims restoring layer {i} with {ch} channels, kernel {kernel}, stride {stride}"
            )
        specs.append(LayerSpec(ch, kernel, stride))
    if specs[-1].channels != channels:
        raise FormatError("file is corrupted (last restoring layer does not produce the image's channels)")
    total_stride = int(np.prod([s.stride for s in specs]))
    if total_stride > 1024:
        raise LimitError(f"header claims a total stride of {total_stride} (at most 1024)")
    spec = DecoderSpec(
        layers=tuple(specs),
        latent_channels=latent_channels,
        latent_stride=total_stride,
        slope=float(slope),
        latent_mode=LATENT_MODES[mode],
        output_activation=bool(flags & FLAG_OUTPUT_ACTIVATION),
        latent_context=bool(flags & FLAG_LATENT_CONTEXT),
    )
    check_decodable(spec, height, width)
    return height, width, channels, spec


def _strip_bytes(c_in: int, h: int, w: int, margin: int, layer: LayerSpec) -> int:
    """Scratch of :func:`ccnn.format.exact.phase_convolution` and its consumer for an input (c_in, h, w).

    In bytes, counting float64: the stacked views or every tap's products of one strip, the
    strip's values and the consumer's two buffers of their size.
    """
    c_out, kernel, stride = layer.channels, layer.kernel, layer.stride
    strip_values = 1 << 18  # exact._STRIP
    if c_in <= c_out:
        taps = (-(-kernel // stride)) ** 2
        rows = min(h, max(1, strip_values // (max(taps * c_in, c_out) * w)))
        scratch = taps * c_in * rows * w + 3 * c_out * rows * w
    else:
        padded_w = w + 2 * margin
        low, high = row_reach(layer)
        rows = min(h, max(1, strip_values // (kernel * kernel * c_out * padded_w)))
        scratch = kernel * kernel * c_out * (rows + high - low) * padded_w + 3 * c_out * rows * w
    return 8 * scratch


def _interior_band(spec: DecoderSpec, rows: int) -> Band:
    """A band of ``rows`` latent rows far from the image's edges: the largest any band is.

    Its extents do not depend on where it lies (its first output row is a multiple of every
    product of strides), and a band at an edge is cut by the edge, so no band holds more.
    """
    start = -(-(1 << 20) // rows) * rows  # beyond any halo (at most 16 layers of 64 rows)
    stride = spec.latent_stride
    return band_of(spec.layers, start + 2 * rows + (1 << 20), start * stride, (start + rows) * stride)


def decode_cost(spec: DecoderSpec, height: int, width: int) -> tuple[int, int]:
    """(peak bytes, work) of decoding an image of ``height`` x ``width`` with ``spec``: from the header alone.

    Peak bytes: the larger of the entropy decoder's arrays (the int32 latent, its zero-padded
    copy and magnitudes, some 120 bytes per symbol of the context parameters and tables of at most
    :data:`ccnn.format.entropy.CONTEXT_VALUES` symbols and 24 per position of the largest
    phase, with spatial context; one plane without) and what
    :func:`ccnn.format.exact.restore_exact` holds: the int32 latent, the uint8 pixels and, for
    the largest band (:func:`ccnn.format.exact.band_height`, with its halo), every layer's
    float64 zero-padded input (kept from band to band) and the largest strip scratch; plus the
    weights. Work: for each
    layer, the output values a band computes (its rows and halo) times the bands, x input
    channels x (kernel / stride)**2 multiply-adds plus one step per output value, plus one per
    latent symbol. Both are estimates made before anything is allocated; benchmarks/bombs.py
    compares them with what decoding takes.
    """
    stride = spec.latent_stride
    h, w = -(-height // stride), -(-width // stride)
    c_in = spec.latent_channels
    symbols = c_in * h * w
    if spec.latent_context:
        pad = _CONTEXT_PAD
        largest_phase = (-(-h // 2)) * (-(-w // 2))
        group = min(c_in, max(1, CONTEXT_VALUES // largest_phase))
        entropy = 4 * symbols + 8 * c_in * (h + 2 * pad) * (w + 2 * pad)
        entropy += CONTEXT_BYTES * group * largest_phase + 24 * largest_phase
    else:
        entropy = 4 * symbols + 8 * h * w
    rows = min(h, band_height(spec, w))
    bands = -(-h // rows)
    band = _interior_band(spec, rows)
    held_arrays = scratch = 0
    work = symbols
    margin = input_margin(spec.layers[0])
    layer_h = h
    for i, layer in enumerate(spec.layers):
        held = min(layer_h, band.held[i][1] - band.held[i][0])
        computed = min(layer_h, band.computed[i][1] - band.computed[i][0])
        # every layer's band input is kept from band to band (exact._Buffers): they add up
        held_arrays += 8 * c_in * (held + 2 * margin) * (w + 2 * margin)
        layer_scratch = _strip_bytes(c_in, computed, w, margin, layer)
        if i == 0:
            layer_scratch += 4 * c_in * held * w  # the magnitudes of the band's latent
        scratch = max(scratch, layer_scratch)
        out_w = w * layer.stride
        out_values = layer.channels * computed * layer.stride * out_w
        taps = layer.kernel * layer.kernel / (layer.stride * layer.stride)
        work += bands * (int(out_values * c_in * taps) + out_values)
        next_margin = input_margin(spec.layers[i + 1]) if i + 1 < len(spec.layers) else 0
        c_in, w, margin, layer_h = layer.channels, out_w, next_margin, layer_h * layer.stride
    largest_band = held_arrays + scratch
    pixels = spec.layers[-1].channels * height * width
    restore = 4 * symbols + pixels + largest_band
    peak = max(entropy, restore) + 24 * spec.parameter_count  # the weights as int32 and float64s
    return peak, work


def check_decodable(spec: DecoderSpec, height: int, width: int, operation: str = "decoding") -> None:
    """Refuse networks whose weights, arrays, memory or work would be unreasonably large.

    The reader calls it before allocating anything; the encoder calls it before training (with
    ``operation="compressing"``), so that a network the decoder would refuse is refused in
    seconds, not after minutes of work. ``operation`` names what is refused in the messages.
    """
    params = spec.parameter_count
    if params > MAX_DECODER_PARAMETERS:
        raise LimitError(
            f"{operation} this image would need a restoring network of {params} parameters "
            f"(at most {MAX_DECODER_PARAMETERS})"
        )
    stride = spec.latent_stride
    h, w = -(-height // stride), -(-width // stride)
    # the arrays of the whole image (the layers' arrays are those of a band: decode_cost)
    work = max(spec.latent_channels * h * w, spec.layers[-1].channels * height * width)
    if work > MAX_WORK_ELEMENTS:
        raise LimitError(
            f"{operation} this {width}x{height} image would need {work} working values "
            f"(this decoder allows {MAX_WORK_ELEMENTS})"
        )
    peak, work = decode_cost(spec, height, width)
    # the encoder makes a file that the decoder would refuse; the decoder refuses the file
    needs = "make a file that needs" if operation == "compressing" else "need"
    if peak > MAX_DECODE_BYTES:
        raise LimitError(
            f"{operation} this {width}x{height} image would {needs} about {peak / (1 << 20):.0f} MiB "
            f"of memory to decode (the decoder allows {MAX_DECODE_BYTES >> 20} MiB)"
        )
    if work > MAX_DECODE_WORK:
        raise LimitError(
            f"{operation} this {width}x{height} image would {needs} about {work:.3g} multiply-adds "
            f"to decode (the decoder allows {MAX_DECODE_WORK:.3g})"
        )


def _parse_groups(
    payload: bytes, count: int, what: str, with_exponent: bool
) -> tuple[list[int], list[GroupModel], bytes]:
    item = _GROUP.size + (_WEIGHT_EXPONENT.size if with_exponent else 0)
    if len(payload) < count * item:
        raise FormatError(f"file is corrupted ({what} section too short)")
    exponents: list[int] = []
    models: list[GroupModel] = []
    offset = 0
    for _ in range(count):
        if with_exponent:
            (exp,) = _WEIGHT_EXPONENT.unpack_from(payload, offset)
            exponents.append(exp)
            offset += _WEIGHT_EXPONENT.size
        loc, scale, lo, hi = _GROUP.unpack_from(payload, offset)
        offset += _GROUP.size
        if not (np.isfinite(loc) and np.isfinite(scale) and scale > 0 and lo <= hi):
            raise FormatError(f"file is corrupted (invalid {what} model parameters)")
        models.append(GroupModel(location=float(loc), scale=float(scale), lo=int(lo), hi=int(hi)))
    return exponents, models, payload[offset:]


def unpack(data: bytes) -> CCNNFile:
    """Parse and validate a .ccnn file (no network runs, nothing large is allocated)."""
    version, header, sections = _split(data)
    height, width, channels, spec = _parse_header(header)
    if version < 2 and spec.latent_context:
        raise FormatError("file is corrupted (spatial context flag in a version 1 file)")
    n_tensors = 2 * len(spec.layers)
    exponents, weight_models, weight_data = _parse_groups(
        sections[SECTION_WEIGHTS], n_tensors, "weights", True
    )
    _, latent_models, rest = _parse_groups(
        sections[SECTION_ENTROPY], spec.latent_channels, "entropy model", False
    )
    context = None
    if spec.latent_context:
        levels = 1
        if version >= 3:
            if len(rest) < _CONTEXT_LEVELS.size:
                raise FormatError("file is corrupted (entropy model section too short)")
            (levels,) = _CONTEXT_LEVELS.unpack_from(rest, 0)
            rest = rest[_CONTEXT_LEVELS.size :]
            if not 1 <= levels <= MAX_CONTEXT_LEVELS:
                raise LimitError(f"file claims {levels} context levels (1..{MAX_CONTEXT_LEVELS})")
        # version 4: 8 int8 numbers per level and channel; before: 6 float16 numbers (no g)
        stored, dtype = (CONTEXT_PARAMETERS, "i1") if version >= 4 else (CONTEXT_PARAMETERS - 2, "<f2")
        size = levels * spec.latent_channels * stored * np.dtype(dtype).itemsize
        if len(rest) < size:
            raise FormatError("file is corrupted (entropy model section too short)")
        numbers = np.frombuffer(rest[:size], dtype=dtype)
        if version >= 4:
            context = context_from_ints(numbers.reshape(levels, spec.latent_channels, CONTEXT_PARAMETERS))
        else:
            old = numbers.astype(np.float64).reshape(levels, spec.latent_channels, 2, stored // 2)
            context = np.concatenate([old, np.zeros_like(old[..., :1])], axis=-1)
            context = context.reshape(levels, spec.latent_channels, CONTEXT_PARAMETERS)
        if not np.all(np.isfinite(context)):
            raise FormatError("file is corrupted (invalid context model parameters)")
        rest = rest[size:]
    if rest:
        raise FormatError("file is corrupted (entropy model section too long)")
    if spec.latent_mode is LatentMode.BYTE and any(m.lo < 0 or m.hi > 255 for m in latent_models):
        raise FormatError("file is corrupted (byte latent outside 0..255)")
    return CCNNFile(
        height=height,
        width=width,
        channels=channels,
        spec=spec,
        weight_exponents=tuple(exponents),
        weight_models=tuple(weight_models),
        weight_data=weight_data,
        latent_models=tuple(latent_models),
        latent_context=context,
        latent_data=sections[SECTION_LATENT],
        alpha_data=sections.get(SECTION_ALPHA),
        metadata=_metadata(sections),
        note=_note(sections),
        tabled=version >= TABLED_VERSION,
    )


def read_info(data: bytes) -> FileInfo:
    """Format version, image, network and byte breakdown of a .ccnn file."""
    version, header, sections = _split(data)
    height, width, channels, spec = _parse_header(header)
    weight_bytes = len(sections[SECTION_WEIGHTS])
    entropy_bytes = len(sections[SECTION_ENTROPY])
    latent_bytes = len(sections[SECTION_LATENT])
    alpha_bytes = len(sections.get(SECTION_ALPHA, b""))
    metadata = _metadata(sections)
    note = _note(sections)
    metadata_bytes = sum(len(value) for value in metadata.present().values())
    optional_bytes = alpha_bytes + metadata_bytes + len(note.encode())
    return FileInfo(
        version=version,
        height=height,
        width=width,
        channels=channels,
        spec=spec,
        header_bytes=len(data) - weight_bytes - entropy_bytes - latent_bytes - optional_bytes,
        weight_bytes=weight_bytes,
        entropy_bytes=entropy_bytes,
        latent_bytes=latent_bytes,
        alpha_bytes=alpha_bytes,
        metadata=metadata,
        note=note,
    )
