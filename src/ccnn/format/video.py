"""The video form of the ``.ccnn`` container (format version 6), and its decoder, without torch.

A clip shares one restoring network and two entropy models across its frames; each frame is
an integer latent, coded either on its own (an *intra* frame, with the intra model) or as its
difference from the previous frame's latent (a *predicted* frame, with the delta model). Every
frame is restored by the same exact network as a still image (:func:`restore_exact`), as
YCbCr 4:4:4, whose chroma the decoder then averages to 4:2:0. Layout (docs/format.md,
"Version 6: clips")::

    magic      4 bytes  b"CCNN"
    version    u8       6
    hdr_len    u16      12 + 2
    header              frames u32, fps numerator u32, fps denominator u32, colour u8, flags u8
    section 1           tag u8 = 1 | length u32 | a version-4 image file with an empty latent:
                        frame size, restoring network, weights, intra entropy model
    section 2           tag u8 = 2 | length u32 | the delta entropy model (as section 2 of an image)
    frame records       per frame: tag u8 = 3 | type u8 (0 intra, 1 predicted) | length u32 | latent
    crc32      u32      zlib.crc32 of every byte before it

The frame records carry their lengths, so a reader finds every frame, and seeks to an intra
frame, by reading six bytes per frame. Everything is range-checked before anything is
allocated, the frame count against the records actually present.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ..errors import FormatError, LimitError
from . import container
from .container import CCNNFile
from .decode import decode_weights
from .entropy import (
    CONTEXT_PARAMETERS,
    MAX_CONTEXT_LEVELS,
    GroupModel,
    context_from_ints,
    context_to_ints,
    decode_latent,
)
from .exact import restore_exact
from .spec import QuantizedTensor

VIDEO_FORMAT_VERSION = 6
#: Most frames a clip may declare, and the largest frame-rate numerator and denominator.
MAX_FRAMES = 1 << 20
MAX_RATE_TERM = 1 << 20
#: Colour of the frames: YCbCr, BT.601 limited range, restored 4:4:4 and output 4:2:0.
COLOUR_YUV420_BT601 = 1
#: Header flag bit 0: predicted frames are coded as a residual against the previous decoded frame
#: (*pixel prediction*) rather than as a latent delta; intra frames then are residuals against
#: mid-grey (128 in every plane).
FLAG_PIXEL_RESIDUAL = 1
#: The base an intra frame is restored on in pixel prediction.
INTRA_BASE = 128
#: Frame types.
INTRA = 0
PREDICTED = 1
FRAME_TYPE_NAMES = {INTRA: "intra", PREDICTED: "predicted"}
#: The largest magnitude a decoded latent value may reach by accumulating deltas; far beyond
#: any coded latent, it keeps the sums exact and the restoring network's range check meaningful.
MAX_LATENT_MAGNITUDE = 1 << 20

SECTION_NETWORK = 1
SECTION_DELTA_MODEL = 2
TAG_FRAME = 3

_PREFIX = struct.Struct("<4sBH")
_HEADER = struct.Struct("<IIIBB")  # frames, fps numerator, fps denominator, colour, flags
_SECTION = struct.Struct("<BI")
_FRAME = struct.Struct("<BBI")  # tag, type, length
_GROUP = struct.Struct("<eehh")  # as the image container's group model
_CRC = struct.Struct("<I")


class YUVFrame(NamedTuple):
    """One decoded frame: Y (H, W), U and V (ceil(H/2), ceil(W/2)), uint8."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class FrameRecord:
    """Where one frame's latent lies in the file, and how it is coded."""

    kind: int
    offset: int
    length: int


