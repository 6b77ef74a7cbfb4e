"""Issue 20: a client retries forever only when configured to (``retry_attempts: forever``, or its
old spelling ``0``); by default it gives up after about 2 minutes with one line naming the server
and the setting, and a non-zero exit. Deployed clients (Docker, Kubernetes) say forever."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import socketio
import yaml
from aiohttp import web

from kosmos_fl.config import ClientConfig, load_client_config
from kosmos_fl.config.client import DEFAULT_RETRY_ATTEMPTS
from kosmos_fl.coordinator.client import KosmosClient
from kosmos_fl.errors import ConfigError, KosmosError

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_default_is_finite_about_two_minutes() -> None:
    cfg = ClientConfig()
    assert cfg.retry_attempts == DEFAULT_RETRY_ATTEMPTS == cfg.retry_budget
    # the waits between the attempts (without jitter): 1, 2, 4, 8, 16, 30, 30, 30 s
    waits, delay = [], cfg.retry_initial
    for _ in range(DEFAULT_RETRY_ATTEMPTS - 1):
        waits.append(delay)
        delay = min(delay * 2, cfg.retry_max)
    assert 90 <= sum(waits) <= 150


@pytest.mark.parametrize("value", ["forever", "Forever", 0, "0"])
def test_forever_is_explicit_and_0_keeps_its_old_meaning(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(yaml.safe_dump({"retry_attempts": value}), encoding="utf-8")
    cfg = load_client_config(path)
    assert cfg.retry_attempts == "forever" and cfg.retry_budget is None


def test_forever_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNACONF_retry_attempts", "forever")
    assert load_client_config(None).retry_budget is None
    monkeypatch.setenv("DYNACONF_retry_attempts", "5")
    assert load_client_config(None).retry_budget == 5


@pytest.mark.parametrize("value", [-1, "soon", 2.5, True])
def test_a_bad_retry_attempts_is_one_line(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(yaml.safe_dump({"retry_attempts": value}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"retry_attempts.*'forever'.*DYNACONF_retry_attempts"):
        load_client_config(path)


def test_deployed_clients_retry_forever() -> None:
    assert load_client_config(REPO / "docker" / "client.config.yaml").retry_budget is None
    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "clients.yaml").read_text(encoding="utf-8")))
    (config_map,) = [d for d in docs if d and d.get("kind") == "ConfigMap"]
    assert yaml.safe_load(config_map["data"]["config.yaml"])["retry_attempts"] == "forever"


def _run_client(
    tmp_path: Path, env: dict[str, str], extra: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    port = _free_port()  # nobody listens there
    (tmp_path / "client.yaml").write_text(
        f"socketio_address: 127.0.0.1:{port}\nretry_initial: 0.05\nretry_max: 0.1\n"
        f"work_dir: {tmp_path / 'work'}\n{extra}",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", "client"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.e2e
def test_without_a_server_the_client_gives_up_with_one_clear_line(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Before issue 20 the default retried forever: this run would time out."""
    res = _run_client(tmp_path, clean_env, "", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Unclosed" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    (line,) = errors
    assert "cannot reach the KOSMoS server at 127.0.0.1:" in line
    assert f"after {DEFAULT_RETRY_ATTEMPTS} attempts" in line
    assert "retry_attempts: forever" in line
    assert res.stderr.count("not reachable") == DEFAULT_RETRY_ATTEMPTS - 1


@pytest.mark.e2e
def test_a_client_configured_forever_keeps_trying(tmp_path: Path, clean_env: dict[str, str]) -> None:
    port = _free_port()
    (tmp_path / "client.yaml").write_text(
        f"socketio_address: 127.0.0.1:{port}\nretry_initial: 0.05\nretry_max: 0.1\n"
        f"retry_attempts: forever\nwork_dir: {tmp_path / 'work'}\n",
        encoding="utf-8",
    )
    log = tmp_path / "client.log"
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kosmos_fl.cli", "client"], cwd=tmp_path, env=clean_env,
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while log.read_text(encoding="utf-8").count("not reachable") < 3 * DEFAULT_RETRY_ATTEMPTS:
                assert proc.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130, log.read_text(encoding="utf-8")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    ("how", "said"),
    [("dropped", "again after 2 reconnection attempts"), ("closed", "after 2 attempts")],
)
def test_a_lost_server_is_given_up_on_too(tmp_path: Path, how: str, said: str) -> None:
    """Connected, then the server goes away for good: the reconnection has the same budget, after a
    dropped connection (python-socketio reconnects) and after the server closed it (a restart: the
    client connects again itself)."""
    port = _free_port()
    sids: list[str] = []

    async def scenario() -> None:
        sio = socketio.AsyncServer(async_mode="aiohttp")
        app = web.Application()
        sio.attach(app)
        connected = asyncio.Event()

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            sids.append(sid)
            connected.set()

        runner = web.AppRunner(app, shutdown_timeout=0.5)  # drop the open WebSocket at once
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        cfg = ClientConfig(
            socketio_address=f"127.0.0.1:{port}", work_dir=str(tmp_path / "work"),
            data_path=str(tmp_path / "none"), retry_attempts=2, retry_initial=0.05, retry_max=0.1,
        )  # fmt: skip
        client = KosmosClient(cfg, tmp_path)
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(connected.wait(), 30)
        if how == "closed":
            await sio.disconnect(sids[0])
        await runner.cleanup()  # the server is gone and does not come back
        with pytest.raises(KosmosError, match=rf"127\.0\.0\.1:{port} {said}.*retry_attempts: forever"):
            await asyncio.wait_for(task, 60)

    asyncio.run(scenario())
