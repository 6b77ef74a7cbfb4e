"""``kosmos-fl session start`` finds the server from its config: the address (a wildcard listener
reached on loopback), TLS with the config's CA, the admin token; ``--url`` / ``--token`` win. Its
answers against a real server: tests/e2e/test_session_start.py."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from kosmos_fl.cli import main
from kosmos_fl.cli.session import _target


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def test_plain_server_on_every_interface(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("socketio_address: 0.0.0.0:7001\nadmin_token: from-the-config\n", encoding="utf-8")
    assert _target(cfg, None, None) == ("http://127.0.0.1:7001", "from-the-config", None)
    assert _target(cfg, "http://other:1/", "given")[:2] == ("http://other:1", "given")


def test_tls_server_is_reached_over_https_with_its_ca(tmp_path: Path) -> None:
    main(["certs", "init", "--dir", str(tmp_path / "certs")])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "socketio_address: '[::]:7002'\n"
        "tls: {certfile: certs/server.pem, keyfile: certs/server.key, ca_certfile: certs/ca.pem}\n",
        encoding="utf-8",
    )
    url, token, ctx = _target(cfg, None, None)
    assert url == "https://localhost:7002" and token is None
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED


def test_no_server_listening_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["session", "start", "--url", f"http://127.0.0.1:{port}"])
    assert exc.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the KOSMoS server at http://127.0.0.1:{port}"), err
    assert len(err.splitlines()) == 1
