"""Issue 16 rows 2 and 3: the admin side is never open by accident; no credentials leave the server.

Row 2: with ``admin_token`` unset, ``/dashboard/api/state`` and ``/metrics`` answered anyone (client
IPs, reasons, the MLflow URI with its password), the Host header was not checked (DNS rebinding).
Row 3: ``start_train`` sent every client the raw ``mlflow_server_address``.

The non-loopback peer is real: the test server listens on all addresses and the client connects
to one of this machine's own non-loopback addresses, so the server sees that address as the peer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer

from kosmos_fl.config import load_server_config
from kosmos_fl.coordinator.server import Coordinator
from kosmos_fl.coordinator.sessions import Session
from kosmos_fl.errors import ConfigError
from tests.coordinator.pieces import Pieces, server_config

SECRET = "s3cret-pw"
MLFLOW = f"http://alice:{SECRET}@mlflow.internal:5000"
ADMIN_PATHS = ("/dashboard", "/dashboard/api/state", "/metrics")


def _lan_address() -> str:
    """One of this machine's own non-loopback IPv4 addresses (a peer that is not loopback)."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    pytest.fail("this machine has no non-loopback IPv4 address to connect from")


async def _get(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.text()


def _serve(tmp_path: Path, **cfg: Any) -> TestServer:
    config = load_server_config(None, work_dir=str(tmp_path / "w"), mlflow_server_address=MLFLOW, **cfg)
    return TestServer(Coordinator(config, tmp_path).app, host="0.0.0.0")


def test_row02_production_requires_admin_token() -> None:
    tls = {"certfile": "s.pem", "keyfile": "s.key", "ca_certfile": "ca.pem"}
    with pytest.raises(ConfigError, match=r"profile 'production' requires admin_token"):
        load_server_config(None, profile="production", tls=tls)
    cfg = load_server_config(None, profile="production", tls=tls, admin_token="t" * 32)
    assert cfg.admin_token is not None


def test_row02_no_token_admin_side_answers_loopback_only(tmp_path: Path) -> None:
    server = _serve(tmp_path)
    lan = _lan_address()

    async def run() -> None:
        await server.start_server()
        try:
            for path in ADMIN_PATHS:
                status, body = await _get(f"http://{lan}:{server.port}{path}")
                assert status == 403, (path, status)
                assert "loopback" in body and SECRET not in body
                status, _ = await _get(f"http://127.0.0.1:{server.port}{path}")
                assert status == 200, (path, status)
        finally:
            await server.close()

    asyncio.run(run())


def test_row02_host_header_checked_against_configured_names(tmp_path: Path) -> None:
    server = _serve(tmp_path, admin_hosts=["kosmos.example.org"])

    async def run() -> None:
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}"
        try:
            for path in (*ADMIN_PATHS, "/status"):
                status, body = await _get(base + path, Host=f"rebind.attacker.test:{server.port}")
                assert status == 421, (path, status)
                assert "admin_hosts" in body
                for good in ("localhost", "kosmos.example.org", "127.0.0.1", "[::1]"):
                    status, _ = await _get(base + path, Host=f"{good}:{server.port}")
                    assert status == 200, (path, good, status)
            # /health stays public: it says nothing
            status, _ = await _get(base + "/health", Host="rebind.attacker.test")
            assert status == 200
        finally:
            await server.close()

    asyncio.run(run())


def test_row02_uri_credentials_never_shown(tmp_path: Path) -> None:
    server = _serve(tmp_path)

    async def run() -> None:
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}"
        try:
            for path in ("/dashboard/api/state", "/status"):
                status, body = await _get(base + path)
                assert status == 200
                assert SECRET not in body and "alice" not in body, path
                assert "mlflow.internal:5000" in body, path
        finally:
            await server.close()

    asyncio.run(run())


def test_row03_start_train_carries_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kosmos_fl.coordinator import sessions

    pieces = Pieces(tmp_path, server_config(tmp_path, num_clients=1))
    pieces.sessions.config = pieces.sessions.config.model_copy(update={"mlflow_server_address": MLFLOW})
    monkeypatch.setattr(sessions, "create_session_run", lambda *a, **k: "run-1")
    monkeypatch.setattr(sessions.runtime, "submit_run", lambda *a, **k: 7)
    s = Session("s1", ["sid-1"], tmp_path / "s1", "", time.time())
    asyncio.run(pieces.sessions._start_session(s))
    sent = [data for event, _, data in pieces.emitted if event == "start_train"]
    assert sent, pieces.emitted
    assert SECRET not in repr(sent) and "alice" not in repr(sent)
    assert sent[0]["mlflow_server_address"] == "http://mlflow.internal:5000"  # the 2021 key stays
