"""The alpha plane of a .ccnn file: lossless, one predictor for the whole plane, then deflate.

Why so simple: transparency masks (logos, cut-outs, text) are large flat areas of 0 and 255
with thin soft edges, which deflate already codes in a few bytes per edge pixel once a
predictor has turned the flat runs into zeros; the measurement against WebP's lossless alpha
is in docs/decisions.md ("Alpha: a predictor and deflate"). Every predictor is undone by
cumulative sums, so decoding is a few numpy passes whatever the image's size, and needs zlib
only (no torch, no per-pixel Python loop).

Payload (docs/format.md, section 4): ``predictor u8`` then one zlib stream of the ``height x
width`` residuals, row-major, each ``(alpha - prediction) mod 256``:

* 0 none: the prediction is 0;
* 1 left: the pixel to the left (0 in the first column);
* 2 up: the pixel above (0 in the first row);
* 3 gradient: left + up - up-left (each 0 outside the image), as PNG's and JPEG-LS's planar
  predictor.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import FormatError

PREDICTOR_NONE = 0
PREDICTOR_LEFT = 1
PREDICTOR_UP = 2
PREDICTOR_GRADIENT = 3
PREDICTORS = (PREDICTOR_NONE, PREDICTOR_LEFT, PREDICTOR_UP, PREDICTOR_GRADIENT)
#: zlib strategies the encoder tries with each predictor (the decoder does not need to know).
_STRATEGIES = (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_RLE)

_PREDICTOR = struct.Struct("<B")


def _residuals(plane: np.ndarray, predictor: int) -> np.ndarray:
    """``plane`` minus its prediction, mod 256 (uint8 arithmetic wraps).

    The gradient predictor's residual is the vertical difference of the horizontal differences.
    """
    out = plane.copy()
    if predictor in (PREDICTOR_LEFT, PREDICTOR_GRADIENT):
        out[:, 1:] -= plane[:, :-1]
    if predictor in (PREDICTOR_UP, PREDICTOR_GRADIENT):
        out[1:, :] -= out[:-1, :].copy()
    return out


def encode_alpha(plane: np.ndarray) -> bytes:
    """The section payload of a uint8 H x W alpha plane: the smallest predictor and zlib strategy."""
    plane = np.ascontiguousarray(plane, dtype=np.uint8)
    best = b""
    for predictor in PREDICTORS:
        residuals = _residuals(plane, predictor).tobytes()
        for strategy in _STRATEGIES:
            packer = zlib.compressobj(9, zlib.DEFLATED, 15, 9, strategy)
            payload = _PREDICTOR.pack(predictor) + packer.compress(residuals) + packer.flush()
            if not best or len(payload) < len(best):
                best = payload
    return best


def decode_alpha(payload: bytes, height: int, width: int) -> np.ndarray:
    """The uint8 H x W alpha plane of a section payload; never inflates more than H x W bytes."""
    if len(payload) < _PREDICTOR.size:
        raise FormatError("file is corrupted (alpha section too short)")
    (predictor,) = _PREDICTOR.unpack_from(payload, 0)
    if predictor not in PREDICTORS:
        raise FormatError(f"file is corrupted (unknown alpha predictor {predictor})")
    size = height * width
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload[_PREDICTOR.size :], size)
    except zlib.error:
        raise FormatError("file is corrupted (alpha plane does not inflate)") from None
    if len(raw) != size or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise FormatError("file is corrupted (alpha plane has the wrong size)")
    plane = np.frombuffer(raw, dtype=np.uint8).reshape(height, width)
    # each predictor's residuals are differences; cumulative sums in uint8 undo them mod 256
    if predictor in (PREDICTOR_LEFT, PREDICTOR_GRADIENT):
        plane = np.cumsum(plane, axis=1, dtype=np.uint8)
    if predictor in (PREDICTOR_UP, PREDICTOR_GRADIENT):
        plane = np.cumsum(plane, axis=0, dtype=np.uint8)
    return np.ascontiguousarray(plane)
