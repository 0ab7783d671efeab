"""A Pillow plugin: ``.ccnn`` files open and save through ``PIL.Image`` like any other format.

::

    import ccnn.pillow  # registers the plugin (ccnn.pillow.register() does the same, again harmlessly)
    from PIL import Image

    with Image.open("photo.ccnn") as image:  # decodes with numpy and constriction, no torch
        image.save("photo.png")
    Image.open("photo.png").save("photo.ccnn", preset="fast", quality=4, seed=1)  # encoding needs torch

Opening reads the header only (:func:`ccnn.read_info`, which also checks the whole file's
structure and checksum); the pixels are decoded on ``load()``. A damaged file raises ``OSError``
with ccnn's message. An image with alpha opens as ``LA`` or ``RGBA``; its ICC profile, EXIF and
XMP are in ``info["icc_profile"]``, ``info["exif"]`` (so ``getexif()`` works) and ``info["xmp"]``.
Saving accepts the settings of :class:`ccnn.EncoderOptions`, ``preset`` and ``metadata``
(``"all"``, ``"none"`` or kinds, as ``ccnn compress --metadata``) as keywords; the image's
``info`` is the metadata saved. Pillow's other keywords are ignored.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from . import compress_image, decompress, read_info
from .errors import CCNNError, ConfigError, ImageError
from .format.container import MAGIC
from .imageio import EXIF_PREFIX
from .settings import EncoderOptions, option_infos

FORMAT = "CCNN"
DESCRIPTION = "ccnn neural image codec"
EXTENSION = ".ccnn"
MIME = "image/x-ccnn"
DECODER = "ccnn"

_registered = False


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class CCNNImageFile(ImageFile.ImageFile):
    """A ``.ccnn`` file opened by Pillow: the size and mode come from its header."""

    format = FORMAT
    format_description = DESCRIPTION

    def _open(self) -> None:
        assert self.fp is not None
        self.fp.seek(0)
        data = self.fp.read()
        if not _accept(data):
            raise SyntaxError("not a ccnn file")
        try:
            info = read_info(data)
        except CCNNError as exc:
            # the magic matched, so no other plugin will read it: say what is wrong with it
            raise OSError(f"cannot read ccnn file: {exc}") from None
        self._size = (info.width, info.height)
        self._mode = ("L" if info.channels == 1 else "RGB") + ("A" if info.alpha else "")
        self.info["ccnn_version"] = info.version
        # where Pillow's own plugins put them, so that getexif() and save(icc_profile=...) work
        metadata = info.metadata
        if metadata.icc:
            self.info["icc_profile"] = metadata.icc
        if metadata.exif:
            self.info["exif"] = EXIF_PREFIX + metadata.exif
        if metadata.xmp:
            self.info["xmp"] = metadata.xmp
        tile = (DECODER, (0, 0, *self.size), 0, None)
        tile_type = getattr(ImageFile, "_Tile", None)  # Pillow >= 11 names the fields
        self.tile = [tile_type(*tile) if tile_type is not None else tile]


class CCNNDecoder(ImageFile.PyDecoder):
    """Decodes the whole file at once (the format has no partial decoding)."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        assert self.fd is not None
        self.fd.seek(0)
        try:
            pixels = decompress(self.fd.read())
        except CCNNError as exc:
            raise OSError(f"cannot decode ccnn file: {exc}") from None
        if (pixels.shape[1], pixels.shape[0]) != (self.state.xsize, self.state.ysize):
            raise OSError("cannot decode ccnn file: decoded size differs from the header")
        self.set_as_raw(np.ascontiguousarray(pixels).tobytes(), self.mode)
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    params: dict[str, Any] = im.encoderinfo
    settings = {name: params[name] for name in option_infos() if params.get(name) is not None}
    try:
        options = EncoderOptions.create(params.get("preset") or "default", **settings)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    try:
        result = compress_image(im, options=options, metadata=params.get("metadata") or "all")
    except ImageError as exc:
        raise OSError(f"cannot write image as {FORMAT}: {exc}") from None
    except CCNNError as exc:
        raise OSError(str(exc)) from None
    fp.write(result.data)


def register() -> None:
    """Register the plugin with Pillow: opener, decoder, save handler, extension and MIME type."""
    global _registered
    if _registered:
        return
    Image.register_open(FORMAT, CCNNImageFile, _accept)
    Image.register_decoder(DECODER, CCNNDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    _registered = True


register()