@dataclass(frozen=True)
class VideoFile:
    """The contents of a version-6 file, before any frame is decoded.

    ``network`` is the embedded image description (frame size, restoring network, weights and
    intra entropy model; its latent is empty). ``frames`` index into ``data``.
    """

    fps: Fraction
    network: CCNNFile
    delta_models: tuple[GroupModel, ...]
    delta_context: np.ndarray | None
    frames: tuple[FrameRecord, ...]
    data: bytes
    residual: bool = False

    @property
    def height(self) -> int:
        return self.network.height

    @property
    def width(self) -> int:
        return self.network.width

    def frame_bytes(self, index: int) -> bytes:
        record = self.frames[index]
        return self.data[record.offset : record.offset + record.length]


@dataclass(frozen=True)
class VideoInfo:
    """What ``ccnn info`` shows of a clip: frames, rate, network and bytes per frame type."""

    version: int
    frames: int
    fps: Fraction
    height: int
    width: int
    network: container.FileInfo
    network_bytes: int
    delta_model_bytes: int
    frame_bytes: dict[str, list[int]]
    total_bytes: int
    residual: bool = False

    @property
    def shared_bytes(self) -> int:
        """Bytes not in any frame record: header, network, models, frame-record tags, checksum."""
        return self.total_bytes - sum(sum(sizes) for sizes in self.frame_bytes.values())

    @property
    def bpp(self) -> float:
        """Bits per frame pixel of the whole file."""
        return 8.0 * self.total_bytes / (self.frames * self.height * self.width)

    @property
    def kbps(self) -> float:
        """The whole file's rate at the clip's frame rate, in kilobits per second."""
        return 8.0 * self.total_bytes * float(self.fps) / self.frames / 1000.0

    def as_dict(self) -> dict:
        return {
            "format_version": self.version,
            "frames": self.frames,
            "fps": float(self.fps),
            "fps_fraction": f"{self.fps.numerator}/{self.fps.denominator}",
            "width": self.width,
            "height": self.height,
            "colour": "YCbCr 4:2:0 BT.601 limited range",
            "prediction": "pixels" if self.residual else "latent",
            "network": self.network.as_dict(),
            "bytes": {
                "total": self.total_bytes,
                "shared": self.shared_bytes,
                "network": self.network_bytes,
                "delta_model": self.delta_model_bytes,
                **{f"{kind}_frames": sum(sizes) for kind, sizes in self.frame_bytes.items()},
            },
            "frame_counts": {kind: len(sizes) for kind, sizes in self.frame_bytes.items()},
            "bpp": self.bpp,
            "kbps": self.kbps,
        }


def is_video(data: bytes) -> bool:
    """Whether ``data`` starts as a version-6 (clip) file: the magic, then the version byte."""
    return len(data) > 4 and data[:4] == container.MAGIC and data[4] == VIDEO_FORMAT_VERSION


def pack_entropy_model(
    models: tuple[GroupModel, ...] | list[GroupModel], context: np.ndarray | None
) -> bytes:
    """A latent entropy model as the image container's section 2 stores it."""
    out = b"".join(_GROUP.pack(m.location, m.scale, m.lo, m.hi) for m in models)
    if context is not None:
        ints = context_to_ints(context)
        if not np.array_equal(context_from_ints(ints), context):
            raise ValueError("context parameters must lie on the grid the file stores (see stored_context)")
        out += struct.pack("<B", context.shape[0]) + ints.tobytes()
    return out


def _parse_entropy_model(
    payload: bytes, channels: int, with_context: bool
) -> tuple[tuple[GroupModel, ...], np.ndarray | None]:
    if len(payload) < channels * _GROUP.size:
        raise FormatError("file is corrupted (delta model section too short)")
    models = []
    for c in range(channels):
        loc, scale, lo, hi = _GROUP.unpack_from(payload, c * _GROUP.size)
        if not (np.isfinite(loc) and np.isfinite(scale) and scale > 0 and lo <= hi):
            raise FormatError("file is corrupted (invalid delta model parameters)")
        models.append(GroupModel(float(loc), float(scale), int(lo), int(hi)))
    rest = payload[channels * _GROUP.size :]
    context = None
    if with_context:
        if not rest:
            raise FormatError("file is corrupted (delta model section too short)")
        levels = rest[0]
        if not 1 <= levels <= MAX_CONTEXT_LEVELS:
            raise LimitError(f"file claims {levels} delta context levels (1..{MAX_CONTEXT_LEVELS})")
        size = levels * channels * CONTEXT_PARAMETERS
        if len(rest) < 1 + size:
            raise FormatError("file is corrupted (delta model section too short)")
        ints = np.frombuffer(rest[1 : 1 + size], dtype=np.int8).reshape(levels, channels, CONTEXT_PARAMETERS)
        context = context_from_ints(ints)
        rest = rest[1 + size :]
    if rest:
        raise FormatError("file is corrupted (delta model section too long)")
    return tuple(models), context


