"""Make the golden .ccnn files of tests/data and their manifest, golden.json.

Each entry of ENTRIES is a small crop of the bundled sample (src/ccnn/data/sample.png),
encoded with a short, seeded training by the ccnn that runs this script, which must write the
entry's format version. The script writes ``<name>.ccnn``, decodes it with the same ccnn and
records in golden.json the file's sha256, the decoded pixels' sha256 and how it was made.
tests/test_golden.py then checks that the current decoder gives the same pixels.

Current version (run from the repository root, with ccnn installed)::

    python tests/data/make_golden.py            # every entry of ccnn.FORMAT_VERSION

Older versions come from the commits named in ENTRIES, run against this script and the
current sample (tests/data/README.md)::

    git worktree add /tmp/ccnn-v1 56ecaaa
    PYTHONPATH=/tmp/ccnn-v1/src python tests/data/make_golden.py

``--check`` writes nothing: it decodes every manifest file that the running ccnn can read and
compares the file and pixel hashes (run it under old code to see that the old decoder agrees).

Only the public API (``ccnn.compress``, ``ccnn.decompress``, ``ccnn.read_info``,
``ccnn.FORMAT_VERSION``) is used, which is the same at every commit named here. Training on
the CPU is not bit-for-bit the same on every machine, so a rerun may write other bytes (and a
new manifest entry); decoding is bit-exact.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ccnn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SAMPLE = REPO / "src" / "ccnn" / "data" / "sample.png"
MANIFEST = HERE / "golden.json"

#: A time budget far beyond the step budget, so that the steps bind and the seed reproduces
#: the training schedule (the schedules advance by whichever budget is further spent).
SECONDS = 100000.0

#: name -> how it is made. ``commit`` is the commit whose encoder wrote it (None: the current
#: code); ``crop`` is (top, left, height, width) in the sample; ``gray`` converts the crop with
#: PIL's ``convert("L")``.
ENTRIES: dict[str, dict] = {
    # version 1: no spatial context (integer latent coded per channel)
    "v1-paper-rgb": dict(version=1, commit="56ecaaa", preset="paper", crop=(64, 96, 48, 64), steps=300),
    "v1-fast-rgb": dict(version=1, commit="56ecaaa", preset="fast", crop=(40, 60, 66, 90), steps=300),
    # version 2: one level of spatial context, f16 context parameters
    "v2-paper-rgb": dict(version=2, commit="9c8a165", preset="paper", crop=(64, 96, 48, 64), steps=300),
    "v2-fast-rgb": dict(version=2, commit="9c8a165", preset="fast", crop=(40, 60, 66, 90), steps=300),
    # version 3: context levels byte, two levels, f16 context parameters
    "v3-paper-rgb": dict(version=3, commit="6946ba7", preset="paper", crop=(64, 96, 48, 64), steps=300),
    "v3-fast-rgb": dict(version=3, commit="6946ba7", preset="fast", crop=(40, 60, 66, 90), steps=300),
    "v3-default-fine-rgb": dict(
        version=3, commit="6946ba7", preset="default", crop=(96, 128, 64, 96), steps=300, quality=9
    ),
    # version 4: cross-channel context term, int8 context parameters
    "v4-paper-rgb": dict(version=4, commit="150e05b", preset="paper", crop=(64, 96, 48, 64), steps=300),
    "v4-fast-rgb": dict(version=4, commit="150e05b", preset="fast", crop=(64, 96, 48, 64), steps=300),
    "v4-fast-odd-rgb": dict(version=4, commit="150e05b", preset="fast", crop=(40, 60, 66, 90), steps=300),
    "v4-fast-gray": dict(
        version=4, commit="150e05b", preset="fast", crop=(64, 96, 48, 64), steps=300, gray=True
    ),
    # quality 9 on a 64x96 crop is quality 3's network; the crop is detailed (block-mean PSNR
    # 16.2 dB < 20), so the default preset picks the stride-4 `fine` network
    "v4-default-fine-rgb": dict(
        version=4, commit="150e05b", preset="default", crop=(96, 128, 64, 96), steps=300, quality=9
    ),
    # version 5: optional sections; a soft-edged alpha mask and made-up ICC, EXIF and XMP
    "v5-fast-rgba-meta": dict(
        version=5,
        commit="6f9ab86",
        preset="fast",
        crop=(64, 96, 48, 64),
        steps=300,
        alpha=True,
        metadata=True,
    ),
    # version 7: the context phases coded with tables (version 6 is a clip: tests/data/video)
    "v7-fast-rgb": dict(version=7, commit=None, preset="fast", crop=(64, 96, 48, 64), steps=300),
    "v7-fast-odd-rgb": dict(version=7, commit=None, preset="fast", crop=(40, 60, 66, 90), steps=300),
    "v7-default-fine-rgb": dict(
        version=7, commit=None, preset="default", crop=(96, 128, 64, 96), steps=300, quality=9
    ),
    "v7-fast-rgba-meta": dict(
        version=7, commit=None, preset="fast", crop=(64, 96, 48, 64), steps=300, alpha=True, metadata=True
    ),
}
#: The metadata of entries with ``metadata``: ccnn does not interpret it, so any bytes do
#: (the EXIF is a TIFF structure with one tag, Make = "ccn").
ICC = b"made-up ICC profile " * 8
EXIF = b"II*\x00\x08\x00\x00\x00\x01\x00\x0f\x01\x02\x00\x04\x00\x00\x00ccn\x00\x00\x00\x00\x00"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'

SEED = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixels_sha256(pixels: np.ndarray) -> str:
    return sha256(np.ascontiguousarray(pixels).tobytes())


def alpha_mask(height: int, width: int) -> np.ndarray:
    """A soft-edged disc: transparent outside, opaque inside, a four-pixel ramp between."""
    y, x = np.mgrid[:height, :width]
    distance = np.hypot(y - height / 2, x - width / 2) - min(height, width) / 3
    return np.clip(128 - 64 * distance, 0, 255).astype(np.uint8)


def crop_of(entry: dict) -> np.ndarray | Image.Image:
    """The entry's pixels: an array, or a PIL image when it carries alpha or metadata."""
    top, left, height, width = entry["crop"]
    with Image.open(SAMPLE) as image:
        rgb = image.convert("RGB")
    rgb = rgb.crop((left, top, left + width, top + height))
    if entry.get("alpha") or entry.get("metadata"):
        image = rgb
        if entry.get("alpha"):
            image = Image.fromarray(np.dstack([np.asarray(rgb), alpha_mask(height, width)]), "RGBA")
        if entry.get("metadata"):
            image.info.update(icc_profile=ICC, exif=EXIF, xmp=XMP)
        return image
    if entry.get("gray"):
        return np.ascontiguousarray(np.asarray(rgb.convert("L"))[:, :, None])
    return np.ascontiguousarray(np.asarray(rgb))


