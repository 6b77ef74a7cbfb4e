"""Issue 18: one server, the same two long-running clients, two sessions. The clients keep their
SuperNode (and warm ClientApp template) from the first session to the second, and the second
session trains with the use-case parameters the operator changed meanwhile (``config.yaml`` edited,
``kill -HUP``): nothing kept warm may carry the first session's parameters into the second."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.rounds.liveness import read_nodes
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation
from tests.e2e.test_secure_federation import wait_for

pytestmark = pytest.mark.e2e

UNITS = {"site-a": ["Bearing1_1", "Bearing1_2"], "site-b": ["Bearing2_1", "Bearing2_2"]}


def test_second_session_keeps_the_supernodes_and_uses_the_reloaded_parameters(
    federation: Federation, generated_bearings: Path
) -> None:
    fed = federation
    server = fed.start_server(
        num_clients=2,
        n_federated_train_epoch=1,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3"],
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 16},
    )
    clients = [
        fed.start_client(n, once=False, data_path=str(generated_bearings), bearings=b)
        for n, b in UNITS.items()
    ]
    wait_for(lambda: (fed.status() or {}).get("session") is not None, 240, "the first session to start")

    # while session 1 runs, the operator changes the model and the rounds and reloads
    path = fed.root / "config" / "server.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["usecase"]["broadcast_params"] = {"model": "mlp"}
    cfg["n_federated_train_epoch"] = 2
    path.write_text(yaml.safe_dump(cfg))
    os.kill(server.proc.pid, signal.SIGHUP)
    server_log = fed.root / "logs" / "server.log"
    wait_for(lambda: "config reloaded" in server_log.read_text(), 60, "the reload")
    assert "usecase" in server_log.read_text().split("config reloaded")[1].splitlines()[0]

    first, second = fed.wait_sessions(2, timeout=600)[:2]
    assert first["status"] == "completed" and second["status"] == "completed", (first, second)
    ml = MlflowClient(tracking_uri=tracking_uri(str(fed.root / "mlruns")))
    p1 = ml.get_run(first["mlflow_run_id"]).data.params
    p2 = ml.get_run(second["mlflow_run_id"]).data.params
    assert (p1["model"], p1["n_federated_train_epoch"]) == (
        "Ffnn2021",
        "1",
    )  # the running session kept its own
    assert (p2["model"], p2["n_federated_train_epoch"]) == ("RulMlp", "2")
    # the clients trained the new model too: their updates fit it (a stale template or spec would
    # send the old architecture, and every update would be rejected)
    steps = sorted(m.step for m in ml.get_metric_history(second["mlflow_run_id"], "train_loss"))
    assert steps == [1, 2]

    # one SuperNode per client for both sessions; the second session addressed exactly those
    joined = {}
    for name in UNITS:
        ids = re.findall(r"SuperNode (\d+) joined", (fed.root / "logs" / f"{name}.log").read_text())
        assert len(set(ids)) == 1, (name, ids)
        joined[name] = int(ids[0])
    second_dir = fed.root / "server" / "sessions" / second["session_id"]
    session_nodes, others = read_nodes(second_dir)
    assert sorted(session_nodes.values()) == sorted(joined.values()) and others == set()
    for c in clients:
        assert c.alive(), c.tail(20)


def test_ctrl_c_on_a_waiting_client_is_one_line_and_exit_130(
    federation: Federation, generated_bearings: Path
) -> None:
    """Issue 20: SIGINT to a client waiting for a session: a one-line goodbye, no traceback, exit
    130; its kept SuperNode stops with it."""
    fed = federation
    fed.start_server(num_clients=2, data_path=str(generated_bearings), test_bearings=["Bearing1_3"])
    client = fed.start_client(
        "site-a", once=False, data_path=str(generated_bearings), bearings=UNITS["site-a"]
    )
    log = fed.root / "logs" / "site-a.log"
    # its SuperNode joined and the server answered the registration that carried the node id
    wait_for(lambda: log.read_text().count("server: eligible") >= 2, 180, "the client's SuperNode")
    before = len(log.read_text().splitlines())
    client.proc.send_signal(signal.SIGINT)
    assert client.proc.wait(30) == 130, client.tail(20)
    after = log.read_text().splitlines()[before:]
    assert after == ["client site-a: interrupted (Ctrl-C); left the server cleanly"], after
    assert "Traceback" not in log.read_text()
    assert not [p for p in Path("/proc").iterdir() if _runs_with(p, str(fed.root / "clients" / "site-a"))]


def _runs_with(proc: Path, text: str) -> bool:
    try:
        return proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
