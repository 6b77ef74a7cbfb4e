"""Settings of the two update-protection options: secure aggregation and differential privacy.

The session spec and the ServerApp use these value objects without the whole server
configuration; :class:`PrivacySection` holds them in ``ServerConfig`` with the rules that tie them
to the strategy. No Flower code at module level (the checks that need Flower's own rules import it
lazily). See docs/SECURITY.md for what each option protects.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kosmos_fl.config.base import ConfigModel


class SecureAggregationConfig(ConfigModel):
    """Flower's SecAgg+ (``SecAggPlusWorkflow`` / ``secaggplus_mod``): the server only learns the
    weighted sum of the clients' updates, never one client's update.

    ``num_shares`` and ``reconstruction_threshold`` follow Flower: an int is a count, a float a
    fraction (of the clients, resp. of the shares). A client's masks can be rebuilt from
    ``reconstruction_threshold`` shares, so that many colluding neighbours (with the server) could
    unmask it; fewer surviving neighbours than that and the round fails. Defaults: every client
    holds a share of every other's secrets, two thirds of them are needed.
    """

    num_shares: int | float = 1.0
    reconstruction_threshold: int | float = 0.67
    #: Surviving clients a round needs (the quorum); unset: the reconstruction threshold.
    min_clients: int | None = Field(None, ge=2)
    #: Largest client weight (number of training examples) before Flower warns of overflow.
    max_weight: float = Field(1000.0, gt=0)
    #: Each weighted update entry is clipped to +-clipping_range before quantisation.
    clipping_range: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _flower_rules(self) -> SecureAggregationConfig:
        from flwr.server.workflow import SecAggPlusWorkflow

        try:
            SecAggPlusWorkflow(
                self.num_shares,
                self.reconstruction_threshold,
                max_weight=self.max_weight,
                clipping_range=self.clipping_range,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc).replace("`", "")) from None
        return self

    def resolve(self, num_clients: int) -> tuple[int, int]:
        """Shares and threshold for ``num_clients`` clients, as Flower's setup stage computes them."""
        if isinstance(self.num_shares, float):
            shares = round(self.num_shares * num_clients)
            if shares < num_clients and shares & 1 == 0:
                shares += 1
            if shares <= 2:
                shares = num_clients
        else:
            shares = self.num_shares
        if isinstance(self.reconstruction_threshold, float):
            threshold = max(round(self.reconstruction_threshold * shares), 2)
        else:
            threshold = self.reconstruction_threshold
        return shares, threshold

    def quorum(self, num_clients: int) -> int:
        """Clients that must survive a round (never fewer than the protocol itself needs)."""
        _, threshold = self.resolve(num_clients)
        return max(self.min_clients or threshold, threshold)

    def check(self, num_clients: int) -> None:
        """Raise ValueError when these settings cannot work with ``num_clients`` clients."""
        if num_clients < 3:
            raise ValueError(
                "needs num_clients >= 3: with 2 clients each could subtract its own update from the "
                "new global model and learn the other's"
            )
        shares, threshold = self.resolve(num_clients)
        if shares > num_clients:
            raise ValueError(f"num_shares={shares} is more than num_clients={num_clients}")
        if threshold > num_clients:
            raise ValueError(f"reconstruction_threshold={threshold} is more than num_clients={num_clients}")
        if self.min_clients is not None and self.min_clients > num_clients:
            raise ValueError(f"min_clients={self.min_clients} is more than num_clients={num_clients}")


class DifferentialPrivacyConfig(ConfigModel):
    """Central (client-level) differential privacy: the server clips every client's update to
    L2 norm ``clipping_norm``, averages with equal weights and adds Gaussian noise with standard
    deviation ``noise_multiplier * clipping_norm / num_clients``; an RDP accountant composes the
    rounds. Before a round that would push epsilon (at ``target_delta``) above ``max_epsilon``
    the session stops and keeps the last model."""

    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(gt=0)
    target_delta: float = Field(1e-5, gt=0, lt=1)
    max_epsilon: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _budget_allows_one_round(self) -> DifferentialPrivacyConfig:
        if self.max_epsilon is None:
            return self
        eps = one_round_epsilon(self.noise_multiplier, self.target_delta)
        if eps > self.max_epsilon:
            raise ValueError(
                f"max_epsilon={self.max_epsilon:g} is below the cost of a single round "
                f"(epsilon={eps:.3g} at noise_multiplier={self.noise_multiplier:g}, "
                f"target_delta={self.target_delta:g}); raise max_epsilon or noise_multiplier"
            )
        return self


def one_round_epsilon(noise_multiplier: float, target_delta: float) -> float:
    """Epsilon of a single round (for the config check that the budget allows any training)."""
    from flwr.serverapp import PrivacyConfig, RdpAccountant
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        SamplingMethod,
    )

    acc = RdpAccountant(
        PrivacyConfig(
            target_delta=target_delta,
            population_size=1,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    acc.compose(GaussianPrivacyEvent(noise_multiplier=noise_multiplier, sample_size=1, population_size=1))
    return acc.get_epsilon(target_delta)


def secure_aggregation_from(value: Any) -> Any:
    """``true`` means the defaults, ``false``/``null`` means off; a mapping sets options."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class PrivacySection(ConfigModel):
    """What protects the updates themselves. Comes after the session section in ``ServerConfig``:
    its rules read the strategy and ``num_clients``."""

    #: SecAgg+ (``true`` or a mapping of options): the server sees only the sum of the updates.
    secure_aggregation: SecureAggregationConfig | None = None
    #: Clipping + Gaussian noise + privacy accountant (see docs/SECURITY.md); unset: off.
    differential_privacy: DifferentialPrivacyConfig | None = None

    @field_validator("secure_aggregation", mode="before")
    @classmethod
    def _secure_aggregation_flag(cls, value: Any) -> Any:
        return secure_aggregation_from(value)

    @field_validator("secure_aggregation")
    @classmethod
    def _secure_aggregation_fits(
        cls, value: SecureAggregationConfig | None, info: ValidationInfo
    ) -> SecureAggregationConfig | None:
        strategy = info.data.get("strategy")
        if value is not None and strategy is not None and strategy.name != "FedAvg":
            raise ValueError(
                f"works with strategy FedAvg only (the server sees just the sum of the updates), "
                f"not {strategy.name}"
            )
        if value is not None and "num_clients" in info.data:
            value.check(info.data["num_clients"])
        return value

    @field_validator("differential_privacy")
    @classmethod
    def _differential_privacy_fits(
        cls, value: DifferentialPrivacyConfig | None, info: ValidationInfo
    ) -> DifferentialPrivacyConfig | None:
        strategy = info.data.get("strategy")
        if value is not None and strategy is not None and strategy.name != "FedAvg":
            raise ValueError(
                f"works with strategy FedAvg only (the noise is calibrated to an equal-weight "
                f"average), not {strategy.name}"
            )
        if value is not None and info.data.get("secure_aggregation") is not None:
            raise ValueError(
                "cannot be combined with secure_aggregation yet (server-side clipping needs the "
                "individual updates); choose one"
            )
        return value
