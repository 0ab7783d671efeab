"""Photos as cameras and phones make them: orientation, metadata, alpha, 16-bit and float inputs.

The container tests build version 5 files from a committed version 4 file (no training); the
end-to-end tests train for a few steps on tiny generated images.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin

import ccnn
import ccnn.pillow
from ccnn.cli import main
from ccnn.errors import ConfigError, FormatError, LimitError
from ccnn.format import container as bitstream
from ccnn.format.alpha import PREDICTORS, _residuals, decode_alpha, encode_alpha
from ccnn.format.decode import decode_file_latent
from ccnn.format.entropy import encode_latent
from ccnn.format.spec import Metadata
from ccnn.imageio import ConversionWarning, encode_image, read_image
from ccnn.settings import metadata_kinds

DATA = Path(__file__).parent / "data"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
ICC = bytes(range(256)) * 2  # ccnn does not interpret the profile: any bytes travel


def _exif(orientation: int) -> bytes:
    """A TIFF-structured EXIF (no Exif prefix) with an orientation and a camera make."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def _mask(height: int, width: int) -> np.ndarray:
    """A soft-edged disc: transparent outside, opaque inside, a ramp between."""
    y, x = np.mgrid[:height, :width]
    distance = np.hypot(y - height / 2, x - width / 2) - min(height, width) / 3
    return np.clip(128 - 64 * distance, 0, 255).astype(np.uint8)


# --- the alpha plane ---------------------------------------------------------------------------


@pytest.mark.parametrize("predictor", PREDICTORS)
def test_every_alpha_predictor_round_trips(predictor: int) -> None:
    plane = np.random.default_rng(predictor).integers(0, 256, (13, 17), dtype=np.uint8)
    payload = bytes([predictor]) + zlib.compress(_residuals(plane, predictor).tobytes())
    assert np.array_equal(decode_alpha(payload, 13, 17), plane)


def test_alpha_of_a_mask_is_small_and_exact() -> None:
    plane = _mask(64, 96)
    payload = encode_alpha(plane)
    assert np.array_equal(decode_alpha(payload, 64, 96), plane)
    assert len(payload) < 64 * 96 / 8  # under a bit per pixel for a soft-edged shape


def test_hostile_alpha_payloads_are_refused() -> None:
    with pytest.raises(FormatError, match="unknown alpha predictor"):
        decode_alpha(bytes([9]) + zlib.compress(bytes(4)), 2, 2)
    with pytest.raises(FormatError, match="wrong size"):
        decode_alpha(bytes([0]) + zlib.compress(bytes(3)), 2, 2)
    # a deflate bomb: 100 MB of zeros for a 2x2 plane; never inflated past 4 bytes
    with pytest.raises(FormatError, match="wrong size"):
        decode_alpha(bytes([0]) + zlib.compress(bytes(100 << 20)), 2, 2)
    with pytest.raises(FormatError, match="does not inflate"):
        decode_alpha(bytes([0]) + b"not deflate", 2, 2)


# --- the container's optional sections (versions 5 and 7) ---------------------------------------


def _current(alpha: np.ndarray | None = None, metadata: Metadata | None = None) -> bytes:
    """The v4 golden file in the current version: its latent coded again, optional sections added."""
    contents = bitstream.unpack((DATA / "v4-fast-rgb.ccnn").read_bytes())
    latent = decode_file_latent(contents)
    models, context = list(contents.latent_models), contents.latent_context
    return bitstream.pack(
        dataclasses.replace(
            contents,
            latent_data=encode_latent(latent, models, context, tabled=True),
            tabled=True,
            alpha_data=None if alpha is None else encode_alpha(alpha),
            metadata=metadata or Metadata(),
        )
    )


def test_optional_sections_carry_alpha_and_metadata_and_count() -> None:
    old = (DATA / "v4-fast-rgb.ccnn").read_bytes()
    info4 = ccnn.read_info(old)
    alpha = _mask(info4.height, info4.width)
    metadata = Metadata(icc=ICC, exif=_exif(1), xmp=XMP)
    data = _current(alpha, metadata)
    info = ccnn.read_info(data)
    assert (info.version, info.alpha, info.metadata) == (ccnn.FORMAT_VERSION, True, metadata)
    assert info.metadata_bytes == {"icc": len(ICC), "exif": len(_exif(1)), "xmp": len(XMP)}
    assert info.total_bytes == len(data)
    assert info.bpp == 8 * len(data) / (info.width * info.height)
    # the optional sections cost their payloads and 5 bytes of framing each
    optional = info.alpha_bytes + sum(info.metadata_bytes.values())
    assert len(data) - len(_current()) == optional + 4 * 5
    pixels = ccnn.decompress(data)
    assert np.array_equal(pixels[:, :, :3], ccnn.decompress(old))
    assert np.array_equal(pixels[:, :, 3], alpha)
    assert info.as_dict()["bytes"]["alpha"] == info.alpha_bytes and info.as_dict()["alpha"]


