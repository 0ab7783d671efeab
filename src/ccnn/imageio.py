"""Reading and writing images, and the pixel modes ccnn accepts.

ccnn codes 8-bit images with one (gray) or three (RGB) channels, and an alpha plane beside
them. Other modes are converted when that loses nothing a user would miss, and refused
otherwise:

* ``L`` and ``RGB`` are coded as they are; ``1`` (bilevel) becomes ``L``.
* ``P`` (palette) is expanded to ``RGB`` (or ``RGBA``, see below); ``YCbCr`` becomes ``RGB``.
* ``LA``/``RGBA``/``PA``: the alpha channel is kept (coded losslessly); one that is fully
  opaque is dropped, since it says nothing.
* 16-bit, 32-bit integer and float images (``I;16``, ``I``, ``F``, 48-bit RGB) are coded at 8
  bits, with a note (:class:`ConversionWarning`) saying so: ccnn's network and format are 8-bit.
* ``CMYK`` and other modes are refused: convert them to RGB first.

A photo is turned upright by its EXIF orientation (as viewers show it), and its metadata (ICC
profile, EXIF with the orientation reset to 1, XMP) is read to travel in the file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError
from .files import write_atomic
from .format.container import EXIF_HEADERS
from .format.spec import MAX_PIXELS, MAX_SIDE, METADATA_KINDS, Metadata
from .sources import Source, is_in_memory, read_source, source_name

#: An image to encode: a path, the bytes of an image file, a binary file object, a PIL image or an array.
ImageLike = Source | Image.Image | np.ndarray


#: EXIF's orientation tag (1: upright; 2..8: mirrored and/or rotated).
ORIENTATION = 0x0112
#: JPEG's prefix of the EXIF in an APP1 segment, which Pillow keeps in ``info["exif"]``.
EXIF_PREFIX = b"Exif\x00\x00"
#: TIFF's tag of an XMP packet.
XMP_TAG = 700
#: Modes Pillow opens for images of more than 8 bits per sample, coded at 8 bits.
DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class ConversionWarning(UserWarning):
    """An input was converted in a way the user may want to know about (``ccnn: note: ...``)."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as ccnn codes it: uint8 H x W x C pixels (C: 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA; an alpha channel is the last) and the metadata that travels with it."""

    pixels: np.ndarray
    metadata: Metadata = field(default_factory=Metadata)