def pack_video(
    network: CCNNFile,
    fps: Fraction,
    delta_models: list[GroupModel],
    delta_context: np.ndarray | None,
    frames: list[tuple[int, bytes]],
    residual: bool = False,
) -> bytes:
    """The bytes of a version-6 file: ``network`` (its latent data empty), then (type, latent) per frame.

    ``residual``: predicted frames are pixel residuals (:data:`FLAG_PIXEL_RESIDUAL`), and the
    delta model is the model of their latents.
    """
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"a clip has 1..{MAX_FRAMES} frames, not {len(frames)}")
    if frames[0][0] != INTRA:
        raise ValueError("the first frame must be an intra frame")
    flags = FLAG_PIXEL_RESIDUAL if residual else 0
    header = _HEADER.pack(len(frames), fps.numerator, fps.denominator, COLOUR_YUV420_BT601, flags)
    body = _PREFIX.pack(container.MAGIC, VIDEO_FORMAT_VERSION, len(header)) + header
    shared = container.pack(network)
    delta = pack_entropy_model(delta_models, delta_context)
    body += _SECTION.pack(SECTION_NETWORK, len(shared)) + shared
    body += _SECTION.pack(SECTION_DELTA_MODEL, len(delta)) + delta
    parts = [body]
    for kind, payload in frames:
        parts.append(_FRAME.pack(TAG_FRAME, kind, len(payload)) + payload)
    out = b"".join(parts)
    return out + _CRC.pack(zlib.crc32(out))


def _section(data: bytes, offset: int, tag: int, what: str) -> tuple[bytes, int]:
    if offset + _SECTION.size > len(data):
        raise FormatError(f"file is truncated (missing {what} section)")
    found, length = _SECTION.unpack_from(data, offset)
    if found != tag:
        raise FormatError(f"file is corrupted (expected section {tag}, found {found})")
    offset += _SECTION.size
    if offset + length > len(data):
        raise FormatError(f"file is truncated (in the {what} section)")
    return data[offset : offset + length], offset + length


