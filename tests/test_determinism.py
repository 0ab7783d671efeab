"""Decoding gives the same pixels for any thread count, and the exact path matches training."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import ccnn

_DECODE = (
    "import sys, hashlib, torch, ccnn; torch.set_num_threads(int(sys.argv[1])); "
    "data = open(sys.argv[2], 'rb').read(); "
    "print(hashlib.sha256(ccnn.decompress(data).tobytes()).hexdigest())"
)


def test_decode_identical_across_thread_counts(tmp_path, encoded: ccnn.EncodeResult) -> None:
    path = tmp_path / "x.ccnn"
    path.write_bytes(encoded.data)
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DECODE, str(threads), str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for threads in (1, 2)
    }
    assert len(digests) == 1


def test_decode_repeats_bit_for_bit(encoded: ccnn.EncodeResult) -> None:
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(ccnn.decompress(encoded.data))
    finally:
        torch.set_num_threads(previous)
    assert all(np.array_equal(results[0], r) for r in results[1:])
