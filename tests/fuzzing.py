"""A seeded, structure-aware mutator of .ccnn files, for tests/test_fuzz.py and benchmarks/fuzz.py.

Each mutant is a golden file (tests/data) with one to four bytes changed, flipped, deleted or
inserted, and its CRC32 recomputed, so that it gets past the checksum and reaches the header
checks, the entropy decoder and the restoring network. The same seed gives the same mutants.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ccnn

DATA = Path(__file__).parent / "data"
#: Longest a decode of a mutant may take, in seconds (inputs are under 1 MB).
SLOW_SECONDS = 2.0


def seeds() -> list[bytes]:
    """The golden files the mutants start from."""
    return [path.read_bytes() for path in sorted(DATA.glob("*.ccnn"))]


def mutants(seed: int, sources: list[bytes]) -> Iterator[bytes]:
    """An endless stream of mutants of ``sources``, each with a valid CRC."""
    rng = random.Random(seed)
    while True:
        body = bytearray(rng.choice(sources)[:-4])
        for _ in range(rng.randint(1, 4)):
            at, kind = rng.randrange(len(body)), rng.random()
            if kind < 0.5:
                body[at] = rng.randrange(256)
            elif kind < 0.7:
                body[at] ^= 1 << rng.randrange(8)
            elif kind < 0.85:
                del body[at : at + rng.randint(1, 8)]
            else:
                body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        yield bytes(body) + struct.pack("<I", zlib.crc32(body))


@dataclass
class FuzzReport:
    """What a fuzz run found: inputs tried, and those that escaped ccnn's errors or were slow."""

    runs: int = 0
    decoded: int = 0
    crashes: list[tuple[str, bytes]] = field(default_factory=list)
    slow: list[tuple[float, bytes]] = field(default_factory=list)


def fuzz(seed: int, runs: int | None = None, seconds: float | None = None) -> FuzzReport:
    """Feed mutants to ``ccnn.read_info`` and ``ccnn.decompress`` until ``runs`` or ``seconds``."""
    report = FuzzReport()
    deadline = None if seconds is None else time.monotonic() + seconds
    for data in mutants(seed, seeds()):
        if (runs is not None and report.runs >= runs) or (
            deadline is not None and time.monotonic() > deadline
        ):
            break
        report.runs += 1
        # CPU seconds, not wall: on a shared machine a decode waiting for a core is not a hang
        start = time.process_time()
        for call in (ccnn.read_info, ccnn.decompress):
            try:
                call(data)
                report.decoded += call is ccnn.decompress
            except ccnn.CCNNError:
                pass
            except Exception as exc:  # anything else escaping is a finding
                report.crashes.append((f"{call.__name__}: {type(exc).__name__}: {exc}", data))
        spent = time.process_time() - start
        if spent > SLOW_SECONDS:
            report.slow.append((spent, data))
    return report
