"""Differential privacy for KOSMoS sessions: Flower's central DP with fixed clipping + accountant.

The server clips each client's update (trained minus global weights) to L2 norm ``clipping_norm``,
averages the clipped updates with *equal* weights, and adds Gaussian noise with standard deviation
``noise_multiplier * clipping_norm / num_clients`` (Flower's
``DifferentialPrivacyServerSideFixedClipping``). Flower's ``RdpAccountant`` (package
``dp-accounting``) composes one Gaussian mechanism per round.

What the numbers assume (see docs/SECURITY.md):

- client-level ("user-level") DP: neighbouring federations differ by one *whole client* (all of
  its data), not by one sample; a sample-level guarantee is at least as strong but not computed;
- every client takes part in every round, so there is no privacy amplification by sampling
  (Flower's ``no-amplification`` accounting, sampling rate q = 1);
- the server is trusted to clip and add the noise honestly: the guarantee protects the released
  models (every global model after a round, and the registered one) against whoever sees them,
  not the individual updates against the server.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import Message

from kosmos_fl.fl.session import SessionSpec

log = logging.getLogger("kosmos_fl.privacy")

#: Metric every reply gets on the server before aggregation: accounting needs equal weights.
WEIGHT_KEY = "dp-weight"


def build_strategy(spec: SessionSpec) -> Any:
    """FedAvg (equal client weights) wrapped in server-side fixed clipping with an RDP accountant."""
    from flwr.serverapp import PrivacyConfig, RdpAccountant
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg
    from flwr.supercore.privacy_accounting import NeighboringRelation, SamplingMethod

    dp = spec.differential_privacy
    assert dp is not None
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=dp.target_delta,
            population_size=spec.num_clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
            max_epsilon=dp.max_epsilon,
        )
    )
    inner = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=spec.num_clients,
        min_available_nodes=spec.num_clients,
        weighted_by_key=WEIGHT_KEY,
    )

    class _EqualWeights(DifferentialPrivacyServerSideFixedClipping):  # type: ignore[misc]
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            return super().aggregate_train(server_round, equal_weights(list(replies)))

    return _EqualWeights(
        inner, dp.noise_multiplier, dp.clipping_norm, spec.num_clients, accountant=accountant
    )


def equal_weights(replies: list[Message]) -> list[Message]:
    """Give every reply the same aggregation weight (the accountant's sensitivity assumes it)."""
    for msg in replies:
        msg.content.metric_records["metrics"][WEIGHT_KEY] = 1
    return replies


def spent(strategy: Any) -> dict[str, float]:
    """Epsilon and delta spent so far (MLflow metrics ``dp_epsilon``, ``dp_delta``)."""
    used = strategy.privacy_spent()
    if used is None:
        return {}
    return {
        "dp_epsilon": float(used.epsilon),
        "dp_delta": float(used.delta),
        "dp_releases": float(used.num_releases),
    }


def params(spec: SessionSpec) -> dict[str, Any]:
    """What the MLflow run records about the mechanism and the accounting assumptions."""
    dp = spec.differential_privacy
    assert dp is not None
    return {
        "dp_mechanism": "central Gaussian, server-side fixed clipping (Flower)",
        "dp_noise_multiplier": dp.noise_multiplier,
        "dp_clipping_norm": dp.clipping_norm,
        "dp_noise_stddev": dp.noise_multiplier * dp.clipping_norm / spec.num_clients,
        "dp_target_delta": dp.target_delta,
        "dp_max_epsilon": dp.max_epsilon if dp.max_epsilon is not None else "none",
        "dp_accountant": "RDP (dp-accounting), no amplification (q=1), add-or-remove-one client",
        "dp_unit": "client (user-level)",
    }


def budget_reason(exc: Exception, rnd: int, strategy: Any) -> str:
    """One line for the result document, the MLflow run and the clients' ``end_train``."""
    used = strategy.privacy_spent()
    dp_eps = f"{used.epsilon:.4g}" if used is not None else "?"
    delta = f"{used.delta:g}" if used is not None else "?"
    return (
        f"privacy budget exhausted: round {rnd} would exceed max_epsilon; stopped after {rnd - 1} "
        f"round(s) at epsilon={dp_eps}, delta={delta} and kept that model ({exc})"
    )
