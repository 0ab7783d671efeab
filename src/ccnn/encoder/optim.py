"""Adam for the encoder's few small tensors, without ``torch.optim``.

``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time a parameter group is added,
which costs 1.5-3.5 s per process (a tenth of a ``fast`` encode) for a compiler the encoder never
uses. The update below is Adam as Kingma and Ba wrote it (and as ``torch.optim.Adam`` computes
it), one multi-tensor call per group and moment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Exponential decay of the first and second moment estimates, and the denominator's epsilon:
#: Adam's usual values, which torch.optim.Adam also defaults to.
BETAS = (0.9, 0.999)
EPSILON = 1e-8


class Adam:
    """Adam over groups of tensors, each group with its own learning rate.

    ``groups`` pairs a list of tensors with their learning rate. Tensors without a gradient at
    a step are left as they are, as torch.optim does.
    """

    def __init__(self, groups: Sequence[tuple[Sequence[torch.Tensor], float]]) -> None:
        self.params = [list(tensors) for tensors, _ in groups]
        self.learning_rates = [rate for _, rate in groups]
        self.first = [[torch.zeros_like(p) for p in tensors] for tensors in self.params]
        self.second = [[torch.zeros_like(p) for p in tensors] for tensors in self.params]
        self.steps = [[0] * len(tensors) for tensors in self.params]

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``), so the next backward pass starts afresh."""
        for tensors in self.params:
            for tensor in tensors:
                tensor.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every tensor that has a gradient."""
        beta1, beta2 = BETAS
        for tensors, rate, first, second, steps in zip(
            self.params, self.learning_rates, self.first, self.second, self.steps
        ):
            live = [i for i, tensor in enumerate(tensors) if tensor.grad is not None]
            if not live:
                continue
            for i in live:
                steps[i] += 1
            # tensors of one group are created together and, having all a gradient or none at
            # every step, share a step count; the bias corrections use each one's own count
            counts = {steps[i] for i in live}
            for count in counts:
                chosen = [i for i in live if steps[i] == count]
                params = [tensors[i] for i in chosen]
                grads = [tensors[i].grad for i in chosen]
                m = [first[i] for i in chosen]
                v = [second[i] for i in chosen]
                torch._foreach_lerp_(m, grads, 1.0 - beta1)
                torch._foreach_mul_(v, beta2)
                torch._foreach_addcmul_(v, grads, grads, 1.0 - beta2)
                bias1 = 1.0 - beta1**count
                bias2 = 1.0 - beta2**count
                denominator = torch._foreach_sqrt(v)
                torch._foreach_div_(denominator, math.sqrt(bias2))
                torch._foreach_add_(denominator, EPSILON)
                torch._foreach_addcdiv_(params, m, denominator, -rate / bias1)