def _check_size(width: int, height: int, source: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{source}: empty image ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(
            f"{source}: {width}x{height} is larger than ccnn accepts "
            f"({MAX_SIDE} per side, {MAX_PIXELS // (1 << 20)} megapixels)"
        )


def _note(message: str) -> None:
    warnings.warn(message, ConversionWarning, stacklevel=4)


def _deep_to_8bit(image: Image.Image, source: str) -> Image.Image:
    """An ``I;16``, ``I`` or ``F`` image as ``L``: 16-bit and integer values scaled from 0..65535,
    float values from 0..1 when they all lie there (else taken as 0..255), rounded and clipped."""
    values = np.asarray(image)
    if image.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.min() >= 0.0 and values.max() <= 1.0 else 1.0
        kind = "floating-point"
    else:
        values = values.astype(np.float64)
        scale = 255.0 / 65535.0
        kind = "16-bit" if image.mode.startswith("I;16") else "32-bit integer"
    _note(f"{source}: {kind} image coded at 8 bits")
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


def _from_pil(image: Image.Image, source: str) -> np.ndarray:
    _check_size(image.width, image.height, source)
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "YCbCr":
        image = image.convert("RGB")
    elif mode in DEEP_MODES:
        image = _deep_to_8bit(image, source)
    elif mode not in ("L", "RGB", "LA", "RGBA"):
        raise ImageError(
            f"{source}: pixel mode {mode} is not supported "
            "(ccnn codes 8-bit gray or RGB, with or without alpha; convert to RGB first)"
        )
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() == 255:  # fully opaque: the alpha says nothing
            image = image.convert("L" if image.mode == "LA" else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def _exif_upright(exif: bytes) -> bytes:
    """TIFF-structured ``exif`` with IFD0's orientation set to 1, every other byte kept.

    The pixels are turned upright on input, so the orientation that travels must say so;
    patching the one value (rather than re-serialising with Pillow) keeps maker notes and
    offsets intact.
    """
    try:
        order = "<" if exif[:2] == b"II" else ">"
        (ifd,) = struct.unpack_from(order + "I", exif, 4)
        (count,) = struct.unpack_from(order + "H", exif, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", exif, entry)
            if tag == ORIENTATION and kind == 3 and n == 1:  # one SHORT, stored in the entry
                patched = bytearray(exif)
                struct.pack_into(order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except struct.error:
        pass
    return exif


def _read_metadata(image: Image.Image) -> Metadata:
    """ICC profile, EXIF (TIFF structure, orientation reset to 1) and XMP of an opened image."""
    icc = image.info.get("icc_profile")
    exif = image.info.get("exif")
    if isinstance(exif, (bytes, bytearray)):
        exif = bytes(exif)
        if exif.startswith(EXIF_PREFIX):
            exif = exif[len(EXIF_PREFIX) :]
        exif = _exif_upright(exif) if exif[:4] in EXIF_HEADERS else None
    else:
        exif = None
    xmp = image.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return Metadata(
        icc=bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None,
        exif=exif or None,
        xmp=bytes(xmp) if isinstance(xmp, (bytes, bytearray)) and xmp else None,
    )


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone's portrait photo stands up)."""
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, struct.error):  # unreadable EXIF: leave it be
        return image
    if orientation in range(2, 9):
        return ImageOps.exif_transpose(image)
    return image


def _is_deep(image: Image.Image) -> bool:
    """Whether Pillow reads ``image`` from more than 8 bits per sample into an 8-bit mode
    (a 48-bit RGB PNG opens as ``RGB``); only its tiles say so, before it is loaded."""
    return image.mode not in DEEP_MODES and any(
        ";16" in str(_rawmode(tile)) for tile in getattr(image, "tile", None) or ()
    )


def _read_pil(image: Image.Image, source: str, kinds: frozenset[str], deep: bool) -> LoadedImage:
    if deep:
        _note(f"{source}: 16-bit image coded at 8 bits")
    return LoadedImage(_from_pil(_upright(image), source), _read_metadata(image).only(kinds))


def _rawmode(tile: object) -> object:
    """The raw mode of one of Pillow's tiles (``RGB;16B`` for a 48-bit PNG), before loading."""
    args = getattr(tile, "args", None)
    if args is None and isinstance(tile, tuple) and len(tile) > 3:
        args = tile[3]
    return args[0] if isinstance(args, tuple) and args else args


def read_image(image: ImageLike, metadata: frozenset[str] = frozenset(METADATA_KINDS)) -> LoadedImage:
    """Read ``image`` (see :data:`ImageLike`): upright pixels, alpha, and ``metadata``'s kinds.

    An array has no metadata; its channels are 1 (gray), 2 (gray and alpha), 3 (RGB) or 4
    (RGBA).
    """
    if isinstance(image, np.ndarray):
        return LoadedImage(_from_array(image))
    if isinstance(image, Image.Image):
        return _read_pil(image, "image", metadata, _is_deep(image))
    if is_in_memory(image):  # bytes or a file object: read once, opened from memory
        source = source_name(image)
        opened_from: Path | io.BytesIO = io.BytesIO(read_source(image, ImageError))
    else:
        path = opened_from = Path(image)  # type: ignore[arg-type]
        source = str(path)
        if not path.exists():
            raise ImageError(f"{source}: no such file")
        if path.is_dir():
            raise ImageError(f"{source}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # ccnn's own size limit speaks for large images, in one line (_check_size)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened_from) as opened:
                _check_size(opened.width, opened.height, source)
                frames = getattr(opened, "n_frames", 1)
                if frames > 1:
                    raise ImageError(
                        f"{source}: has {frames} frames (animation or pages); ccnn codes one still "
                        "image, so save the frame you want as its own file first"
                    )
                deep = _is_deep(opened)
                opened.load()
                return _read_pil(opened, source, metadata, deep)
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not an image file ccnn can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{source}: cannot read image ({exc})") from None


def load_image(image: ImageLike) -> np.ndarray:
    """``image`` (see :data:`ImageLike`) as uint8 H x W x C, C in 1..4 (:class:`LoadedImage`)."""
    return read_image(image, frozenset()).pixels


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"array images must be uint8, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(
            f"array images must be H x W or H x W x C with C in 1..4 (alpha last), not {array.shape}"
        )
    _check_size(array.shape[1], array.shape[0], "array")
    if array.shape[2] in (2, 4) and array[:, :, -1].min() == 255:  # fully opaque alpha
        array = array[:, :, :-1]
    return np.ascontiguousarray(array)


def split_alpha(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The colour channels (1 or 3) of H x W x C ``pixels``, and their alpha plane (None if C is 1 or 3)."""
    if pixels.shape[2] in (1, 3):
        return pixels, None
    return np.ascontiguousarray(pixels[:, :, :-1]), np.ascontiguousarray(pixels[:, :, -1])


_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def to_pil(pixels: np.ndarray) -> Image.Image:
    """A PIL image of a uint8 H x W x C array: C = 1, 2, 3, 4 give modes L, LA, RGB, RGBA."""
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels, mode=_MODES[pixels.shape[2]])


def metadata_options(fmt: str, metadata: Metadata) -> dict:
    """Pillow's save keywords that store ``metadata`` in format ``fmt`` (PNG, JPEG, WEBP, TIFF).

    Each format wraps EXIF its own way: JPEG wants the ``Exif\\0\\0`` prefix, WebP the bare
    TIFF structure; PNG and TIFF accept either. XMP goes where Pillow can put it: ``xmp=`` for
    JPEG and WebP, an iTXt chunk for PNG, tag 700 for TIFF. Other formats get none.
    """
    options: dict = {}
    if fmt not in ("PNG", "JPEG", "WEBP", "TIFF", "MPO"):
        return options
    if metadata.icc:
        options["icc_profile"] = metadata.icc
    if fmt == "TIFF":  # EXIF and XMP both become tags of the image's directory
        tags = Image.Exif()
        if metadata.exif:
            tags.load(EXIF_PREFIX + metadata.exif)
        if metadata.xmp:
            tags[XMP_TAG] = metadata.xmp
        if len(tags):
            options["exif"] = tags
        return options
    if metadata.exif:
        options["exif"] = metadata.exif if fmt == "WEBP" else EXIF_PREFIX + metadata.exif
    if metadata.xmp:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", metadata.xmp.decode("utf-8", "replace"), zip=True)
            options["pnginfo"] = info
        else:
            options["xmp"] = metadata.xmp
    return options


def encode_image(pixels: np.ndarray, path: str | os.PathLike[str], metadata: Metadata | None = None) -> bytes:
    """The bytes of ``pixels`` in the format named by ``path``'s extension (lossless where it can),
    with ``metadata`` where the format stores it."""
    suffix = Path(path).suffix.lower()
    # PNG, BMP, JPEG, GIF and PPM come with preinit(); init() imports every other plugin of
    # Pillow, which takes longer than decoding a Kodak image, so only when the name needs it
    Image.preinit()
    if suffix not in Image.EXTENSION:
        Image.init()
    formats = Image.EXTENSION
    if suffix not in formats:
        raise ImageError(f"{path}: unknown image extension {suffix!r} (use .png, .bmp, .tif, ...)")
    fmt = formats[suffix]
    buffer = io.BytesIO()
    options: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        options = {"lossless": True}
    if metadata is not None:
        options.update(metadata_options(fmt, metadata))
    try:
        to_pil(pixels).save(buffer, format=fmt, **options)
    except OSError as exc:
        if pixels.shape[2] in (2, 4) and "mode" in str(exc):
            raise ImageError(
                f"{path}: {fmt} cannot store the image's alpha channel (use .png, .webp or .tif)"
            ) from None
        raise ImageError(f"{path}: cannot write {fmt} ({exc})") from None
    except (KeyError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write {fmt} ({exc})") from None
    return buffer.getvalue()


def save_image(pixels: np.ndarray, path: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``pixels`` to ``path`` atomically, in the format its extension names."""
    return write_atomic(path, encode_image(pixels, path), force=force)
