"""Quorum and update-validation settings of the server config."""

from __future__ import annotations

import pytest

from kosmos_fl.config import load_server_config
from kosmos_fl.errors import ConfigError


@pytest.mark.parametrize(("clients", "quorum"), [(1, 1), (2, 2), (3, 2), (10, 9)])
def test_default_quorum_is_all_but_one_from_three_clients(clients: int, quorum: int) -> None:
    assert load_server_config(None, num_clients=clients).quorum == quorum


def test_explicit_quorum_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_server_config(None, num_clients=5, min_fit_clients=3).quorum == 3
    monkeypatch.setenv("DYNACONF_min_fit_clients", "4")
    monkeypatch.setenv("DYNACONF_num_clients", "5")
    assert load_server_config(None).quorum == 4


def test_quorum_above_num_clients_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"min_fit_clients \(4\) cannot exceed num_clients \(3\)"):
        load_server_config(None, num_clients=3, min_fit_clients=4)


def test_update_validation_bounds() -> None:
    cfg = load_server_config(None)
    assert cfg.max_update_norm_ratio == 10.0 and cfg.max_update_norm is None and cfg.resume is False
    with pytest.raises(ConfigError, match="max_update_norm_ratio"):
        load_server_config(None, max_update_norm_ratio=0.5)
