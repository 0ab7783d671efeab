"""Torch for the encoder: imported only when training needs it, and its thread count.

The thread count is part of what decides the output bytes on the CPU (float reductions split
differently), so every place that trains sets it explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from ..errors import CCNNError


def require_torch() -> ModuleType:
    """torch, or a one-line error saying that encoding needs it (decoding does not)."""
    try:
        import torch
    except ImportError as exc:
        raise CCNNError(
            f"encoding needs torch, which cannot be imported here ({exc}); decoding works without it"
        ) from None
    return torch


def set_torch_threads(count: int) -> None:
    """Train with ``count`` threads from now on in this process."""
    require_torch().set_num_threads(count)


def torch_thread_count() -> int:
    """The threads torch trains with now in this process."""
    return require_torch().get_num_threads()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Train with ``count`` threads inside the block, then restore the previous count."""
    torch = require_torch()
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
