"""Broker credentials and TLS against a real Mosquitto with a certificate and a password file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.edge.ingest import EdgeIngest
from tests.edge.conftest import Broker

USER, PASSWORD, WRONG = "site-a", "s3cret-Never-Logged", "Wrong-Pw-9x"


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(signer, hashes.SHA256())


def _pem(path: Path, obj: object) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    folder = tmp_path / "tls-broker"
    folder.mkdir()
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kosmos-test-ca")])
    ca = _pem(folder / "ca.pem", _cert("kosmos-test-ca", ca_key, ca_name, ca_key, True))
    cert = _pem(folder / "server.pem", _cert("localhost", srv_key, ca_name, ca_key, False))
    key = _pem(folder / "server.key", srv_key)
    passwd = folder / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    settings = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous false\npassword_file {passwd}\n"
    broker = Broker(folder, settings, scheme="mqtts")
    broker.start()
    yield broker, ca
    broker.stop()


def test_tls_with_credentials_connects_and_wrong_password_is_reported(
    tls_broker: tuple[Broker, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker, ca = tls_broker
    base = {"broker": broker.url, "topics": ["plant/#"], "username": USER, "tls": {"ca_file": str(ca)}}
    good = EdgeIngest(
        EdgeConfig.model_validate({**base, "password": PASSWORD}), tmp_path / "a", "kosmos-tls-a"
    )
    assert good.start(wait=20), good.last_error
    good.stop()

    bad = EdgeIngest(EdgeConfig.model_validate({**base, "password": WRONG}), tmp_path / "b", "kosmos-tls-b")
    assert not bad.start(wait=3)  # refused, retried in the background, never crashes
    deadline = time.monotonic() + 10
    while bad.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    bad.stop()
    assert bad.last_error is not None and "refused" in bad.last_error

    no_ca = EdgeIngest(EdgeConfig.model_validate({**base, "password": PASSWORD, "tls": None}), tmp_path / "c",
                       "kosmos-tls-c")  # fmt: skip
    assert not no_ca.start(wait=3)  # the system trust store does not know the test CA
    no_ca.stop()
    assert no_ca.last_error is not None and "TLS handshake" in no_ca.last_error

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "connected" in text and "refused" in text
    assert PASSWORD not in text and WRONG not in text
