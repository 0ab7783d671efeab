"""decode(): the bytes of a .ccnn file -> uint8 pixels, with numpy and constriction only."""

from __future__ import annotations

import numpy as np

from .container import unpack
from .entropy import decode_groups, decode_latent
from .exact import restore_exact
from .spec import QuantizedTensor


def decode(data: bytes) -> np.ndarray:
    """Unpack and validate, range-decode weights and latent, run the exact restoring network, crop."""
    contents = unpack(data)
    spec = contents.spec
    shapes = spec.parameter_shapes()
    sizes = [int(np.prod(shape)) for shape in shapes]
    ints = decode_groups(contents.weight_data, sizes, list(contents.weight_models))
    tensors = [
        QuantizedTensor(ints=values.reshape(shape), exponent=exponent)
        for values, shape, exponent in zip(ints, shapes, contents.weight_exponents)
    ]
    latent = decode_latent(
        contents.latent_data, contents.latent_shape, list(contents.latent_models), contents.latent_context
    )
    pixels = restore_exact(spec, tensors, latent)
    return np.ascontiguousarray(pixels[: contents.height, : contents.width])
