"""Security policy at start-up: production profile, --insecure, TLS file checks (one-line errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.errors import ConfigError
from kosmos_fl.security import certs
from kosmos_fl.security.policy import INSECURE_WARNING, client_security, server_security


def test_production_profile_refuses_plain_config() -> None:
    with pytest.raises(ConfigError, match=r"^config: profile 'production' requires TLS: set tls.certfile"):
        load_server_config(None, profile="production")
    with pytest.raises(ConfigError, match="does not allow insecure"):
        load_server_config(None, profile="production", insecure=True)
    with pytest.raises(ConfigError, match="profile 'production' requires TLS"):
        client_security(load_client_config(None, profile="production"), Path.cwd())


def test_plain_on_the_network_needs_insecure_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_server_config(None, socketio_address="0.0.0.0:6000", flwr_server_address="127.0.0.1:9092")
    with pytest.raises(ConfigError, match=r"TLS is off but socketio_address 0.0.0.0:6000 listen.*--insecure"):
        server_security(cfg, tmp_path)
    sec = server_security(cfg.model_copy(update={"insecure": True}), tmp_path)
    assert not sec.tls and not sec.client_auth
    assert INSECURE_WARNING in capsys.readouterr().err
    # loopback only (the demo): plain is fine and silent
    server_security(
        load_server_config(None, socketio_address="127.0.0.1:6000", flwr_server_address="127.0.0.1:1"),
        tmp_path,
    )
    assert capsys.readouterr().err == ""


def test_tls_keys_are_checked_with_the_key_and_the_fix_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config key 'tls': .*missing: keyfile, ca_certfile"):
        load_server_config(None, tls={"certfile": "x.pem"})
    cfg = load_server_config(None, tls={"certfile": "nope.pem", "keyfile": "k", "ca_certfile": "c"})
    with pytest.raises(
        ConfigError,
        match=r"config key 'tls.certfile': file .*nope.pem does not exist; run `kosmos-fl certs init`",
    ):
        server_security(cfg, tmp_path)
    p = certs.init(tmp_path / "c")
    ok = load_server_config(
        None,
        tls={"certfile": str(p.server_cert), "keyfile": str(p.server_key), "ca_certfile": str(p.ca_cert)},
    )
    sec = server_security(ok, tmp_path)
    assert sec.tls and sec.client_auth  # auto: TLS on means credentials are required
    swapped = ok.model_copy(update={"tls": ok.tls.model_copy(update={"keyfile": str(p.ca_key)})})
    with pytest.raises(ConfigError, match="do not form a usable certificate and key"):
        server_security(swapped, tmp_path)


def test_cli_production_refusal_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("profile: production\n")
    res = subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", "server", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: config: profile 'production' requires TLS")
    assert "Traceback" not in res.stderr
