"""Hyperparameter search: the encoder settings that give the best rate-distortion on some images.

Per-image training makes every setting's effect image-dependent and costly to guess, so
``ccnn tune`` measures: each trial encodes the given images at a few quality levels under one
point of a search space read off :mod:`ccnn.settings`, and is scored by its BD-rate against
JPEG on the same images. Optuna proposes the points and keeps the study in SQLite, so a search
resumes after an interruption; trials run here, on local worker processes or on Ray, through
:mod:`ccnn.batch.runners`. The result is a settings file for ``ccnn compress --config``.

Python (needs the ``tune`` extra)::

    from ccnn.tune import TuneRequest, run_tune
    summary = run_tune(TuneRequest(("a.png", "b.png"), "fast", steps=300), trials=8)

Command line: ``ccnn tune IMAGES...`` (:mod:`ccnn.tune.command`); the README's
"Hyperparameter search".
"""

from __future__ import annotations

from .run import OptunaMissingError, StudyMismatchError, TuneRequest, TuneSummary, run_tune
from .space import SearchSpace, search_space

__all__ = [
    "OptunaMissingError",
    "SearchSpace",
    "StudyMismatchError",
    "TuneRequest",
    "TuneSummary",
    "run_tune",
    "search_space",
]
