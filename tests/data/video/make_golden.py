"""Writes the golden clip files of tests/test_video.py: two tiny version-6 files and their digests.

    python tests/data/video/make_golden.py

Run it only when the clip format changes on purpose: the digests pin the decoder's output.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import ccnn

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))

from test_video import moving_clip  # noqa: E402


def digest(frames: list[ccnn.YUVFrame]) -> str:
    hasher = hashlib.sha256()
    for frame in frames:
        for plane in frame:
            hasher.update(np.ascontiguousarray(plane).tobytes())
    return hasher.hexdigest()


def main() -> None:
    manifest = {}
    for prediction in ("latent", "pixels"):
        result = ccnn.compress_video(moving_clip(3), "fast", steps=12, seed=5, prediction=prediction)
        name = f"v6-clip-{prediction}"
        (HERE / f"{name}.ccnn").write_bytes(result.data)
        manifest[name] = {
            "file": f"{name}.ccnn",
            "frames": 3,
            "frames_sha256": digest(list(ccnn.decompress_video(result.data))),
        }
    (HERE / "golden.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
