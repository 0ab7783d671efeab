"""Range coding of integer symbols is lossless and close to the model's ideal code length."""

from __future__ import annotations

import numpy as np

from ccnn.entropy import GroupModel, decode_groups, encode_groups, estimate_bits


def test_groups_roundtrip_and_rate() -> None:
    rng = np.random.default_rng(0)
    groups = [
        np.round(rng.laplace(0.0, 2.0, size=5000)).astype(np.int32),
        np.round(rng.laplace(30.0, 0.3, size=777)).astype(np.int32),
        np.full(100, 4, dtype=np.int32),  # a constant group costs nothing
    ]
    models = [GroupModel.stored(0.0, 2.0, g.min(), g.max()) for g in groups[:2]]
    models.append(GroupModel.stored(4.0, 1.0, 4, 4))
    data = encode_groups(groups, models)
    decoded = decode_groups(data, [g.size for g in groups], models)
    for original, back in zip(groups, decoded):
        assert np.array_equal(original, back)
    ideal = sum(estimate_bits(g, m) for g, m in zip(groups, models))
    assert 8 * len(data) <= ideal * 1.01 + 64
