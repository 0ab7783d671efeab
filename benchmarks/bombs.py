"""Time and peak memory of decoding each bomb of tests/bombs.py, each in a capped subprocess.

    python benchmarks/bombs.py [--cap-kb 8000000] [--timeout 120] [--src OTHER/src] [NAME ...]

Each bomb runs under ``ulimit -v`` (so that one cannot take the machine down) and a timeout;
GNU time reports its peak resident memory.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bombs import bombs  # noqa: E402

SCRIPT = """
import sys, time
sys.path[:0] = [{src!r}, {tests!r}]
from bombs import bombs
import ccnn
data = bombs()[{name!r}]
start = time.perf_counter()
try:
    ccnn.decompress(data)
    outcome = 'decoded'
except Exception as exc:
    outcome = type(exc).__name__ + ': ' + str(exc)[:150]
print(f'{{len(data)}} bytes, {{time.perf_counter() - start:.2f}} s: {{outcome}}')
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap-kb", type=int, default=8_000_000)
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--src", default=str(ROOT / "src"), help="the ccnn sources to measure")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    for name in args.names or list(bombs()):
        code = SCRIPT.format(src=args.src, tests=str(ROOT / "tests"), name=name)
        command = (
            f"ulimit -v {args.cap_kb}; exec timeout {args.timeout} /usr/bin/time -v "
            f'{sys.executable} -c "$CODE"'
        )
        start = time.perf_counter()
        env = {"CODE": code, "PATH": "/usr/bin:/bin"}
        run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
        peak_mb = int(peak.group(1)) / 1024 if peak else float("nan")
        lines = run.stdout.strip().splitlines() or [f"exit {run.returncode}: {run.stderr.strip()[-200:]}"]
        print(f"{name}: wall {wall:.1f} s, peak RSS {peak_mb:.0f} MB; {lines[-1]}", flush=True)


if __name__ == "__main__":
    main()
