"""What the API accepts as a file to read: a path, bytes, or a binary file object.

``ccnn.compress``, ``ccnn.decompress`` and ``ccnn.read_info`` (and the command line's ``-``)
all take their input through :func:`read_source`, so that each kind of input behaves the same
everywhere: bytes are always the contents (never a file name), a file object is read from its
current position to its end, and anything else is a path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from .errors import CCNNError

#: Bytes of a file in memory.
BytesLike = bytes | bytearray | memoryview
#: A file to read: its path, its bytes, or a binary file object (``open(..., "rb")``, ``io.BytesIO``).
Source = BytesLike | str | os.PathLike | BinaryIO


def is_in_memory(source: object) -> bool:
    """Whether ``source`` is bytes or a file object rather than a path."""
    return isinstance(source, (bytes, bytearray, memoryview)) or callable(getattr(source, "read", None))


def source_name(source: object) -> str:
    """How messages name ``source``: its path, a file object's name, or ``<bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else "<file object>"
    return os.fspath(source)  # type: ignore[arg-type]


def read_source(source: Source, error: type[CCNNError] = CCNNError) -> bytes:
    """The whole contents of ``source``; a missing or unreadable file raises ``error`` in one line.

    A file object must be binary: text-mode reads would have decoded (and so changed) the bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    read = getattr(source, "read", None)
    if callable(read):
        if isinstance(source, io.TextIOBase):
            raise error(f"{source_name(source)}: file object is in text mode; open it with 'rb'")
        try:
            data = read()
        except OSError as exc:
            raise error(f"{source_name(source)}: cannot read ({exc.strerror or exc})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise error(f"{source_name(source)}: file object is in text mode; open it with 'rb'")
        return bytes(data)
    if not isinstance(source, (str, os.PathLike)):
        raise error(f"cannot read a {type(source).__name__}: give a path, bytes or a binary file object")
    path = Path(source)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
