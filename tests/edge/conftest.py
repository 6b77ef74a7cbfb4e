"""Fixtures of the edge tests: MQTT brokers (a private Mosquitto per test, the machine's shared
one on 127.0.0.1:1883), signal makers and real FEMTO bearings."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.fl.flower_runtime.runtime import free_port
from tests.data.conftest import femto_bearing3_1  # noqa: F401  (re-exported fixture)

SHARED_BROKER = os.environ.get("KOSMOS_TEST_MQTT", "127.0.0.1:1883")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            "mosquitto is not installed: run `bash scripts/services.sh` (installs Debian's mosquitto)"
        )
    return found


class Broker:
    """A private Mosquitto on a free loopback port with its own persistence folder."""

    def __init__(self, folder: Path, settings: str = "allow_anonymous true\n", scheme: str = "mqtt") -> None:
        self.folder = folder
        self.port = free_port()
        self.scheme = scheme
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = folder / "mosquitto.conf"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{settings}persistence true\n"
            f"persistence_location {folder}/\nuser {getpass.getuser()}\nlog_dest file {folder}/broker.log\n"
            "max_queued_messages 100000\n"
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (self.folder / "broker.log").read_text() if (self.folder / "broker.log").exists() else ""
                )
                pytest.fail(f"private mosquitto did not start on port {self.port}:\n{log[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Graceful stop: Mosquitto writes its persistence file (queued messages survive)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def shared_broker() -> str:
    """The machine's Mosquitto (127.0.0.1:1883; scripts/services.sh starts it), as a URL."""
    host, _, port = SHARED_BROKER.rpartition(":")
    if not _port_open(host, int(port)):
        pytest.fail(
            f"no MQTT broker at {SHARED_BROKER}: run `bash scripts/services.sh` (starts Mosquitto) or set "
            "KOSMOS_TEST_MQTT=host:port"
        )
    return f"mqtt://{SHARED_BROKER}"


def make_signals(n: int, seed: int = 0, samples: int = 2560) -> np.ndarray:
    """(n, samples, 2) float32 vibration-like noise, growing over the bearing's life, 1 mg steps."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.3, 2.0, n)[:, None, None]
    return (rng.normal(0, 1, (n, samples, 2)) * scale).round(3).astype(np.float32)


def extract_bearing(archive: str, root: Path, last: int | None = None) -> Path:
    """Extract one FEMTO bearing archive from ../shared/datasets/femto into ``root``; with ``last``
    only its last ``last`` snapshot files (the failure end, so RUL labels stay true)."""
    import tarfile

    from tests.data.conftest import require_shared

    path = require_shared(f"femto/{archive}")
    written: list[Path] = []
    with tarfile.open(path, "r|xz") as tar:  # one streaming pass: xz archives are slow to seek
        for member in tar:
            if member.isfile() and Path(member.name).name.startswith("acc_"):
                tar.extract(member, root, filter="data")
                written.append(root / member.name)
    folders = {p.parent for p in written}
    assert len(folders) == 1, f"unexpected layout of {path}"
    if last is not None:
        for p in sorted(written)[:-last]:
            p.unlink()
    return folders.pop()
