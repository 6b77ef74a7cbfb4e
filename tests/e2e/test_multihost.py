"""A federation across real network interfaces, without Docker: three clients on three simulated
hosts (network namespaces with their own IP addresses, joined to the server by veth pairs on a
bridge; scripts/netns.sh), the server on a fourth address. Inside a namespace 127.0.0.1 is that
host's own loopback, so a session that completes proves that both the Socket.IO control plane and
Flower's training traffic crossed the simulated network (docs/OPERATIONS.md, "Multi-host")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from kosmos_fl.localfed import LocalFederation as Federation
from tests.netns import NetHosts, netns_hosts, start_lan_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e


def test_three_hosts_train_one_model(
    federation: Federation,
    generated_bearings: Path,
    netns_hosts: Callable[[int], NetHosts],  # noqa: F811
) -> None:
    net = netns_hosts(3)
    fed = federation
    start_lan_server(fed, generated_bearings, "multihost", n_federated_train_epoch=2)
    bearings = [["Bearing1_1"], ["Bearing1_2"], ["Bearing2_1", "Bearing2_2"]]
    clients = [
        fed.start_client(
            f"host{i}",
            launcher=net.launcher(i),
            socketio_address=f"{net.gateway}:{fed.sio_port}",
            data_path=str(generated_bearings),
            bearings=bearings[i - 1],
            torch_threads=1,
            insecure=True,
        )
        for i in (1, 2, 3)
    ]
    done = fed.wait_sessions(1, timeout=600)[0]  # a ceiling for loaded CI machines
    assert done["status"] == "completed", done
    for proc in clients:
        assert proc.proc.wait(60) == 0, proc.tail(30)

    # each client reached the server from its own address, not over loopback
    log = " ".join((fed.root / "logs" / "server.log").read_text(encoding="utf-8").split())
    for host in net.hosts:
        assert f"connected from {host.ip}" in log, f"no connection from {host.ip}"
    assert "connected from 127.0.0.1" not in log

    # all three trained in every round, and the server evaluated every round
    mlflow.set_tracking_uri(f"sqlite:///{fed.root / 'mlruns' / 'mlflow.db'}")
    run = mlflow.get_run(done["mlflow_run_id"])
    client = mlflow.MlflowClient()
    for cid in range(3):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"train_loss_client{cid}")]
        assert steps == [1, 2], (cid, steps)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "RMSE")] == [0, 1, 2]
