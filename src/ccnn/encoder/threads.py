"""How many threads torch trains with: set here, importing torch only when training needs it.

The thread count is part of what decides the output bytes on the CPU (float reductions split
differently), so every place that trains sets it explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def set_torch_threads(count: int) -> None:
    """Train with ``count`` threads from now on in this process."""
    import torch

    torch.set_num_threads(count)


def torch_thread_count() -> int:
    """The threads torch trains with now in this process."""
    import torch

    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Train with ``count`` threads inside the block, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
