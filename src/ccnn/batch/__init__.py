"""Folders of images: compression and decompression on a local process pool or a Ray cluster.

Per-image training makes encoding costly, so a photo collection is compressed in parallel,
one image per worker, resumably (a manifest with checksums lets a rerun skip finished
outputs) and safely (outputs are atomic; a bad input is recorded and the rest go on).

Python::

    from ccnn.batch import run_batch
    options = ccnn.EncoderOptions("fast", seed=1)
    summary = run_batch("compress", "photos", "photos-ccnn", options=options)
    summary = run_batch("compress", "photos", "out", options=options, ray="auto")

Command line: ``ccnn batch compress|decompress IN_DIR OUT_DIR`` (:mod:`ccnn.batch.command`, docs/cluster.md).
"""

from __future__ import annotations

from .manifest import FIELDS, MANIFEST_NAME, read_manifest
from .run import DECOMPRESS_FORMATS, BatchSummary, run_batch
from .runners import RAY_INSTALL_HINT, RayMissingError

__all__ = [
    "DECOMPRESS_FORMATS",
    "FIELDS",
    "MANIFEST_NAME",
    "RAY_INSTALL_HINT",
    "BatchSummary",
    "RayMissingError",
    "read_manifest",
    "run_batch",
]
