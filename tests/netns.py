"""Simulated hosts for multi-host tests: Linux network namespaces on a bridge (scripts/netns.sh).

Use the ``netns_hosts`` fixture (import it into the test module) to get a factory: ``netns_hosts(3)``
creates three hosts, each with its own IP on a private /24, reachable from the root namespace (where
the server runs, at :attr:`NetHosts.gateway`) and from each other. ``cut(i)`` takes host i's link down
without telling any process (TCP peers only see silence); ``heal(i)`` brings it back;
``launcher(i)`` is the command prefix that runs a program on host i (for
``LocalFederation.start_client(..., launcher=...)``). The hosts are always removed at the end of the
test, and a machine that cannot create them fails the test with the reason (no silent skip).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "netns.sh"


@dataclass
class Host:
    index: int
    namespace: str
    ip: str


@dataclass
class NetHosts:
    """Hosts ``prefix-1..n`` on bridge ``prefix-br``; the root namespace is ``gateway``."""

    prefix: str
    subnet: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    def _run(self, *args: str) -> str:
        res = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
        )
        if res.returncode != 0:
            raise RuntimeError(f"scripts/netns.sh {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def up(self, n: int) -> None:
        for line in self._run("up", self.prefix, str(n), self.subnet).splitlines():
            ns, ip = line.split()
            self.hosts.append(Host(int(ns.rsplit("-", 1)[1]), ns, ip))

    def down(self) -> None:
        self._run("down", self.prefix)

    def cut(self, i: int) -> None:
        self._run("cut", self.prefix, str(i))

    def heal(self, i: int) -> None:
        self._run("heal", self.prefix, str(i))

    def launcher(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", f"{self.prefix}-{i}"]

    def leftovers(self) -> list[str]:
        """Namespaces or links of this prefix that still exist (empty after :meth:`down`)."""
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        links = subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, check=False
        ).stdout
        return [w for w in (ns + links).split() if w.startswith(f"{self.prefix}-")]


def _free_subnet() -> str:
    """A 10.231.X.0/24 not assigned on this machine (several test runs may share it)."""
    used = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
    ).stdout
    for _ in range(100):
        subnet = f"10.231.{secrets.randbelow(254) + 1}"
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError("no free 10.231.X.0/24 subnet for simulated hosts")


def preflight() -> str | None:
    """Why simulated hosts cannot be created here, or None."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (CI runs them as root); run pytest as root"
    if shutil.which("ip") is None:
        return (
            "iproute2 ('ip') is missing; run scripts/services.sh (it installs it) or apt-get install iproute2"
        )
    return None


@pytest.fixture
def netns_hosts() -> Iterator[Callable[[int], NetHosts]]:
    """Factory of simulated hosts; every set it made is removed after the test, whatever happened."""
    made: list[NetHosts] = []

    def make(n: int) -> NetHosts:
        problem = preflight()
        if problem is not None:
            pytest.fail(f"cannot create simulated hosts: {problem}")
        net = NetHosts(prefix=f"kf{os.getpid() % 10000:04d}{len(made)}", subnet=_free_subnet())
        made.append(net)
        try:
            net.up(n)
        except RuntimeError as exc:
            pytest.fail(f"cannot create simulated hosts: {exc}")
        return net

    yield make
    problems = []
    for net in made:
        try:
            net.down()
        except RuntimeError as exc:
            problems.append(str(exc))
        if net.leftovers():
            problems.append(f"left behind: {net.leftovers()}")
    assert not problems, f"simulated hosts were not removed: {problems}"


def start_lan_server(fed: Any, generated_bearings: Path, experiment: str, **extra: Any) -> Any:
    """A KOSMoS server for the simulated hosts: listening on every interface (the hosts reach it at
    :attr:`NetHosts.gateway`), plain traffic on the private test network (TLS has its own tests),
    one test bearing, the 2021 feature network; ``extra`` adds or overrides config keys."""
    config: dict[str, Any] = {
        "num_clients": 3,
        "n_federated_train_epoch": 1,
        "data_path": str(generated_bearings),
        "socketio_address": f"0.0.0.0:{fed.sio_port}",
        "flwr_server_address": f"0.0.0.0:{fed.flwr_port}",
        "insecure": True,
        "test_bearings": ["Bearing1_3"],
        "mlflow_experiment_name": experiment,
        "usecase": {"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        **extra,
    }
    return fed.start_server(timeout=240, **config)  # a loaded CI machine imports Flower slowly
