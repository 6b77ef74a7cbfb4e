"""The bearing MLP with interval heads: its own loss is used, the heads learn quantiles."""

from __future__ import annotations

import numpy as np
import torch

from kosmos_fl.ml.models import RulMlp, pinball_loss
from kosmos_fl.ml.train import get_weights, predict, predict_heads, seed_everything, set_weights, train_epochs


def test_pinball_loss_is_minimised_by_the_quantile() -> None:
    y = torch.arange(101, dtype=torch.float32)
    losses = {c: float(pinball_loss(torch.full_like(y, c), y, 0.9)) for c in (50.0, 90.0, 99.0)}
    assert min(losses, key=losses.__getitem__) == 90.0


def test_heads_learn_an_interval_that_covers_the_nominal_share() -> None:
    torch.set_num_threads(1)
    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2000, 3)).astype(np.float32)
    y = (2.0 + x[:, 0] + rng.normal(scale=0.5, size=2000)).astype(np.float32)
    model = RulMlp(3, hidden=(16,), dropout=0.0, quantiles=(0.1, 0.9), target_scale=2.0)
    with torch.no_grad():
        before = float(model.training_loss(torch.from_numpy(x), torch.from_numpy(y)))
    train_epochs(model, x, y, epochs=30, lr=3e-3, batch_size=64, seed=0)
    with torch.no_grad():
        after = float(model.training_loss(torch.from_numpy(x), torch.from_numpy(y)))
    assert after < 0.5 * before
    heads = predict_heads(model, x)
    assert heads.shape == (2000, 3)
    np.testing.assert_allclose(heads[:, 0], predict(model, x), rtol=1e-5)  # forward = point head
    inside = np.mean((y >= heads[:, 1]) & (y <= heads[:, 2]))
    assert 0.7 < inside < 0.9  # nominal 80 %
    assert np.sqrt(np.mean((heads[:, 0] - (2.0 + x[:, 0])) ** 2)) < 0.2


def test_weights_round_trip_with_heads() -> None:
    a, b = RulMlp(5), RulMlp(5)
    set_weights(b, get_weights(a))
    x = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)
    np.testing.assert_allclose(predict_heads(a, x), predict_heads(b, x))


def test_single_output_models_give_one_head() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    assert predict_heads(model, np.zeros((3, 4), dtype=np.float32)).shape == (3, 1)
