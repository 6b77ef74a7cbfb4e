"""The 2021 KOSMoS networks are exact: layer structure and parameter counts of the 2021 Keras
models, Keras masking semantics of the 2021 LSTM, and the 2021 losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kosmos_fl.ml.losses import loss_by_name
from kosmos_fl.ml.models import Cnn2021, CnnPadded, Ffnn2021, KerasLstm, Lstm2021Kosmos, count_parameters
from kosmos_fl.usecases import load_usecase


def test_cnn_is_the_2021_network_with_its_parameter_count() -> None:
    model = Cnn2021()
    # Keras build_cnn of 2021 on (129, 21, 2): conv 730 + bn 20 + conv 3,610 + bn 20 + dense
    # 143,872 (280 inputs) + 262,656 + 513 trainable parameters
    assert count_parameters(model) == 730 + 20 + 3610 + 20 + 280 * 512 + 512 + 512 * 512 + 512 + 513
    assert count_parameters(model) == 411_421
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.padding == (0, 0) for c in convs)  # 'valid', as Keras' default
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.features)  # no activation in the conv blocks
    assert model(torch.zeros(2, 129, 21, 2)).shape == (2,)
    assert count_parameters(CnnPadded()) == 1_087_261  # the earlier variant, under its own name


def test_bearing_usecase_cnn_and_ffnn_options() -> None:
    assert isinstance(load_usecase("BearingUseCase", {"model": "cnn"}).build_model(), Cnn2021)
    assert isinstance(load_usecase("BearingUseCase", {"model": "cnn_padded"}).build_model(), CnnPadded)
    default = load_usecase("BearingUseCase", {"model": "ffnn"}).build_model()
    assert count_parameters(default) == 54 * 512 + 512 + 512 * 512 + 512 + 513  # 2021: 2 x 512
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in default.modules())
    small = load_usecase(
        "BearingUseCase",
        {"model": "ffnn", "ffnn_features": ["mean", "kurtosis"], "ffnn_layers": 3, "ffnn_units": 16,
         "ffnn_dropout": False},
    ).build_model()  # fmt: skip
    linear = [m for m in small.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(4, 16), (16, 16), (16, 16), (16, 1)]
    assert not any(isinstance(m, torch.nn.Dropout) for m in small.modules())
    with pytest.raises(Exception, match="unknown feature"):
        load_usecase("BearingUseCase", {"model": "ffnn", "ffnn_features": ["loudness"]})


def test_lstm2021_parameters_are_the_keras_ones() -> None:
    model = Lstm2021Kosmos(16)
    # Keras LSTM(256) on 16 features: 4 * 256 * (16 + 256 + 1), Dense(1): 257
    assert count_parameters(model) == 4 * 256 * (16 + 256 + 1) + 257
    assert [type(m).__name__ for m in model.children()] == ["KerasLstm", "Dropout", "Linear"]
    assert model.dropout.p == pytest.approx(0.1)


def test_lstm2021_masks_padded_steps_like_keras() -> None:
    torch.manual_seed(0)
    model = Lstm2021Kosmos(3, units=8).eval()
    real = torch.randn(1, 4, 3)
    padded = torch.cat([torch.zeros(1, 6, 4), torch.cat([real, torch.ones(1, 4, 1)], dim=-1)], dim=1)
    alone = torch.cat([real, torch.ones(1, 4, 1)], dim=-1)
    # left padding (masked steps) changes nothing: the state starts at the first real step
    torch.testing.assert_close(model(padded), model(alone))
    # a masked step in the middle is skipped, not fed as -99
    lstm: KerasLstm = model.lstm
    x = torch.randn(1, 3, 3)
    keep = torch.tensor([[True, False, True]])
    torch.testing.assert_close(lstm(x, keep), lstm(x[:, [0, 2]], torch.ones(1, 2, dtype=torch.bool)))


def test_keras_lstm_cell_uses_the_2021_sigmoid_activation() -> None:
    torch.manual_seed(1)
    cell = KerasLstm(2, 3, activation="sigmoid")
    x = torch.randn(1, 1, 2)
    z = x[:, 0] @ cell.kernel + cell.bias
    i, _f, g, o = z.chunk(4, dim=1)  # f acts on the zero initial cell state
    c = torch.sigmoid(i) * torch.sigmoid(g)
    expected = torch.sigmoid(o) * torch.sigmoid(c)
    torch.testing.assert_close(cell(x, torch.ones(1, 1, dtype=torch.bool)), expected)


def test_2021_losses() -> None:
    pred, y = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
    rmse = float(np.sqrt((0 + 1 + 4) / 3))
    assert float(loss_by_name("RMSE")(pred, y)) == pytest.approx(rmse, rel=1e-5)
    assert float(loss_by_name("RootMeanSquaredError")(pred, y)) == pytest.approx(rmse, rel=1e-5)
    assert float(loss_by_name("MSE")(pred, y)) == pytest.approx(5 / 3)
    assert float(loss_by_name("WeightedRootMeanSquaredError")(pred, y)) == pytest.approx(2 * rmse, rel=1e-5)
    d = (y - pred).numpy()
    score = np.sum(np.where(d < 0, np.exp(d / 13), np.exp(d / 10)) - 1)
    assert float(loss_by_name("ScoringFunction")(pred, y)) == pytest.approx(score, rel=1e-5)
    for name in ("Huber", "MSLE"):
        assert float(loss_by_name(name)(pred, y)) > 0
    with pytest.raises(ValueError, match="unknown loss"):
        loss_by_name("Hinge")


def test_ffnn_keeps_its_default_interface() -> None:
    assert count_parameters(Ffnn2021(n_features=4, hidden=8)) == 4 * 8 + 8 + 8 * 8 + 8 + 9
    assert isinstance(Ffnn2021(input_norm=True).net[0], torch.nn.BatchNorm1d)