def code_commit() -> tuple[str, bool]:
    """The commit of the running ccnn's source tree, and whether its src/ has changes."""
    src = Path(ccnn.__file__).resolve().parent
    head = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return head, bool(status)


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def make(name: str, entry: dict, commit: str, dirty: bool) -> dict:
    pixels = crop_of(entry)
    options = dict(steps=entry["steps"], seconds=SECONDS, seed=SEED)
    if entry.get("quality") is not None:
        options["quality"] = entry["quality"]
    data = ccnn.compress(pixels, entry["preset"], **options)
    info = ccnn.read_info(data)
    if info.version != entry["version"]:
        raise SystemExit(f"{name}: the running ccnn wrote version {info.version}, not {entry['version']}")
    decoded = ccnn.decompress(data)
    (HERE / f"{name}.ccnn").write_bytes(data)
    top, left, height, width = entry["crop"]
    return {
        "file": f"{name}.ccnn",
        "format_version": info.version,
        "width": info.width,
        "height": info.height,
        "channels": info.channels,
        "alpha": info.alpha,
        "bytes": len(data),
        "file_sha256": sha256(data),
        "pixels_sha256": pixels_sha256(decoded),
        "latent_mode": info.spec.latent_mode,
        "latent_stride": info.spec.latent_stride,
        "made_with": {
            "commit": commit + ("+dirty" if dirty else ""),
            "preset": entry["preset"],
            "quality": entry.get("quality"),
            "steps": entry["steps"],
            "seconds": SECONDS,
            "seed": SEED,
            "crop": {"top": top, "left": left, "height": height, "width": width},
            "gray": bool(entry.get("gray")),
            "alpha": bool(entry.get("alpha")),
            "metadata": bool(entry.get("metadata")),
            "torch": torch.__version__,
            "constriction": importlib.metadata.version("constriction"),
        },
    }


def check() -> int:
    """Decode every manifest file the running ccnn reads; 1 if any hash differs."""
    failed = 0
    for name, record in sorted(load_manifest().items()):
        data = (HERE / record["file"]).read_bytes()
        if record["format_version"] > ccnn.FORMAT_VERSION:
            print(f"{name}: version {record['format_version']} is newer than this ccnn, skipped")
            continue
        ok_file = sha256(data) == record["file_sha256"]
        ok_pixels = pixels_sha256(ccnn.decompress(data)) == record["pixels_sha256"]
        failed += not (ok_file and ok_pixels)
        print(f"{name}: file {'ok' if ok_file else 'DIFFERS'}, pixels {'ok' if ok_pixels else 'DIFFER'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", help="entries to make (default: every entry of this ccnn's version)"
    )
    parser.add_argument(
        "--check", action="store_true", help="decode the manifest's files and compare, write nothing"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"ccnn from {ccnn.__file__}, format version {ccnn.FORMAT_VERSION}", file=sys.stderr)
    if args.check:
        return check()
    names = args.names or [n for n, e in ENTRIES.items() if e["version"] == ccnn.FORMAT_VERSION]
    commit, dirty = code_commit()
    manifest = load_manifest()
    for name in names:
        entry = ENTRIES[name]
        if entry["commit"] is not None and not commit.startswith(entry["commit"]):
            raise SystemExit(f"{name} is made by commit {entry['commit']}, but ccnn runs from {commit}")
        manifest[name] = make(name, entry, commit, dirty)
        print(f"{name}: {manifest[name]['bytes']} bytes, pixels {manifest[name]['pixels_sha256'][:16]}")
        MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
