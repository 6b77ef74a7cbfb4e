"""A development certificate authority, made with the ``cryptography`` package.

``kosmos-fl certs init`` writes a CA, a server certificate (SANs: localhost, 127.0.0.1 and the
given host names / IP addresses) and optionally client certificates, all signed by that CA. Private
keys are written with mode 0600. This is for development and closed test beds; a production
federation should use certificates from the operator's own PKI (the config only needs file paths).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kosmos_fl.errors import ConfigError
from kosmos_fl.fl.session import write_atomic

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
#: Validity of development certificates (days).
VALID_DAYS = 825


@dataclass(frozen=True)
class CertPaths:
    """Where ``certs init`` put the files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]


def write_private(path: Path, data: bytes) -> None:
    """Write secret material readable by the owner only (0600 from the first byte on)."""
    write_atomic(path, data, private=True)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kosmos-fl development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    common_name: str = "kosmos-fl development CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate that may only sign end-entity certificates."""
    key = _key()
    cert = (
        _builder(_name(common_name), _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    server_hosts: list[str] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by the CA: a server certificate when ``server_hosts`` is given
    (those become its SANs), else a client certificate for ``common_name``."""
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts is not None else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_hosts is not None:
        builder = builder.add_extension(_san(server_hosts), critical=False)
    else:
        builder = builder.add_extension(_san([common_name]), critical=False)
    return builder.sign(ca_key, hashes.SHA384()), key


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA written by :func:`init`, or a one-line error naming the missing file."""
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the CA in {directory} ({exc}); run `kosmos-fl certs init --dir {directory}` first"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{directory / CA_KEY} is not an EC private key; recreate it with `kosmos-fl certs init`"
        )
    return cert, key


def issue_client(directory: Path, name: str, out_dir: Path) -> tuple[Path, Path]:
    """Issue a client certificate ``name`` from the CA in ``directory`` into ``out_dir``."""
    ca_cert, ca_key = load_ca(directory)
    cert, key = issue(ca_cert, ca_key, name)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    _write_cert(cert_path, cert)
    write_private(key_path, _pem_key(key))
    return cert_path, key_path


def init(
    directory: Path, hosts: list[str] | None = None, clients: list[str] | None = None, *, force: bool = False
) -> CertPaths:
    """Create the CA, the server certificate and client certificates in ``directory``.

    An existing CA is kept (so certificates already handed out stay valid) unless ``force``; the
    server certificate is always re-issued so new ``hosts`` take effect.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CA_CERT).exists() and (directory / CA_KEY).exists() and not force:
        ca_cert, ca_key = load_ca(directory)
    else:
        ca_cert, ca_key = make_ca()
        _write_cert(directory / CA_CERT, ca_cert)
        write_private(directory / CA_KEY, _pem_key(ca_key))
    server_hosts = [*DEFAULT_HOSTS, *(hosts or [])]
    cert, key = issue(ca_cert, ca_key, server_hosts[-1] if hosts else "localhost", server_hosts=server_hosts)
    _write_cert(directory / SERVER_CERT, cert)
    write_private(directory / SERVER_KEY, _pem_key(key))
    issued = {name: issue_client(directory, name, directory / "clients") for name in clients or []}
    return CertPaths(
        directory / CA_CERT, directory / CA_KEY, directory / SERVER_CERT, directory / SERVER_KEY, issued
    )
