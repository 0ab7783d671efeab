"""ccnn's name on the package index, and the ``pip install`` hints that use it.

The import name and the command are ``ccnn``, but the distribution is ``ccnn-codec``: on the
package index ``ccnn`` belongs to an unrelated project, which a hint naming ``ccnn`` would
install instead. Every hint builds its command here, so the name is written once
(pyproject.toml's ``name`` must match; a test checks it).
"""

from __future__ import annotations

#: The distribution name on the package index (``pip install ccnn-codec``).
DISTRIBUTION = "ccnn-codec"


def pip_hint(extra: str) -> str:
    """The command that installs ccnn with the optional ``extra`` (``bench``, ``ray``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
