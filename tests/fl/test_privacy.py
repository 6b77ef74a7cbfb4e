"""Secure aggregation / differential privacy settings: validation in one line, and the privacy
accounting checked against a closed-form computation that does not use Flower."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.config import load_server_config
from kosmos_fl.config.privacy import SecureAggregationConfig, one_round_epsilon
from kosmos_fl.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_server_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_secure_aggregation_true_means_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "num_clients: 4\nsecure_aggregation: true\n")
    assert cfg.secure_aggregation == SecureAggregationConfig()
    assert load(tmp_path, "secure_aggregation: false\n").secure_aggregation is None
    assert load(tmp_path, "num_clients: 3\n").secure_aggregation is None


def test_secure_aggregation_resolves_like_flower() -> None:
    sa = SecureAggregationConfig()
    assert sa.resolve(3) == (3, 2)
    assert sa.resolve(4) == (4, 3)
    assert sa.resolve(10) == (10, 7)
    assert sa.quorum(4) == 3
    assert SecureAggregationConfig(min_clients=4).quorum(4) == 4
    assert SecureAggregationConfig(num_shares=5, reconstruction_threshold=3).resolve(8) == (5, 3)


def test_differential_privacy_loads(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "differential_privacy: {noise_multiplier: 1.1, clipping_norm: 0.5, max_epsilon: 20}\n",
    )
    dp = cfg.differential_privacy
    assert (dp.noise_multiplier, dp.clipping_norm, dp.target_delta, dp.max_epsilon) == (1.1, 0.5, 1e-5, 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "num_clients: 2\nsecure_aggregation: true\n",
            "config key 'secure_aggregation': Value error, needs num_clients >= 3",
        ),
        (
            "num_clients: 4\nstrategy: {name: Krum}\nsecure_aggregation: true\n",
            "config key 'secure_aggregation': Value error, works with strategy FedAvg only",
        ),
        (
            "num_clients: 4\nsecure_aggregation: {num_shares: 3, reconstruction_threshold: 3}\n",
            "config key 'secure_aggregation': Value error, reconstruction_threshold must be less than "
            "num_shares",
        ),
        (
            "num_clients: 4\nsecure_aggregation: {num_shares: 5}\n",
            "config key 'secure_aggregation': Value error, num_shares=5 is more than num_clients=4",
        ),
        (
            "num_clients: 4\nsecure_aggregation: {shares: 3}\n",
            "config key 'secure_aggregation.shares' is not known",
        ),
        (
            "differential_privacy: {clipping_norm: 1}\n",
            "config key 'differential_privacy.noise_multiplier': Field required",
        ),
        (
            "differential_privacy: {noise_multiplier: 1, clipping_norm: -1}\n",
            "config key 'differential_privacy.clipping_norm': Input should be greater than 0",
        ),
        (
            "differential_privacy: {noise_multiplier: 1, clipping_norm: 1, target_delta: 1.5}\n",
            "config key 'differential_privacy.target_delta': Input should be less than 1",
        ),
        (
            "differential_privacy: {noise_multiplier: 1, clipping_norm: 1, max_epsilon: 0.5}\n",
            "config key 'differential_privacy': Value error, max_epsilon=0.5 is below the cost of a "
            "single round",
        ),
        (
            "strategy: {name: FedMedian}\ndifferential_privacy: {noise_multiplier: 1, clipping_norm: 1}\n",
            "config key 'differential_privacy': Value error, works with strategy FedAvg only",
        ),
        (
            "num_clients: 4\nsecure_aggregation: true\n"
            "differential_privacy: {noise_multiplier: 1, clipping_norm: 1}\n",
            "config key 'differential_privacy': Value error, cannot be combined with secure_aggregation",
        ),
    ],
)
def test_invalid_settings_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    msg = error(tmp_path, text)
    assert msg.startswith(expected), msg


def test_env_override_enables_secure_aggregation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNACONF_secure_aggregation", "true")
    cfg = load(tmp_path, "num_clients: 3\n")
    assert cfg.secure_aggregation is not None


def _closed_form_epsilon(noise: float, rounds: int, delta: float) -> float:
    """Gaussian mechanism without sampling: RDP(alpha) = rounds * alpha / (2 noise^2) (exact), turned
    into (epsilon, delta)-DP with the conversion of Balle et al. 2020 (Prop. 12), minimised over a
    dense grid of orders alpha."""
    alpha = np.concatenate([np.linspace(1.01, 10, 9000), np.linspace(10, 1000, 99000)])
    rdp = rounds * alpha / (2 * noise**2)
    eps = rdp + np.log((alpha - 1) / alpha) - (math.log(delta) + np.log(alpha)) / (alpha - 1)
    return float(eps.min())


@pytest.mark.parametrize(
    ("noise", "rounds", "delta"), [(1.0, 1, 1e-5), (1.0, 3, 1e-5), (0.7, 10, 1e-6), (4.0, 50, 1e-5)]
)
def test_flower_accountant_matches_closed_form(noise: float, rounds: int, delta: float) -> None:
    from flwr.serverapp import PrivacyConfig, RdpAccountant
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent, NeighboringRelation, SamplingMethod

    # exactly how kosmos_fl.fl.rounds.privacy configures it: 3 clients, every one in every round (q = 1)
    acc = RdpAccountant(
        PrivacyConfig(
            target_delta=delta,
            population_size=3,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    for _ in range(rounds):
        acc.compose(GaussianPrivacyEvent(noise_multiplier=noise, sample_size=3, population_size=3))
    flower = acc.get_privacy_spent().epsilon
    exact = _closed_form_epsilon(noise, rounds, delta)
    # the library minimises over a fixed list of orders, so it is never below the dense minimum and
    # only slightly above it
    assert exact - 1e-6 <= flower <= exact * 1.02 + 1e-6, (flower, exact)
    if rounds == 1:
        assert one_round_epsilon(noise, delta) == pytest.approx(flower, rel=1e-12)
