"""The .ccnn format, decoding side: spec types, container, entropy coding, exact restoring network.

Nothing in this package imports torch: viewing a .ccnn file needs numpy and constriction only.
The encoder (:mod:`ccnn.encoder`) builds on these pieces; they never import it.
"""

from __future__ import annotations

from .container import FORMAT_VERSION, READABLE_VERSIONS, CCNNFile, FileInfo, check_decodable, pack, read_info
from .decode import decode
from .spec import MAX_PIXELS, MAX_SIDE, DecoderSpec, LatentMode, LayerSpec, QuantizedTensor

__all__ = [
    "FORMAT_VERSION",
    "MAX_PIXELS",
    "MAX_SIDE",
    "READABLE_VERSIONS",
    "CCNNFile",
    "DecoderSpec",
    "FileInfo",
    "LatentMode",
    "LayerSpec",
    "QuantizedTensor",
    "check_decodable",
    "decode",
    "pack",
    "read_info",
]
