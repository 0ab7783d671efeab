"""Safe output files: written to a temporary name, then moved into place in one step.

A reader never sees half a file, an interrupted run leaves nothing behind, and an existing
file is replaced only when the caller asked for it.

Outputs that are not regular files (``/dev/null``, ``/dev/stdout``, a FIFO, a terminal) are
the exception: renaming a temporary over them would replace the device node or pipe itself
(as root, ``/dev/null`` would become a plain file), so they are opened and written in place,
and need no ``--force`` since writing to them destroys nothing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import CCNNError, OutputExistsError

#: Paths that name an already open file of this process (its standard streams, its descriptors).
_DESCRIPTOR_PATHS = ("/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")


def writes_in_place(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is written directly rather than through a temporary and a rename.

    True for an existing output that is not a regular file (device, FIFO, socket) and for the
    names of this process's own descriptors: ``/dev/stdout`` redirected to a file resolves to a
    regular file, but renaming over it would replace the link in ``/dev``, not the output.
    """
    text = os.fspath(path)
    if text.startswith(_DESCRIPTOR_PATHS):
        return True
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_writable(path: str | os.PathLike[str], force: bool, inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse early (before any long work) an output that exists or would replace an input.

    An output written in place (see :func:`writes_in_place`) only has to be openable.
    """
    out = Path(path)
    if writes_in_place(out):
        if not os.access(out, os.W_OK):
            raise CCNNError(f"{out}: cannot write (permission denied)")
        return out
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
    meantime, so an existing file is never clobbered even by a concurrent writer. A device,
    FIFO or descriptor path is written in place instead (:func:`writes_in_place`).
    """
    out = Path(path)
    if writes_in_place(out):
        write_in_place(out, data)
        return out
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


def write_in_place(path: Path, data: bytes) -> None:
    """Open ``path`` (which exists: a device, a FIFO, a descriptor) and write ``data`` into it.

    No ``O_CREAT``, so nothing new appears in ``/dev``; a regular file reached through a
    descriptor path (``-o /dev/stdout > out.ccnn``) is truncated as the shell's ``>`` would.
    """
    flags = os.O_WRONLY
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.stat(path).st_mode):
            flags |= os.O_TRUNC
    fd = os.open(path, flags)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
