"""A short, seeded fuzz run: hostile but checksum-valid files only ever raise ccnn's own error.

benchmarks/fuzz.py runs the same mutator for as long as one likes.
"""

from __future__ import annotations

from .fuzzing import fuzz


def test_mutated_files_raise_only_ccnn_errors_and_never_hang() -> None:
    report = fuzz(seed=0, runs=3000)
    assert report.runs == 3000
    assert report.crashes == [], report.crashes[:3]
    assert report.slow == [], [seconds for seconds, _ in report.slow]
    assert 0 < report.decoded < report.runs  # some mutants still decode, most are refused
