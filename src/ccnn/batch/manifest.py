"""The batch manifest: one CSV row per input, kept up to date while the batch runs.

The manifest is what makes a batch resumable. A row records what became of one input (status,
size, bpp, PSNR, seconds, error) and the SHA-256 of the input and of the output that was
written, so that a rerun can tell a finished output from a missing, foreign or changed one.

Writes are arranged so that a run killed at any instant leaves a manifest that is never
*wrong* about an output:

* while the batch runs, each result is appended as one whole line and flushed *before* its
  output file is moved into place; a kill in between leaves a row whose output is missing,
  which a rerun simply redoes (never an output without its row);
* at the start and at the end the file is compacted (one row per input, sorted) and replaced
  atomically through :func:`ccnn.files.write_atomic`;
* a torn last line, which only a crash in the middle of a write could leave, is ignored on
  reading.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO

from ..files import write_atomic

MANIFEST_NAME = "manifest.csv"

#: Columns, in order. ``input`` and ``output`` are paths relative to IN_DIR and OUT_DIR with
#: forward slashes; ``settings`` is a fingerprint of the resolved codec settings.
FIELDS: tuple[str, ...] = (
    "input",
    "output",
    "status",
    "bytes",
    "bpp",
    "psnr",
    "seconds",
    "steps",
    "threads",
    "host",
    "sha256",
    "input_sha256",
    "settings",
    "error",
)

Row = dict[str, str]


def _line(row: Row) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, FIELDS, extrasaction="ignore", lineterminator="\n").writerow(
        {field: row.get(field, "") for field in FIELDS}
    )
    return buffer.getvalue()


def read_manifest(path: Path) -> dict[str, Row]:
    """The rows of the manifest at ``path`` by input name (the last row of an input wins).

    A missing file gives no rows; a torn last line (no newline at the end) and rows with the
    wrong number of fields are dropped, since they can only come from an interrupted write.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows: dict[str, Row] = {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return rows
    for values in reader:
        if len(values) != len(header):
            continue
        row = dict(zip(header, values))
        if row.get("input"):
            rows[row["input"]] = row
    return rows


class Manifest:
    """The manifest of one running batch: compacted on open and close, appended in between."""

    def __init__(self, path: Path, rows: dict[str, Row]) -> None:
        self.path = path
        self.rows = dict(rows)
        self._handle: IO[str] | None = None

    def _compact(self) -> None:
        text = _line({field: field for field in FIELDS}) + "".join(
            _line(self.rows[name]) for name in sorted(self.rows)
        )
        write_atomic(self.path, text.encode("utf-8"), force=True)

    def open(self) -> Manifest:
        """Write the compacted manifest and start appending to it."""
        self._compact()
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        return self

    def record(self, row: Row) -> None:
        """Add or replace the row of ``row["input"]``; on disk before this returns."""
        self.rows[row["input"]] = row
        if self._handle is not None:
            self._handle.write(_line(row))
            self._handle.flush()

    def close(self) -> None:
        """Stop appending and leave one compacted row per input."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._compact()

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