def test_without_optional_sections_a_file_decodes_as_its_v4_original() -> None:
    old = (DATA / "v4-fast-rgb.ccnn").read_bytes()
    data = _current()
    assert data[4] == ccnn.FORMAT_VERSION
    assert np.array_equal(ccnn.decompress(data), ccnn.decompress(old))
    assert not ccnn.read_info(data).alpha and ccnn.read_info(data).metadata == Metadata()


def _sections(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The prefix and header of a file, and its sections (tag, payload)."""
    (header_length,) = struct.unpack_from("<H", data, 5)
    offset = 7 + header_length
    head, sections = data[:offset], []
    while offset < len(data) - 4:
        tag, length = struct.unpack_from("<BI", data, offset)
        sections.append((tag, data[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return head, sections


def _rebuilt(head: bytes, sections: list[tuple[int, bytes]], lengths: dict[int, int] | None = None) -> bytes:
    """A file from parts with a valid checksum; ``lengths`` overrides a section's stated length."""
    body = head + b"".join(
        struct.pack("<BI", tag, (lengths or {}).get(tag, len(payload))) + payload for tag, payload in sections
    )
    return body + struct.pack("<I", zlib.crc32(body))


def test_hostile_metadata_lengths_are_refused_before_slicing() -> None:
    head, sections = _sections(_current(metadata=Metadata(icc=ICC)))
    # a length beyond the limit: refused by the length alone
    with pytest.raises(LimitError, match="ICC metadata"):
        ccnn.read_info(_rebuilt(head, sections, {5: bitstream.MAX_METADATA_BYTES + 1}))
    # a length within the limit but beyond the file: truncated
    with pytest.raises(FormatError, match="truncated"):
        ccnn.read_info(_rebuilt(head, sections, {5: 1 << 20}))
    with pytest.raises(LimitError, match="4294967295 bytes of ICC"):
        ccnn.read_info(_rebuilt(head, sections, {5: 0xFFFFFFFF}))
    # the header lists a section that is not there, or an unknown one
    listed = bytearray(head)
    listed[-1] |= 0b0100  # EXIF
    with pytest.raises(FormatError, match="missing EXIF section"):
        ccnn.read_info(_rebuilt(bytes(listed), sections))
    listed[-1] = 0x80
    with pytest.raises(LimitError, match="unknown optional sections"):
        ccnn.read_info(_rebuilt(bytes(listed), sections))


def test_bad_metadata_and_alpha_sections_are_refused() -> None:
    head, sections = _sections(_current(metadata=Metadata(exif=_exif(1))))
    sections[-1] = (6, b"Exif\x00\x00" + sections[-1][1])
    with pytest.raises(FormatError, match="TIFF header"):
        ccnn.read_info(_rebuilt(head, sections))
    sections[-1] = (6, b"")
    with pytest.raises(FormatError, match="empty EXIF"):
        ccnn.read_info(_rebuilt(head, sections))
    head, sections = _sections(_current(alpha=np.zeros((48, 64), np.uint8)))
    sections[-1] = (4, b"")
    with pytest.raises(FormatError, match="empty alpha"):
        ccnn.read_info(_rebuilt(head, sections))
    sections[-1] = (4, bytes([0]) + zlib.compress(bytes(10)))
    with pytest.raises(FormatError, match="alpha plane has the wrong size"):
        ccnn.decompress(_rebuilt(head, sections))
    with pytest.raises(ValueError, match="TIFF"):
        _current(metadata=Metadata(exif=b"Exif\x00\x00" + _exif(1)))


# --- reading images: orientation, metadata, alpha, depth ---------------------------------------


def test_exif_orientation_is_applied_and_reset_to_1(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    path = tmp_path / "portrait.png"
    Image.fromarray(pixels).save(path, exif=b"Exif\x00\x00" + _exif(6))  # 6: turn 90 degrees clockwise
    loaded = read_image(path)
    assert loaded.pixels.shape == (10, 6, 3)
    with Image.open(path) as image:
        assert np.array_equal(loaded.pixels, np.asarray(ImageOps.exif_transpose(image)))
    exif = Image.Exif()
    exif.load(loaded.metadata.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "PhoneMaker"
    assert len(loaded.metadata.exif) == len(_exif(6))  # patched in place, nothing else rewritten


def test_metadata_is_read_and_selected(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    Image.new("RGB", (8, 8)).save(path, icc_profile=ICC, exif=_exif(1), pnginfo=info)
    assert read_image(path).metadata == Metadata(icc=ICC, exif=_exif(1), xmp=XMP)
    assert read_image(path, metadata_kinds("icc,xmp")).metadata == Metadata(icc=ICC, xmp=XMP)
    assert read_image(path, metadata_kinds("none")).metadata == Metadata()


def test_metadata_choices() -> None:
    assert metadata_kinds("all") == metadata_kinds(None) == {"icc", "exif", "xmp"}
    assert metadata_kinds(["icc", "exif,xmp"]) == {"icc", "exif", "xmp"}
    assert metadata_kinds(["exif"]) == {"exif"}
    assert metadata_kinds("none") == frozenset()
    for bad in ("gps", "", ["none", "icc"]):
        with pytest.raises(ConfigError, match="metadata"):
            metadata_kinds(bad)


def test_alpha_is_kept_and_opaque_alpha_dropped(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    alpha = _mask(8, 12)
    rgba = np.dstack([rgb, alpha])
    assert np.array_equal(read_image(Image.fromarray(rgba, "RGBA")).pixels, rgba)
    la = np.dstack([rgb[:, :, 0], alpha])
    assert np.array_equal(read_image(Image.fromarray(la, "LA")).pixels, la)
    assert read_image(np.dstack([rgb, np.full((8, 12), 255, np.uint8)])).pixels.shape == (8, 12, 3)
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = palette.getpixel((0, 0))  # one colour is transparent
    assert read_image(palette).pixels.shape == (8, 12, 4)


def _png_48bit(values: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG written by hand (Pillow cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = values.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_deep_inputs_are_coded_at_8_bits_with_a_note(tmp_path: Path) -> None:
    ramp16 = (np.arange(48, dtype=np.uint32).reshape(6, 8) * 1365).astype(np.uint16)
    cases = {
        "gray16.png": (Image.fromarray(ramp16), np.rint(ramp16 / 257.0)),
        "int32.tif": (Image.fromarray(ramp16.astype(np.int32)), np.rint(ramp16 / 257.0)),
        "float.tif": (Image.fromarray(ramp16.astype(np.float32) / 65535), np.rint(ramp16 / 257.0)),
    }
    for name, (image, expected) in cases.items():
        image.save(tmp_path / name)
        with pytest.warns(ConversionWarning, match="coded at 8 bits"):
            pixels = read_image(tmp_path / name).pixels
        assert pixels.dtype == np.uint8 and pixels.shape == (6, 8, 1), name
        assert np.abs(pixels[:, :, 0].astype(int) - expected).max() <= 1, name
    rgb16 = np.stack([ramp16, ramp16[::-1], np.full_like(ramp16, 65535)], axis=2)
    (tmp_path / "rgb48.png").write_bytes(_png_48bit(rgb16))
    with pytest.warns(ConversionWarning, match="16-bit image coded at 8 bits"):
        pixels = read_image(tmp_path / "rgb48.png").pixels
    assert pixels.shape == (6, 8, 3) and pixels[0, 0, 2] == 255
    with warnings.catch_warnings():  # 8-bit inputs: no note
        warnings.simplefilter("error")
        Image.new("RGB", (4, 4)).save(tmp_path / "rgb8.png")
        read_image(tmp_path / "rgb8.png")


def test_output_formats_restore_metadata() -> None:
    pixels = np.dstack([np.zeros((4, 6, 3), np.uint8), _mask(4, 6)])
    metadata = Metadata(icc=ICC, exif=_exif(1), xmp=XMP)
    for name in ("a.png", "a.webp", "a.tif", "a.jpg"):
        rgb = name.endswith(".jpg")
        data = encode_image(pixels[:, :, :3] if rgb else pixels, name, metadata)
        with Image.open(io.BytesIO(data)) as image:
            assert image.mode == ("RGB" if rgb else "RGBA"), name
            assert image.info.get("icc_profile") == ICC, name
            assert image.getexif().get(0x010F) == "PhoneMaker", name
            assert image.info.get("xmp") == XMP, name


# --- end to end: command line and Pillow -------------------------------------------------------


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RGBA 'portrait' PNG (stored on its side) with ICC, EXIF (orientation 6) and XMP."""
    folder = tmp_path_factory.mktemp("photos")
    rgb = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    path = folder / "phone.png"
    Image.fromarray(np.dstack([rgb, _mask(16, 24)]), "RGBA").save(
        path, icc_profile=ICC, exif=_exif(6), pnginfo=info
    )
    assert main(["compress", str(path), "--preset", "fast", "--steps", "3", "--seed", "1", "--quiet"]) == 0
    return path


def test_cli_keeps_orientation_alpha_and_metadata(phone_photo: Path, capsys: pytest.CaptureFixture) -> None:
    coded = phone_photo.with_suffix(".ccnn")
    info = ccnn.read_info(coded.read_bytes())
    assert (info.width, info.height, info.alpha) == (16, 24, True)  # stood up by its orientation
    assert info.metadata.icc == ICC and info.metadata.xmp == XMP
    out = phone_photo.with_name("back.png")
    assert main(["decompress", str(coded), "-o", str(out), "--quiet"]) == 0
    with Image.open(out) as back, Image.open(phone_photo) as original:
        upright = ImageOps.exif_transpose(original)
        assert back.mode == "RGBA" and back.size == (16, 24)
        assert np.array_equal(np.asarray(back)[:, :, 3], np.asarray(upright)[:, :, 3])
        assert back.info["icc_profile"] == ICC and back.info["xmp"] == XMP
        assert back.getexif()[0x0112] == 1 and back.getexif()[0x010F] == "PhoneMaker"
    capsys.readouterr()
    assert main(["info", "--json", str(coded)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alpha"] and shown["bytes"]["icc"] == len(ICC) and shown["bytes"]["xmp"] == len(XMP)
    assert shown["bytes"]["total"] == coded.stat().st_size
    assert main(["info", str(coded)]) == 0
    text = capsys.readouterr().out
    assert "and alpha" in text and "ICC" in text and "alpha " in text


def test_cli_metadata_option(phone_photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--preset", "fast", "--steps", "2", "--seed", "1", "--quiet"]
    none = tmp_path / "none.ccnn"
    assert main(["compress", str(phone_photo), "-o", str(none), "--metadata", "none", *common]) == 0
    assert ccnn.read_info(none.read_bytes()).metadata == Metadata()
    some = tmp_path / "some.ccnn"
    args = ["--metadata", "icc", "--metadata", "xmp"]
    assert main(["compress", str(phone_photo), "-o", str(some), *args, *common]) == 0
    assert ccnn.read_info(some.read_bytes()).metadata == Metadata(icc=ICC, xmp=XMP)
    capsys.readouterr()
    assert main(["compress", str(phone_photo), "-o", str(tmp_path / "x.ccnn"), "--metadata", "gps"]) == 2
    assert capsys.readouterr().err.startswith("ccnn: error: metadata must be")


def test_cli_notes_a_16_bit_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    assert main(["compress", str(path), "--preset", "fast", "--steps", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == f"ccnn: note: {path}: 16-bit image coded at 8 bits\n"


def test_cli_refuses_alpha_in_jpeg_in_one_line(phone_photo: Path, capsys: pytest.CaptureFixture) -> None:
    out = phone_photo.with_name("back.jpg")
    assert main(["decompress", str(phone_photo.with_suffix(".ccnn")), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ccnn: error:") and "alpha" in err and err.count("\n") == 1


def test_pillow_plugin_shows_alpha_and_metadata(phone_photo: Path) -> None:
    with Image.open(phone_photo.with_suffix(".ccnn")) as image:
        assert image.mode == "RGBA"
        assert image.info["icc_profile"] == ICC and image.info["xmp"] == XMP
        assert image.getexif()[0x010F] == "PhoneMaker"
        image.load()
        assert np.asarray(image).shape == (24, 16, 4)
