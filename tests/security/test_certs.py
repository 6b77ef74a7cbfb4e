"""Development CA: files, permissions, SANs, and a real TLS handshake against the certificates."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from kosmos_fl.cli import main
from kosmos_fl.security import certs


def test_init_writes_ca_server_and_client_certs_with_private_keys_0600(tmp_path: Path) -> None:
    paths = certs.init(tmp_path / "c", hosts=["fl.example.org", "10.1.2.3"], clients=["site-a"])
    for key in (paths.ca_key, paths.server_key, paths.clients["site-a"][1]):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "fl.example.org"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    client = x509.load_pem_x509_certificate(paths.clients["site-a"][0].read_bytes())
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "site-a"


def test_init_keeps_an_existing_ca_unless_forced(tmp_path: Path) -> None:
    first = certs.init(tmp_path).ca_cert.read_bytes()
    assert certs.init(tmp_path, hosts=["other"]).ca_cert.read_bytes() == first
    assert certs.init(tmp_path, force=True).ca_cert.read_bytes() != first


def test_tls_handshake_verifies_server_against_the_ca_and_rejects_a_foreign_ca(tmp_path: Path) -> None:
    paths = certs.init(tmp_path / "good")
    other = certs.init(tmp_path / "other")
    srv_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv_ctx.load_cert_chain(paths.server_cert, paths.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with srv_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    good = ssl.create_default_context(cafile=str(paths.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        good.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        assert s.recv(2) == b"ok"
    bad = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", port)) as raw:
        bad.wrap_socket(raw, server_hostname="127.0.0.1")
    t.join(5)
    listener.close()


def test_cli_certs_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["certs", "init", "--dir", str(tmp_path / "c"), "--host", "server.local"])
    out = capsys.readouterr().out
    assert "ca_certfile:" in out and (tmp_path / "c" / "server.pem").exists()
