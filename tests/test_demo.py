"""``kosmos-fl demo`` settings: a use case other than the config's runs with its own tuned session
settings, not the config's (tuned for another use case)."""

from __future__ import annotations

import json

from kosmos_fl.config import load_server_config
from kosmos_fl.demo import with_usecase_defaults
from kosmos_fl.usecases.turbofan import TurbofanUseCase


def test_turbofan_demo_takes_the_use_cases_session_defaults() -> None:
    base = json.loads(load_server_config(None).model_dump_json())
    base["training"] = {"local_epochs": 7, "learning_rate": 0.5, "batch_size": 3, "seed": 11}
    base["n_federated_train_epoch"] = 99
    values = with_usecase_defaults(base, "TurbofanUseCase")
    tuned = TurbofanUseCase.session_defaults
    assert tuned["training"] and tuned["n_federated_train_epoch"]
    assert values["n_federated_train_epoch"] == tuned["n_federated_train_epoch"]
    assert values["training"] == {**tuned["training"], "seed": 11}  # the seed stays the config's
    assert values["usecase"] == {"name": "TurbofanUseCase", "params": {}, "broadcast_params": {}}
    assert base["n_federated_train_epoch"] == 99  # the caller's settings are not changed


def test_a_use_case_without_session_defaults_keeps_the_config_settings() -> None:
    base = json.loads(load_server_config(None).model_dump_json())
    values = with_usecase_defaults(base, "BearingUseCase")
    assert values["training"] == base["training"]
    assert values["n_federated_train_epoch"] == base["n_federated_train_epoch"]