def unpack_video(data: bytes) -> VideoFile:
    """Parse and validate a version-6 file: header, shared sections, frame records and checksum."""
    if len(data) < _PREFIX.size:
        raise FormatError("file is truncated (incomplete header)")
    magic, version, header_len = _PREFIX.unpack_from(data, 0)
    if magic != container.MAGIC:
        raise FormatError("not a ccnn file (bad magic)")
    if version != VIDEO_FORMAT_VERSION:
        raise FormatError(
            f"not a ccnn clip (format version {version}; clips are version {VIDEO_FORMAT_VERSION})"
        )
    if header_len != _HEADER.size:
        raise FormatError("file is corrupted (clip header length)")
    if len(data) < _PREFIX.size + _HEADER.size:
        raise FormatError("file is truncated (incomplete header)")
    frames, fps_num, fps_den, colour, flags = _HEADER.unpack_from(data, _PREFIX.size)
    if not 1 <= frames <= MAX_FRAMES:
        raise LimitError(f"header claims {frames} frames (1..{MAX_FRAMES})")
    if not (1 <= fps_num <= MAX_RATE_TERM and 1 <= fps_den <= MAX_RATE_TERM):
        raise LimitError(f"header claims a frame rate of {fps_num}/{fps_den}")
    if colour != COLOUR_YUV420_BT601:
        raise LimitError(f"header names unknown colour format {colour}")
    if flags & ~FLAG_PIXEL_RESIDUAL:
        raise LimitError(f"header has unknown flags {flags:#x}")
    # the checksum first: the sections' structure below is then known to be what was written
    if len(data) < _PREFIX.size + _HEADER.size + _CRC.size:
        raise FormatError("file is truncated (missing checksum)")
    (stored_crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    offset = _PREFIX.size + _HEADER.size
    shared, offset = _section(data, offset, SECTION_NETWORK, "network")
    network = container.unpack(shared)  # all the image format's range checks, per frame
    if network.channels != 3:
        raise FormatError("file is corrupted (a clip's frames have three channels)")
    if network.latent_data:
        raise FormatError("file is corrupted (the network section holds a latent)")
    delta_payload, offset = _section(data, offset, SECTION_DELTA_MODEL, "delta model")
    delta_models, delta_context = _parse_entropy_model(
        delta_payload, network.spec.latent_channels, network.spec.latent_context
    )
    records: list[FrameRecord] = []
    end = len(data) - _CRC.size
    while offset < end and len(records) < frames:
        if offset + _FRAME.size > end:
            raise FormatError(f"file is truncated (in the record of frame {len(records)})")
        tag, kind, length = _FRAME.unpack_from(data, offset)
        if tag != TAG_FRAME or kind not in FRAME_TYPE_NAMES:
            raise FormatError(f"file is corrupted (bad record of frame {len(records)})")
        if not records and kind != INTRA:
            raise FormatError("file is corrupted (the first frame is not an intra frame)")
        offset += _FRAME.size
        if offset + length > end:
            raise FormatError(f"file is truncated (in frame {len(records)})")
        records.append(FrameRecord(kind, offset, length))
        offset += length
    if len(records) < frames:
        raise FormatError(f"file is truncated (holds {len(records)} of its {frames} frames)")
    if offset != end:
        raise FormatError("file is corrupted (unexpected bytes after the last frame)")
    if zlib.crc32(data[:end]) != stored_crc:
        raise FormatError("file is corrupted (checksum mismatch)")
    return VideoFile(
        fps=Fraction(fps_num, fps_den),
        network=network,
        delta_models=delta_models,
        delta_context=delta_context,
        frames=tuple(records),
        data=data,
        residual=bool(flags & FLAG_PIXEL_RESIDUAL),
    )


def read_video_info(data: bytes) -> VideoInfo:
    """Frames, frame rate, network and bytes per frame type of a version-6 file."""
    clip = unpack_video(data)
    shared, _ = _section(data, _PREFIX.size + _HEADER.size, SECTION_NETWORK, "network")
    delta, _ = _section(
        data, _PREFIX.size + _HEADER.size + _SECTION.size + len(shared), SECTION_DELTA_MODEL, ""
    )
    sizes: dict[str, list[int]] = {name: [] for name in FRAME_TYPE_NAMES.values()}
    for record in clip.frames:
        sizes[FRAME_TYPE_NAMES[record.kind]].append(record.length)
    return VideoInfo(
        version=VIDEO_FORMAT_VERSION,
        frames=len(clip.frames),
        fps=clip.fps,
        height=clip.height,
        width=clip.width,
        network=container.read_info(shared),
        network_bytes=len(shared),
        delta_model_bytes=len(delta),
        frame_bytes=sizes,
        total_bytes=len(data),
        residual=clip.residual,
    )


def subsample_chroma(plane: np.ndarray) -> np.ndarray:
    """(..., H, W) uint8 -> (..., ceil(H/2), ceil(W/2)): the rounded mean of each 2x2 block.

    Integer arithmetic, ``(sum + 2) >> 2`` with the last row and column repeated when a side
    is odd, so the decoder's 4:2:0 output is the same on every machine.
    """
    h, w = plane.shape[-2:]
    pad = [(0, 0)] * (plane.ndim - 2) + [(0, h % 2), (0, w % 2)]
    p = np.pad(plane.astype(np.int32), pad, mode="edge")
    total = p[..., 0::2, 0::2] + p[..., 1::2, 0::2] + p[..., 0::2, 1::2] + p[..., 1::2, 1::2]
    return ((total + 2) >> 2).astype(np.uint8)


def frame_from_yuv444(pixels: np.ndarray) -> YUVFrame:
    """The decoder's output frame: (H, W, 3) restored YCbCr 4:4:4 -> 4:2:0 planes."""
    return YUVFrame(
        np.ascontiguousarray(pixels[..., 0]),
        subsample_chroma(pixels[..., 1]),
        subsample_chroma(pixels[..., 2]),
    )


def intra_before(clip: VideoFile, index: int) -> int:
    """The last intra frame at or before ``index``: where decoding must start to reach it."""
    for i in range(index, -1, -1):
        if clip.frames[i].kind == INTRA:
            return i
    raise FormatError(f"file is corrupted (no intra frame before frame {index})")


def decode_frame_latents(clip: VideoFile, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(index, integer latent (L, h, w)) of the frames from the intra frame before ``start`` on.

    With latent deltas, a predicted frame's latent is the previous one plus the decoded delta;
    with pixel residuals it is the decoded latent itself.
    """
    if not 0 <= start < len(clip.frames):
        raise IndexError(f"frame {start} of a {len(clip.frames)}-frame clip")
    shape = clip.network.latent_shape
    network = clip.network
    latent: np.ndarray | None = None
    for i in range(intra_before(clip, start), len(clip.frames)):
        record = clip.frames[i]
        payload = clip.frame_bytes(i)
        if record.kind == INTRA:
            latent = decode_latent(
                payload, shape, list(network.latent_models), network.latent_context, tabled=False
            )
        elif clip.residual:
            latent = decode_latent(payload, shape, list(clip.delta_models), clip.delta_context, tabled=False)
        else:
            assert latent is not None
            delta = decode_latent(payload, shape, list(clip.delta_models), clip.delta_context, tabled=False)
            latent = latent.astype(np.int64) + delta
            if np.abs(latent).max(initial=0) > MAX_LATENT_MAGNITUDE:
                raise FormatError(f"file is corrupted (frame {i}'s latent leaves the decodable range)")
            latent = latent.astype(np.int32)
        yield i, latent


def restored_frames(
    clip: VideoFile, weights: list[QuantizedTensor], start: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, restored YCbCr 4:4:4 pixels at the latent's full size) from the intra frame before ``start``.

    With pixel residuals each frame is restored on a base: mid-grey for an intra frame, the
    previous frame's full-size pixels for a predicted one.
    """
    previous: np.ndarray | None = None
    for i, latent in decode_frame_latents(clip, start):
        base = None
        if clip.residual:
            if clip.frames[i].kind == INTRA or previous is None:
                stride = clip.network.spec.latent_stride
                base = np.full((latent.shape[1] * stride, latent.shape[2] * stride, 3), INTRA_BASE, np.uint8)
            else:
                base = previous
        previous = restore_exact(clip.network.spec, weights, latent, base=base)
        yield i, previous


def decode_video(data: bytes, start: int = 0) -> Iterator[YUVFrame]:
    """The frames of a version-6 file from ``start`` on, one at a time (numpy and constriction only).

    The whole file is parsed and checked here, before the first frame is asked for, so a
    corrupt file fails at the call, not midway through a loop over its frames.
    """
    clip = unpack_video(data)
    if not 0 <= start < len(clip.frames):
        raise IndexError(f"frame {start} of a {len(clip.frames)}-frame clip")
    weights = decode_weights(clip.network)
    return (
        frame_from_yuv444(pixels[: clip.height, : clip.width])
        for i, pixels in restored_frames(clip, weights, start)
        if i >= start
    )
