"""The ratio RUL model (kosmos_fl.ml.ratio): heads in hours, quantile loss on log(RUL/elapsed)."""

from __future__ import annotations

import numpy as np
import torch

from kosmos_fl.ml.ratio import RulRatio
from kosmos_fl.ml.train import predict_heads, seed_everything, train_epochs


def _data(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """RUL = 0.5 x elapsed when a health flag is off, 0.1 x elapsed when it is on."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0.1, 5.0, n)
    flag = rng.integers(0, 2, n).astype(float)
    rul = t * np.where(flag > 0, 0.1, 0.5)
    x = np.stack([np.log(t + 0.05), flag], axis=1).astype(np.float32)
    return x, rul.astype(np.float32)


def test_heads_are_hours_never_negative_and_ordered_after_training() -> None:
    seed_everything(0)
    x, y = _data()
    model = RulRatio(2, point_quantile=0.5, bounds=(0.1, 0.9))
    train_epochs(model, x, y, epochs=150, lr=0.1, batch_size=400, seed=0)
    heads = predict_heads(model, x)
    assert heads.shape == (len(x), 3)
    assert np.all(heads >= 0)
    # learnt the multiple of elapsed time from the flag: relative error of the point head is small
    rel = np.abs(heads[:, 0] - y) / np.maximum(y, 1e-3)
    assert np.median(rel) < 0.1
    assert np.mean(heads[:, 1] <= heads[:, 2] + 1e-6) > 0.95


def test_forward_is_the_point_head() -> None:
    model = RulRatio(3)
    x = torch.randn(5, 3)
    assert torch.equal(model(x), model.predict_heads(x)[:, 0])
