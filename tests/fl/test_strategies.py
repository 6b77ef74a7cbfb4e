"""Strategy construction from config: the required strategies build, bad params are explained."""

from __future__ import annotations

import pytest

from kosmos_fl.errors import ConfigError
from kosmos_fl.fl.strategies import build


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("FedAvg", {}),
        ("FedProx", {"proximal_mu": 0.1}),
        ("FedAdam", {"eta": 0.01}),
        ("FedMedian", {}),
        ("FedTrimmedAvg", {"beta": 0.2}),
        ("Krum", {"num_malicious_nodes": 0}),
    ],
)
def test_required_strategies_build(name: str, params: dict) -> None:
    strategy = build(name, params, num_clients=3, min_fit_clients=3)
    assert type(strategy).__name__ == name
    assert strategy.fraction_evaluate == 0.0  # evaluation is central, on the server
    assert strategy.min_train_nodes == 3


def test_unknown_parameter_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="proximal_mu"):
        build("FedProx", {"mu": 0.1}, num_clients=3, min_fit_clients=3)


def test_managed_parameters_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match="fraction_train"):
        build("FedAvg", {"fraction_train": 0.5}, num_clients=3, min_fit_clients=3)


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match="unknown Flower strategy"):
        build("FedMagic", {}, num_clients=3, min_fit_clients=3)
