"""Decoding needs no torch: the API and the commands that read files work where torch cannot load.

Each check runs in a fresh interpreter whose import system refuses ``torch``, as on a machine
that installed ccnn's decoding side only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).parent / "data"

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, BlockTorch())
    """
)


def _run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    script = BLOCK_TORCH + textwrap.dedent(code) + "\nassert 'torch' not in sys.modules\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_blocker_really_blocks_torch() -> None:
    result = _run_without_torch("import torch")
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_api_decodes_every_golden_file_without_torch() -> None:
    manifest = json.loads((DATA / "golden.json").read_text())
    result = _run_without_torch(
        f"""
        import hashlib, json
        from pathlib import Path
        import numpy as np
        import ccnn
        for name, file in {sorted((n, e["file"]) for n, e in manifest.items())!r}:
            data = (Path({str(DATA)!r}) / file).read_bytes()
            info = ccnn.read_info(data)
            pixels = ccnn.decompress(data)
            digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
            print(json.dumps([name, info.version, digest]))
        """
    )
    assert result.returncode == 0, result.stderr
    decoded = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(decoded) == len(manifest) > 0
    for name, version, digest in decoded:
        entry = manifest[name]
        assert (version, digest) == (entry["format_version"], entry["pixels_sha256"]), name


def test_cli_info_and_decompress_without_torch(tmp_path: Path) -> None:
    source = DATA / "v4-default-fine-rgb.ccnn"
    out = tmp_path / "back.png"
    result = _run_without_torch(
        f"""
        from ccnn.cli import main
        assert main(["info", {str(source)!r}]) == 0
        assert main(["info", "--json", {str(source)!r}]) == 0
        assert main(["decompress", {str(source)!r}, "-o", {str(out)!r}, "--quiet"]) == 0
        """
    )
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and '"format_version": 4' in result.stdout
    manifest = json.loads((DATA / "golden.json").read_text())
    with Image.open(out) as image:
        pixels = np.asarray(image)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    assert digest == manifest[source.stem]["pixels_sha256"]


def test_encoding_without_torch_says_what_is_missing(tmp_path: Path) -> None:
    """The encoder is the one part that needs torch; without it, compress says so in one line."""
    out = tmp_path / "x.ccnn"
    result = _run_without_torch(
        f"""
        import numpy as np
        import ccnn
        from ccnn.cli import main
        try:
            ccnn.compress(np.zeros((16, 16, 3), np.uint8), "fast", steps=1)
        except ccnn.CCNNError as exc:
            print(exc)
        assert main(["compress", str(ccnn.paths.sample_path()), "-o", {str(out)!r}, "--steps", "1"]) == 1
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("encoding needs torch")
    assert result.stderr.startswith("ccnn: error: encoding needs torch")
    assert len(result.stderr.splitlines()) == 1
    assert not out.exists()


def test_version_5_alpha_and_metadata_without_torch(tmp_path: Path) -> None:
    """A version 5 file's alpha plane and metadata come back through the CLI and Pillow, torch blocked."""
    source = DATA / "v5-fast-rgba-meta.ccnn"
    out = tmp_path / "back.png"
    result = _run_without_torch(
        f"""
        from PIL import Image
        import ccnn.pillow
        from ccnn.cli import main
        assert main(["decompress", {str(source)!r}, "-o", {str(out)!r}, "--quiet"]) == 0
        with Image.open({str(source)!r}) as image:
            assert image.mode == "RGBA", image.mode
            assert image.info["icc_profile"].startswith(b"made-up ICC")
            assert image.getexif()[0x010F] == "ccn"
            image.load()
        """
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((DATA / "golden.json").read_text())
    with Image.open(out) as image:
        assert image.mode == "RGBA" and image.info["icc_profile"].startswith(b"made-up ICC")
        pixels = np.asarray(image)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    assert digest == manifest[source.stem]["pixels_sha256"]


def test_presets_and_settings_files_without_torch() -> None:
    """Listing the presets and reading a settings file are no encoding: they need no torch."""
    result = _run_without_torch(
        """
        from ccnn.cli import main
        from ccnn.settings import EncoderOptions
        from ccnn.presetinfo import preset_toml
        assert main(["presets"]) == 0
        assert EncoderOptions.from_toml(preset_toml("default")) == EncoderOptions.spelled_out("default")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "default: " in result.stdout
