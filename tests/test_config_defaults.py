"""Issue 20: one source of defaults. The package's built-in server defaults are the shipped, tuned
``config.yaml``: ``kosmos-fl config show`` and the demo see the same configuration outside the
checkout as inside it. The former (2021-like) defaults stay in ``compat2021.DEFAULTS_2021``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kosmos_fl.cli import _explain
from kosmos_fl.cli import main as cli_main
from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.config.compat2021 import DEFAULTS_2021, migrate
from kosmos_fl.demo import _server_values

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def test_the_shipped_config_is_the_built_in_defaults() -> None:
    shipped = load_server_config(REPO / "config.yaml").model_dump(mode="json")
    built_in = load_server_config(None).model_dump(mode="json")
    assert {k: (v, built_in[k]) for k, v in shipped.items() if built_in[k] != v} == {}
    assert built_in["usecase"]["broadcast_params"]["model"] == "ratio"


def test_the_shipped_client_yaml_trains_as_the_built_in_defaults() -> None:
    shipped, built_in = load_client_config(REPO / "client.yaml"), load_client_config(None)
    for cid in (0, 1, 2, 7):  # its bearings_per_client is the default (2021) assignment, written out
        assert shipped.site(cid) == built_in.site(cid)
    rest = {k: v for k, v in shipped.model_dump().items() if k != "bearings_per_client"}
    assert rest == {k: v for k, v in built_in.model_dump().items() if k != "bearings_per_client"}


def test_config_show_outside_the_checkout_equals_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _, outside_file, outside = _explain(None, client=False)
    cli_main(["config", "show"])  # the command itself runs here, on the built-in defaults
    assert "built-in defaults" in capsys.readouterr().out
    monkeypatch.chdir(REPO)
    _, inside_file, inside = _explain(None, client=False)
    assert outside_file is None and inside_file == Path("config.yaml")
    assert [(k, v) for k, v, _ in outside] == [(k, v) for k, v, _ in inside]
    assert {src for _, _, src in inside} >= {"file"}  # (the checkout's really was read)


def test_the_demo_trains_the_same_outside_the_checkout(tmp_path: Path) -> None:
    """What ``kosmos-fl demo`` hands its server, built from no config and from the checkout's."""
    args = ("BearingUseCase", None, None, tmp_path / "data", ["Bearing1_3"], str(tmp_path / "ml"), tmp_path)
    outside = _server_values(load_server_config(None), *args)
    inside = _server_values(load_server_config(REPO / "config.yaml"), *args)
    assert outside == inside


def test_the_former_defaults_are_kept_for_migration(tmp_path: Path) -> None:
    assert DEFAULTS_2021["n_federated_train_epoch"] == 5
    old = tmp_path / "config.yaml"
    old.write_text("num_clients: 2\nusecase: {name: BearingUseCase, broadcast: {}}\n", encoding="utf-8")
    _, text, _ = migrate(old, "server")
    assert "former defaults" in text and "#   n_federated_train_epoch: 5" in text
    assert "#   usecase" not in text  # the file has its own usecase block
