"""Client registry: onboarding bundle, hashed tokens, refusal reasons, revocation, CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kosmos_fl.cli import main
from kosmos_fl.errors import ConfigError
from kosmos_fl.security import certs
from kosmos_fl.security.clients import ClientRegistry, load_bundle


def test_add_writes_a_bundle_and_stores_only_the_token_hash(tmp_path: Path) -> None:
    ca = certs.init(tmp_path / "certs").ca_cert
    reg = ClientRegistry(tmp_path / "reg" / "clients.json")
    bundle = reg.add("site-a", tmp_path / "bundles", ca)
    creds = load_bundle(bundle)
    assert creds.name == "site-a" and len(creds.token) >= 40
    assert creds.ca_file is not None and creds.ca_file.read_bytes() == ca.read_bytes()
    assert creds.client_cert is not None and creds.client_cert.exists()
    for secret in (bundle / "credentials.json", creds.node_private_key, reg.path):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    key = serialization.load_ssh_private_key(creds.node_private_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    stored = reg.path.read_text()
    assert creds.token not in stored
    assert json.loads(stored)["clients"][0]["public_key"].startswith("ecdsa-sha2-nistp384 ")


def test_verify_gives_a_reason_for_every_refusal(tmp_path: Path) -> None:
    reg = ClientRegistry(tmp_path / "clients.json")
    creds = load_bundle(reg.add("site-a", tmp_path / "b"))
    assert reg.verify({"client": "site-a", "token": creds.token}) == ("site-a", "")
    assert "auth token missing" in reg.verify(None)[1]
    assert reg.verify({"client": "nobody", "token": creds.token})[1] == "unknown client 'nobody'"
    assert (
        reg.verify({"client": "site-a", "token": "x" + creds.token})[1] == "wrong token for client 'site-a'"
    )
    reg.revoke("site-a")
    name, why = reg.verify({"client": "site-a", "token": creds.token})
    assert name is None and why.startswith("client 'site-a' was revoked at ")


def test_bad_names_duplicates_and_unknown_revocations_are_one_line_errors(tmp_path: Path) -> None:
    reg = ClientRegistry(tmp_path / "clients.json")
    with pytest.raises(ConfigError, match=r"client name '\.\./x' is not allowed"):
        reg.add("../x", tmp_path / "b")
    reg.add("a", tmp_path / "b")
    with pytest.raises(ConfigError, match="already exists"):
        reg.add("a", tmp_path / "b2")
    with pytest.raises(ConfigError, match="unknown client 'zz'"):
        reg.revoke("zz")


def test_cli_add_list_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"work_dir: {tmp_path / 'w'}\n")
    main(["clients", "add", "site-a", "-c", str(cfg), "--out", str(tmp_path / "bundles")])
    main(["clients", "add", "site-b", "-c", str(cfg), "--out", str(tmp_path / "bundles")])
    main(["clients", "revoke", "site-b", "-c", str(cfg)])
    capsys.readouterr()
    main(["clients", "list", "-c", str(cfg)])
    out = capsys.readouterr().out
    assert "site-a" in out and "active" in out and "revoked" in out
    assert (tmp_path / "w" / "security" / "clients.json").exists()
