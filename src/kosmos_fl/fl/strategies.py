"""Build the configured Flower strategy (``flwr.serverapp.strategy``) with KOSMoS defaults.

Evaluation is always central (on the server's held-out data), so client-side evaluation is off and
only one training message per client and round crosses the network.
"""

from __future__ import annotations

import inspect
from typing import Any

from kosmos_fl.errors import ConfigError

_MANAGED = {
    "fraction_train",
    "fraction_evaluate",
    "min_train_nodes",
    "min_evaluate_nodes",
    "min_available_nodes",
    "weighted_by_key",
    "arrayrecord_key",
    "configrecord_key",
}


def build(name: str, params: dict[str, Any], num_clients: int, min_fit_clients: int) -> Any:
    """Instantiate strategy ``name`` with user ``params``; a bad name or parameter is a ConfigError
    naming the allowed parameters."""
    from flwr.serverapp import strategy as flwr_strategies

    cls = getattr(flwr_strategies, name, None)
    if cls is None or not inspect.isclass(cls):
        raise ConfigError(f"config key 'strategy.name': unknown Flower strategy {name!r}")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in {"self", *_MANAGED}]
    bad = [k for k in params if k not in allowed or k in _MANAGED]
    if bad:
        raise ConfigError(
            f"config key 'strategy.params.{bad[0]}' is not a parameter of {name}; allowed: "
            f"{', '.join(a for a in allowed if not a.endswith('_fn')) or 'none'}"
        )
    try:
        return cls(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=min_fit_clients,
            min_available_nodes=min_fit_clients,
            **params,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key 'strategy.params': {name} rejected them: {exc}") from None
