"""The Pillow plugin: .ccnn files open (without torch) and save through PIL.Image."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ccnn
import ccnn.pillow
from ccnn.format.container import MAGIC

from .test_no_torch import _run_without_torch

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "golden.json").read_text())


def _digest(image: Image.Image) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image)).tobytes()).hexdigest()


def test_register_is_idempotent_and_registers_extension_and_mime() -> None:
    ccnn.pillow.register()
    ccnn.pillow.register()
    assert Image.ID.count("CCNN") == 1
    assert Image.EXTENSION[".ccnn"] == "CCNN"
    assert Image.MIME["CCNN"] == "image/x-ccnn"
    assert "CCNN" in Image.SAVE
    assert Image.registered_extensions()[".ccnn"] == "CCNN"


@pytest.mark.parametrize(("name", "mode"), [("v4-fast-rgb", "RGB"), ("v4-fast-gray", "L")])
def test_open_decodes_golden_files(name: str, mode: str) -> None:
    entry = GOLDEN[name]
    with Image.open(DATA / entry["file"]) as image:
        assert (image.format, image.mode, image.size) == ("CCNN", mode, (entry["width"], entry["height"]))
        assert image.get_format_mimetype() == "image/x-ccnn"
        assert image.info["ccnn_version"] == entry["format_version"]
        assert _digest(image) == entry["pixels_sha256"]


def test_open_recognises_the_magic_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    shutil.copy(DATA / "v4-fast-rgb.ccnn", path)
    with Image.open(path) as image:
        assert image.format == "CCNN"
        assert _digest(image) == GOLDEN["v4-fast-rgb"]["pixels_sha256"]
    with Image.open(io.BytesIO((DATA / "v4-fast-gray.ccnn").read_bytes())) as image:
        assert image.format == "CCNN" and image.mode == "L"


def test_open_and_load_need_no_torch() -> None:
    names = ["v4-fast-rgb", "v4-fast-gray"]
    result = _run_without_torch(
        f"""
        import hashlib, json
        import numpy as np
        from PIL import Image
        import ccnn.pillow
        for name in {names!r}:
            with Image.open({str(DATA)!r} + "/" + name + ".ccnn") as image:
                pixels = np.ascontiguousarray(np.asarray(image))
            print(json.dumps([name, image.mode, hashlib.sha256(pixels.tobytes()).hexdigest()]))
        """
    )
    assert result.returncode == 0, result.stderr
    decoded = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(name, digest) for name, _, digest in decoded] == [(n, GOLDEN[n]["pixels_sha256"]) for n in names]
    assert [mode for _, mode, _ in decoded] == ["RGB", "L"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-7],  # truncated
        lambda data: data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],  # flipped bits: checksum
        lambda data: MAGIC + bytes([99]) + data[5:],  # unknown version
        lambda data: MAGIC,  # magic only
    ],
)
def test_corrupt_file_raises_oserror_with_ccnn_message(tmp_path: Path, damage) -> None:
    path = tmp_path / "bad.ccnn"
    path.write_bytes(damage((DATA / "v4-fast-rgb.ccnn").read_bytes()))
    with pytest.raises(OSError, match="cannot read ccnn file: ") as caught, Image.open(path) as image:
        image.load()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_failed_decode_raises_oserror_from_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> np.ndarray:
        raise ccnn.FormatError("latent stream is damaged")

    with Image.open(DATA / "v4-fast-rgb.ccnn") as image:
        monkeypatch.setattr(ccnn.pillow, "decompress", broken)
        with pytest.raises(OSError, match="cannot decode ccnn file: latent stream is damaged"):
            image.load()


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_save_round_trips(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8), "RGB").convert(mode)
    path = tmp_path / "out.ccnn"
    # optimize= is Pillow's own keyword: ignored, like any that is not a ccnn setting
    source.save(path, preset="fast", quality=2, steps=20, seed=1, optimize=True)
    assert path.read_bytes()[:4] == MAGIC
    with Image.open(path) as back:
        back.load()
        assert (back.format, back.size, back.mode) == ("CCNN", (28, 20), "L" if mode == "L" else "RGB")
    again = io.BytesIO()
    source.save(again, format="CCNN", preset="fast", quality=2, steps=20, seed=1)
    assert again.getvalue() == path.read_bytes()


def test_save_refuses_bad_settings_and_modes(tmp_path: Path) -> None:
    image = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match="quality"):
        image.save(tmp_path / "a.ccnn", preset="fast", quality=99)
    with pytest.raises(ValueError, match="preset"):
        image.save(tmp_path / "b.ccnn", preset="nonsense")
    with pytest.raises(OSError, match=r"cannot write image as CCNN: .*mode CMYK"):
        Image.new("CMYK", (16, 16)).save(tmp_path / "c.ccnn", steps=1)
    assert not list(tmp_path.iterdir())  # Pillow removes the file it created
