"""The encoder's Adam matches torch.optim.Adam, without importing torch's compiler."""

from __future__ import annotations

import subprocess
import sys

import torch

from ccnn.encoder.optim import Adam


def test_adam_matches_torch_optim() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), (2, 2, 3)]
    ours = [torch.randn(shape, generator=generator) for shape in shapes]
    theirs = [tensor.clone() for tensor in ours]
    rates = (0.01, 0.003)
    optimizer = Adam([(ours[:2], rates[0]), (ours[2:], rates[1])])
    groups = [{"params": theirs[:2], "lr": rates[0]}, {"params": theirs[2:], "lr": rates[1]}]
    reference = torch.optim.Adam(groups)
    for step in range(6):
        grads = [torch.randn(shape, generator=generator) for shape in shapes]
        for a, b, grad in zip(ours, theirs, grads):
            # a tensor without a gradient at a step is left alone by both
            a.grad = None if step == 2 and a is ours[1] else grad.clone()
            b.grad = None if step == 2 and b is theirs[1] else grad.clone()
        optimizer.step()
        reference.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_training_does_not_import_the_compiler() -> None:
    """torch.optim imports torch._dynamo (seconds per process); the encoder must not need it."""
    code = (
        "import sys, numpy as np, ccnn; "
        "ccnn.compress_image(np.full((16, 16, 3), 90, np.uint8), 'fast', steps=2, seed=0); "
        "print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
