"""The network between the server and one client is cut (its link goes down; both processes keep
running and nobody sends a FIN or RST): the server notices through the Engine.IO heartbeat, drops the
client from the waiting pool, runs the session with the two other clients, and takes the cut client
back once its network heals. Each client runs on its own simulated host (a network namespace with its
own IP, see tests/netns.py); the server runs in the root namespace."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.localfed import LocalFederation as Federation
from tests.netns import NetHosts, netns_hosts, start_lan_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

# short enough to keep the test quick, long enough for a loaded CI machine's event loop
PING_INTERVAL, PING_TIMEOUT = 3.0, 6.0


def clients_by_name(fed: Federation) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in (fed.status() or {}).get("clients", []) if c.get("name")}


def state(fed: Federation, name: str) -> str | None:
    return clients_by_name(fed).get(name, {}).get("state")


def wait_until(what: str, check: Callable[[], bool], fed: Federation, timeout: float) -> float:
    """Seconds until ``check()`` held; fails with the server's log tail otherwise."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            assert fed.server is not None
            pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{fed.server.tail(40)}")
        time.sleep(0.2)
    return time.monotonic() - start


def test_cut_client_is_dropped_and_the_others_train(
    federation: Federation,
    generated_bearings: Path,
    netns_hosts: Callable[[int], NetHosts],  # noqa: F811
) -> None:
    net = netns_hosts(3)
    fed = federation
    start_lan_server(
        fed, generated_bearings, "netcut", num_clients=2,
        limits={"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT},
    )  # fmt: skip
    common = {
        "socketio_address": f"{net.gateway}:{fed.sio_port}",
        "data_path": str(generated_bearings),
        "torch_threads": 1,
        "retry_initial": 0.5,
        "retry_max": 2.0,
        "retry_attempts": "forever",  # site-a waits out the cut (the default gives up after ~2 min)
        "insecure": True,
    }
    bearings = {"a": ["Bearing1_1"], "b": ["Bearing1_2"], "c": ["Bearing2_1", "Bearing2_2"]}

    # a registers from host 1 and waits for a partner
    a = fed.start_client("site-a", once=False, launcher=net.launcher(1), bearings=bearings["a"], **common)
    wait_until("site-a registering", lambda: state(fed, "site-a") == "eligible", fed, 120)
    assert clients_by_name(fed)["site-a"]["address"] == net.hosts[0].ip  # it really came from host 1

    # cut host 1: no FIN, no RST, the processes keep running
    net.cut(1)
    took = wait_until("the server noticing the cut", lambda: "site-a" not in clients_by_name(fed), fed, 30)
    # ping_interval + ping_timeout (9 s) plus the scheduling delay of a loaded machine; the issue
    # asks that a dead client is not noticed only after a minute
    assert took < 60, f"the cut was noticed only after {took:.0f} s"
    assert (fed.status() or {})["waiting"] == 0
    assert a.alive(), "the cut client's process must survive the cut"

    # the others (hosts 2 and 3) form a session and finish it without a
    b = fed.start_client("site-b", launcher=net.launcher(2), bearings=bearings["b"], **common)
    c = fed.start_client("site-c", launcher=net.launcher(3), bearings=bearings["c"], **common)
    done = fed.wait_sessions(1, timeout=600)[0]  # a ceiling for loaded CI machines
    assert done["status"] == "completed", done
    for proc in (b, c):
        assert proc.proc.wait(60) == 0, proc.tail(30)
    assert a.alive()

    # the network comes back: a reconnects by itself and is eligible again
    net.heal(1)
    wait_until("site-a coming back", lambda: state(fed, "site-a") == "eligible", fed, 60)

    assert fed.server is not None and fed.server.alive()
    log = " ".join((fed.root / "logs" / "server.log").read_text(encoding="utf-8").split())
    assert "disconnected (ping timeout)" in log
