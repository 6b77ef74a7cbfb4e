"""Client identity: credentials issued at onboarding, checked at every connection.

``kosmos-fl clients add NAME`` creates, for one site,

* a random bearer token (``secrets.token_urlsafe``, 256 bits): the site sends it in the Socket.IO
  handshake; the server stores only its SHA-256 (a fast hash is right for a random 256-bit secret,
  there is nothing to brute-force), compared in constant time;
* an EC P-384 key pair for Flower's SuperNode authentication: the public key is registered with the
  SuperLink by the server, the private key stays at the site and signs every Fleet API call;
* when the development CA key is at hand, a client certificate signed by it;

and writes them, with the CA certificate the site must trust, into a bundle folder the operator
hands to the site (``credentials: <bundle>`` in ``client.yaml``). The server-side registry is one
JSON file (mode 0600) written only by this module's CLI; the running server re-reads it, so
``kosmos-fl clients revoke NAME`` takes effect for the next connection and the next session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kosmos_fl.errors import ConfigError
from kosmos_fl.security.certs import CA_KEY, issue_client, write_private

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CREDENTIALS_FILE = "credentials.json"
NODE_KEY = "supernode.key"
NODE_PUB = "supernode.pub"
BUNDLE_CA = "ca.pem"
#: All a peer is told when its credentials do not check out (issue 16 row 7).
INVALID_CREDENTIALS = (
    "invalid credentials; ask the server's operator to check this site's bundle (`kosmos-fl clients list`)"
)


@dataclass
class ClientEntry:
    """One onboarded client as the server knows it (no secret in here)."""

    name: str
    token_sha256: str
    public_key: str  # OpenSSH text of the SuperNode auth key
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Credentials:
    """What a site reads from its bundle."""

    name: str
    token: str
    node_private_key: Path
    ca_file: Path | None
    client_cert: Path | None
    client_key: Path | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(
            f"client name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class ClientRegistry:
    """The server's list of onboarded clients (``clients.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, ClientEntry]:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return {e["name"]: ClientEntry(**e) for e in doc["clients"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"client registry {self.path} is unreadable ({exc}); restore it from a backup or "
                "onboard the clients again with `kosmos-fl clients add`"
            ) from None

    def _save(self, entries: dict[str, ClientEntry]) -> None:
        doc = {"version": 1, "clients": [asdict(e) for e in entries.values()]}
        write_private(self.path, json.dumps(doc, indent=2).encode("utf-8"))

    def add(self, name: str, out_dir: Path, ca_file: Path | None = None) -> Path:
        """Onboard ``name``: store its token hash and public key, write its bundle; returns it."""
        check_name(name)
        entries = self.load()
        if name in entries:
            state = "active" if entries[name].active else f"revoked at {entries[name].revoked_at}"
            raise ConfigError(f"client {name!r} already exists ({state}); choose another name")
        bundle = out_dir / name
        if bundle.exists() and any(bundle.iterdir()):
            raise ConfigError(
                f"bundle folder {bundle} exists and is not empty; remove it or pass another --out"
            )
        token = secrets.token_urlsafe(32)
        key = ec.generate_private_key(ec.SECP384R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        bundle.mkdir(parents=True, exist_ok=True)
        os.chmod(bundle, 0o700)
        write_private(bundle / NODE_KEY, private)
        (bundle / NODE_PUB).write_bytes(public + b"\n")
        creds: dict[str, Any] = {"name": name, "token": token}
        if ca_file is not None:
            if not ca_file.is_file():
                raise ConfigError(
                    f"CA certificate {ca_file} does not exist; run `kosmos-fl certs init` first"
                )
            shutil.copyfile(ca_file, bundle / BUNDLE_CA)
            if (ca_file.parent / CA_KEY).exists():
                cert, ckey = issue_client(ca_file.parent, name, bundle)
                creds.update(client_cert=cert.name, client_key=ckey.name)
        write_private(bundle / CREDENTIALS_FILE, json.dumps(creds, indent=2).encode("utf-8"))
        entries[name] = ClientEntry(name, _hash(token), public.decode("ascii"), _now())
        self._save(entries)
        return bundle

    def revoke(self, name: str) -> ClientEntry:
        entries = self.load()
        if name not in entries:
            raise ConfigError(f"unknown client {name!r}; see `kosmos-fl clients list`")
        entry = entries[name]
        if entry.active:
            entry.revoked_at = _now()
            self._save(entries)
        return entry

    def verify_peer(self, auth: Any) -> tuple[str | None, str, str]:
        """:meth:`verify` split for the two audiences: (name, what the peer is told, what the
        server logs). The peer learns only that credentials are missing or invalid, never whether
        a client name exists or was revoked (no enumeration); the detail stays in the server log."""
        name, detail = self.verify(auth)
        if name is not None:
            return name, "", ""
        has_token = isinstance(auth, dict) and bool(auth.get("token"))
        return None, (INVALID_CREDENTIALS if has_token else detail), detail

    def verify(self, auth: Any) -> tuple[str | None, str]:
        """Check a handshake's ``auth``; returns (client name, "") or (None, reason)."""
        if not isinstance(auth, dict) or not auth.get("token"):
            return (
                None,
                "no client credentials in the handshake (auth token missing); onboard this site with "
                "`kosmos-fl clients add` and set `credentials` in client.yaml",
            )
        name, token = str(auth.get("client", "")), str(auth["token"])
        entry = self.load().get(name)
        if entry is None:
            return None, f"unknown client {name!r}"
        if not hmac.compare_digest(entry.token_sha256, _hash(token)):
            return None, f"wrong token for client {name!r}"
        if not entry.active:
            return None, f"client {name!r} was revoked at {entry.revoked_at}"
        return name, ""


def load_bundle(path: Path) -> Credentials:
    """Read a site's bundle written by :meth:`ClientRegistry.add`; errors name the fix."""
    try:
        doc = json.loads((path / CREDENTIALS_FILE).read_text(encoding="utf-8"))
        name, token = str(doc["name"]), str(doc["token"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"config key 'credentials': cannot read {path / CREDENTIALS_FILE} ({exc}); point it at the "
            "folder `kosmos-fl clients add NAME` wrote for this site"
        ) from None
    ca = path / BUNDLE_CA
    cert = path / str(doc.get("client_cert", "")) if doc.get("client_cert") else None
    key = path / str(doc.get("client_key", "")) if doc.get("client_key") else None
    return Credentials(name, token, path / NODE_KEY, ca if ca.is_file() else None, cert, key)
