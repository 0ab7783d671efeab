"""Safe output files: written to a temporary name, then moved into place in one step.

A reader never sees half a file, an interrupted run leaves nothing behind, and an existing
file is replaced only when the caller asked for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import CCNNError, OutputExistsError


def check_writable(path: str | os.PathLike[str], force: bool, inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse early (before any long work) an output that exists or would replace an input."""
    out = Path(path)
    resolved = out.resolve()
    for source in inputs:
        if source.resolve() == resolved:
            raise OutputExistsError(f"{out}: output would overwrite the input")
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a directory")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists (use -f/--force to overwrite)")
    _check_folder(out)
    return out


def _check_folder(out: Path) -> None:
    """Refuse an output whose folder cannot be written, before the work that would fill it."""
    folder = out.parent
    while not folder.exists():  # write_atomic creates the missing folders
        folder = folder.parent
    if not folder.is_dir():
        raise CCNNError(f"{out}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CCNNError(f"{out}: cannot write in {folder} ({exc.strerror or exc})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    Without ``force`` the final step is a hard link, which fails if ``path`` appeared in the
    meantime, so an existing file is never clobbered even by a concurrent writer.
    """
    out = Path(path)
    directory = out.parent if str(out.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a new file gets the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp_name, out)
        else:
            try:
                os.link(tmp_name, out)
            except FileExistsError:
                raise OutputExistsError(f"{out}: already exists (use -f/--force to overwrite)") from None
            except OSError:  # file systems without hard links
                if out.exists():
                    raise OutputExistsError(f"{out}: already exists (use -f/--force to overwrite)") from None
                os.replace(tmp_name, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return out
