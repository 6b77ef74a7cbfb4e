"""The 2021 models: shapes, parameter counts, weight round-trips and that training learns."""

from __future__ import annotations

import numpy as np
import pytest

from kosmos_fl.ml.models import Cnn2021, Ffnn2021, count_parameters
from kosmos_fl.ml.train import get_weights, pack_weights, predict, seed_everything, set_weights, train_epochs


def test_cnn_shape_and_layers() -> None:
    model = Cnn2021()
    x = np.random.default_rng(0).normal(size=(4, 129, 21, 2)).astype(np.float32)
    assert predict(model, x).shape == (4,)
    convs = [m for m in model.modules() if m.__class__.__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [10, 10]
    assert all(c.kernel_size == (6, 6) for c in convs)
    dense = [m for m in model.modules() if m.__class__.__name__ == "Linear"]
    assert [d.out_features for d in dense] == [512, 512, 1]


def test_weights_roundtrip_and_shape_check() -> None:
    a, b = Ffnn2021(), Ffnn2021()
    set_weights(b, get_weights(a))
    x = np.random.default_rng(1).normal(size=(8, 54)).astype(np.float32)
    np.testing.assert_allclose(predict(a, x), predict(b, x))
    bad = get_weights(a)
    bad[0] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        set_weights(b, bad)


def test_training_reduces_loss_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(256, 54)).astype(np.float32)
    y = (x[:, 0] * 2 + 1).astype(np.float32)

    def run() -> tuple[float, float, np.ndarray]:
        seed_everything(3)
        model = Ffnn2021(dropout=0.0)
        before = float(np.mean((predict(model, x) - y) ** 2))
        train_epochs(model, x, y, epochs=30, lr=3e-3, batch_size=32, seed=3)
        after = float(np.mean((predict(model, x) - y) ** 2))
        return before, after, predict(model, x[:5])

    before, after, p1 = run()
    _, _, p2 = run()
    assert after < before * 0.2
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    assert count_parameters(Ffnn2021()) > 54 * 512


def test_packed_weights_roundtrip_and_size_check() -> None:
    a, b = Cnn2021(), Cnn2021()
    tensors = get_weights(a)
    (packed,) = pack_weights(tensors)
    assert packed.ndim == 1 and packed.size == sum(t.size for t in tensors)
    set_weights(b, [packed])
    for x, y in zip(get_weights(b), tensors, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="packed weights have shape"):
        set_weights(b, [packed[:-1]])
    # a per-coordinate mean of packed vectors is the packed per-tensor mean (what FedAvg relies on)
    c = get_weights(Cnn2021())
    mean_packed = (packed + pack_weights(c)[0]) / 2
    assert np.allclose(mean_packed, pack_weights([(x + y) / 2 for x, y in zip(tensors, c, strict=True)])[0])
