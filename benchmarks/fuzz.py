"""A long fuzz run of ccnn's decoding side, with tests/fuzzing.py's seeded mutator.

    python benchmarks/fuzz.py --seconds 3600 [--seed 1]

Prints the executions, how many mutants decoded, and every finding (an exception other than
ccnn's own error, or a decode taking more than 2 s of CPU) with the mutant in hex, so it can be replayed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default: 60)")
    parser.add_argument("--seed", type=int, default=1, help="the mutator's seed (default: 1)")
    args = parser.parse_args()
    report = fuzz(args.seed, seconds=args.seconds)
    for message, data in report.crashes:
        print(f"crash: {message}\n  {data.hex()}")
    for seconds, data in report.slow:
        print(f"slow: {seconds:.2f} s\n  {data.hex()}")
    print(
        f"seed {args.seed}, {args.seconds:g} s: {report.runs} mutants, {report.decoded} decoded, "
        f"{len(report.crashes)} crashes, {len(report.slow)} over 2 s of CPU"
    )
    return 1 if report.crashes or report.slow else 0


if __name__ == "__main__":
    sys.exit(main())
