"""decode(): the bytes of a .ccnn file -> uint8 pixels, with numpy and constriction only."""

from __future__ import annotations

import numpy as np

from .alpha import decode_alpha
from .container import CCNNFile, unpack
from .entropy import decode_groups, decode_latent
from .exact import restore_exact
from .spec import QuantizedTensor


def decode(data: bytes) -> np.ndarray:
    """Unpack and validate, range-decode weights and latent, restore the pixels (cropped to the image).

    An image with an alpha plane comes back with it as its last channel (LA or RGBA).
    """
    contents = unpack(data)
    size = (contents.height, contents.width)
    pixels = restore_exact(contents.spec, decode_weights(contents), decode_file_latent(contents), size)
    return with_alpha(pixels, contents)


def with_alpha(pixels: np.ndarray, contents: CCNNFile) -> np.ndarray:
    """``pixels`` with the file's alpha plane appended as the last channel, when it has one."""
    if contents.alpha_data is None:
        return pixels
    alpha = decode_alpha(contents.alpha_data, contents.height, contents.width)
    return np.concatenate([pixels, alpha[:, :, None]], axis=2)


def decode_weights(contents: CCNNFile) -> list[QuantizedTensor]:
    """The restoring network's quantized weights and biases, in file order."""
    shapes = contents.spec.parameter_shapes()
    sizes = [int(np.prod(shape)) for shape in shapes]
    ints = decode_groups(contents.weight_data, sizes, list(contents.weight_models))
    return [
        QuantizedTensor(ints=values.reshape(shape), exponent=exponent)
        for values, shape, exponent in zip(ints, shapes, contents.weight_exponents)
    ]


def decode_file_latent(contents: CCNNFile) -> np.ndarray:
    """The integer latent (L, h, w)."""
    return decode_latent(
        contents.latent_data,
        contents.latent_shape,
        list(contents.latent_models),
        contents.latent_context,
        tabled=contents.tabled,
    )
