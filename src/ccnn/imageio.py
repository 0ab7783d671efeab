"""Reading and writing images, and the pixel modes ccnn accepts.

ccnn codes 8-bit images with one (gray) or three (RGB) channels. Other modes are converted
when that loses nothing a user would miss, and refused otherwise:

* ``L`` and ``RGB`` are coded as they are; ``1`` (bilevel) becomes ``L``.
* ``P`` (palette) is expanded to ``RGB`` (or ``RGBA``, see below); ``YCbCr`` becomes ``RGB``.
* ``LA``/``RGBA``/``PA``: an alpha channel that is fully opaque is dropped; a real (non-opaque)
  alpha channel is refused, since ccnn does not code transparency.
* 16-bit, 32-bit, float and ``CMYK`` images are refused: convert them to 8-bit RGB first.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError
from .files import write_atomic
from .format.spec import MAX_PIXELS, MAX_SIDE
from .sources import Source, is_in_memory, read_source, source_name

#: An image to encode: a path, the bytes of an image file, a binary file object, a PIL image or an array.
ImageLike = Source | Image.Image | np.ndarray


def _check_size(width: int, height: int, source: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{source}: empty image ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(
            f"{source}: {width}x{height} is larger than ccnn accepts "
            f"({MAX_SIDE} per side, {MAX_PIXELS // (1 << 20)} megapixels)"
        )


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
    elif mode not in ("L", "RGB", "LA", "RGBA"):
        raise ImageError(
            f"{source}: pixel mode {mode} is not supported "
            "(ccnn codes 8-bit gray or RGB; convert to 8-bit RGB first)"
        )
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ImageError(
                f"{source}: the image has transparency, which ccnn does not code "
                "(flatten it onto a background first)"
            )
        image = image.convert("L" if image.mode == "LA" else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def load_image(image: ImageLike) -> np.ndarray:
    """Return ``image`` (see :data:`ImageLike`) as uint8 H x W x C with C in {1, 3}."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image, "image")
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
                opened.load()
                return _from_pil(opened, source)
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not an image file ccnn can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{source}: cannot read image ({exc})") from None


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"array images must be uint8, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ImageError(f"array images must be H x W, H x W x 1 or H x W x 3, not {array.shape}")
    _check_size(array.shape[1], array.shape[0], "array")
    return np.ascontiguousarray(array)


def to_pil(pixels: np.ndarray) -> Image.Image:
    """A PIL image of a uint8 H x W x C array (C = 1 gives mode L)."""
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels, mode="RGB")


def encode_image(pixels: np.ndarray, path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``pixels`` in the format named by ``path``'s extension (lossless where it can)."""
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
    try:
        to_pil(pixels).save(buffer, format=fmt, **options)
    except (OSError, KeyError, ValueError) as exc:
        raise ImageError(f"{path}: cannot write {fmt} ({exc})") from None
    return buffer.getvalue()


def save_image(pixels: np.ndarray, path: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``pixels`` to ``path`` atomically, in the format its extension names."""
    return write_atomic(path, encode_image(pixels, path), force=force)
