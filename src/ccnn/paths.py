"""Where ccnn finds its own data: the one place that names a path on disk.

The package ships one small photograph, used by ``ccnn demo``, and by ``ccnn bench`` when no
folder is given. The installed package refers to nothing outside itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_path() -> Path:
    """The small photograph shipped inside the package (a 256x192 crop of Kodak's kodim23)."""
    return Path(str(resources.files("ccnn") / "data" / "sample.png"))
