"""The little TOML that encoder settings files need: reading any file, writing flat tables.

Reading is the standard library's ``tomllib`` (``tomli``, its backport, on Python 3.10).
Writing covers what :meth:`ccnn.settings.EncoderOptions.to_toml` produces (top-level keys and
flat tables of booleans, numbers, strings and arrays of them, with comments), so no writer
dependency is needed. Floats are written with ``repr``, Python's shortest exact spelling, so a
value read back is the same float: the files round-trip exactly. Nothing here knows ccnn's
settings; :mod:`ccnn.settings` maps them.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConfigFileError

#: A line of a written table: (key, value, comment). A value of None writes the key as a
#: comment (``# key =``), for a setting left to the preset; an empty key writes only the comment.
Line = tuple[str, Any, str]


def parse(text: str, source: str) -> dict[str, Any]:
    """The TOML document ``text`` as a dict; a syntax error is a ConfigFileError naming ``source``.

    The reader is imported here, not with the module: ``import ccnn`` (and decoding) must not
    need ``tomli`` on Python 3.10, where only settings files do.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{source}: not a valid TOML file ({exc})") from None


def value_text(value: Any) -> str:
    """``value`` spelled as a TOML value (booleans, numbers, strings, arrays of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # also text enums; JSON's escapes are TOML basic-string escapes
        return json.dumps(str(value.value if hasattr(value, "value") else value), ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write(header: Sequence[str], tables: Sequence[tuple[str | None, Sequence[Line]]]) -> str:
    """A TOML document: ``header`` comment lines, then each (table name or None for the top, lines)."""
    out = [f"# {line}".rstrip() for line in header]
    for name, lines in tables:
        out.append("")
        if name is not None:
            out.append(f"[{name}]")
        for key, value, comment in lines:
            if comment:
                out.extend(f"# {part}".rstrip() for part in comment.splitlines())
            if not key:
                continue
            out.append(f"# {key} =" if value is None else f"{key} = {value_text(value)}")
    return "\n".join(out) + "\n"
