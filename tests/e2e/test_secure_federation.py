"""End to end over TLS with client credentials: a full session (server + 2 clients, 2 rounds), then
refusals: an unknown client and an unregistered SuperNode, a revoked client and its SuperNode key
after ``kosmos-fl clients revoke``; and ``--insecure`` prints its warning."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kosmos_fl.cli import main
from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.localfed import CLI, LocalFederation
from kosmos_fl.security import certs
from kosmos_fl.security.clients import ClientRegistry
from kosmos_fl.security.policy import INSECURE_WARNING

pytestmark = pytest.mark.e2e


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path / "fed", clean_env)
    yield fed
    assert fed.stop() == [], "processes outlived the federation"


def text(path: Path) -> str:
    """A log with rich's line wrapping undone (whitespace runs become one space)."""
    return " ".join(path.read_text(errors="replace").split())


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def supernode_refused(fed: LocalFederation, key: Path, ca: Path, name: str) -> str:
    """Start a bare SuperNode with ``key`` against the public Fleet address; return its log once
    the SuperLink has refused it (Flower ends a SuperNode whose key is not registered)."""
    node = runtime.start_supernode(
        f"127.0.0.1:{fed.flwr_port}",
        {"client-id": 9},
        fed.root / name / "flower",
        fed.root / name / "node.log",
        warm=False,
        root_certificates=ca,
        auth_private_key=key,
    )
    fed.procs.append(node)
    wait_for(lambda: not node.alive(), 180, f"the {name} SuperNode to be turned away")
    assert node.proc.returncode != 0
    return text(node.log_path)


def processes_with(text: str) -> list[int]:
    """Pids of running processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


UNITS = {"site-a": ["Bearing1_1", "Bearing1_2"], "site-b": ["Bearing2_1", "Bearing2_2"]}


def secure_server(
    fed: LocalFederation, tmp_path: Path, data: Path, num_clients: int = 2, **values: Any
) -> tuple[certs.CertPaths, dict[str, Path]]:
    """Dev CA, site-a and site-b onboarded, a production-profile server over TLS."""
    paths = certs.init(tmp_path / "certs")
    fed.ca_file = paths.ca_cert
    registry = ClientRegistry(tmp_path / "server-security" / "clients.json")
    bundles = {n: registry.add(n, tmp_path / "bundles", paths.ca_cert) for n in UNITS}
    fed.start_server(
        num_clients=num_clients,
        data_path=str(data),
        test_bearings=["Bearing1_3", "Bearing2_3"],
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        tls={
            "certfile": str(paths.server_cert),
            "keyfile": str(paths.server_key),
            "ca_certfile": str(paths.ca_cert),
        },
        clients_file=str(registry.path),
        profile="production",
        admin_token="e2e-admin-token-0123456789abcdef",  # production requires one (issue 16 row 2)
        timeout=240,
        **values,
    )
    return paths, bundles


def test_full_session_over_tls_with_client_credentials(
    federation: LocalFederation, generated_bearings: Path, tmp_path: Path
) -> None:
    fed = federation
    _, bundles = secure_server(
        fed,
        tmp_path,
        generated_bearings,
        n_federated_train_epoch=2,
        mlflow_experiment_name="e2e-tls",
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 16},
    )
    # plain HTTP to the TLS listeners does not work
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{fed.sio_port}/status", timeout=3).read()
    clients = [
        fed.start_client(
            n,
            data_path=str(generated_bearings),
            bearings=UNITS[n],
            credentials=str(bundles[n]),
            profile="production",
        )
        for n in UNITS
    ]
    done = fed.wait_sessions(1, timeout=600)[0]
    assert done["status"] == "completed", done
    for c in clients:
        assert c.proc.wait(180) == 0, c.tail(30)
    server_log = text(fed.root / "logs" / "server.log")
    assert "as site-a" in server_log and "as site-b" in server_log
    assert "client site-a: SuperNode key registered" in server_log
    node_logs = "".join(p.read_text() for p in (fed.root / "clients").glob("*/supernode.log"))
    assert "--root-certificates" in node_logs and "--auth-supernode-private-key" in node_logs
    superlink_log = (fed.root / "server" / "logs" / "superlink.log").read_text()
    assert "--enable-supernode-auth" in superlink_log and "--ssl-certfile" in superlink_log


def test_unknown_and_revoked_clients_are_refused_on_both_channels(
    federation: LocalFederation, generated_bearings: Path, tmp_path: Path
) -> None:
    fed = federation
    paths, bundles = secure_server(fed, tmp_path, generated_bearings, num_clients=3)  # no session starts
    server_log = fed.root / "logs" / "server.log"
    wait_for(lambda: "client site-b: SuperNode key registered" in text(server_log), 180, "keys registered")

    # positive control: an onboarded client gets in (and waits for a second one)
    ok = fed.start_client(
        "site-a",
        once=False,
        data_path=str(generated_bearings),
        bearings=UNITS["site-a"],
        credentials=str(bundles["site-a"]),
    )
    wait_for(
        lambda: any(
            c.get("name") == "site-a" and c["state"] == "eligible"
            for c in (fed.status() or {}).get("clients", [])
        ),
        180,
        "site-a to register",
    )

    # an unknown client (valid-looking bundle, name not onboarded) is refused; it is told only
    # "invalid credentials" (no name enumeration, issue 16 row 7), the server logs the detail
    forged = tmp_path / "bundles" / "mallory"
    shutil.copytree(bundles["site-a"], forged)
    doc = json.loads((forged / "credentials.json").read_text())
    (forged / "credentials.json").write_text(json.dumps({**doc, "name": "mallory"}))
    intruder = fed.start_client("mallory", data_path=str(generated_bearings), credentials=str(forged))
    assert intruder.proc.wait(180) == 2, intruder.tail(20)
    assert "refused this client: invalid credentials" in text(intruder.log_path)
    assert "unknown client" not in text(intruder.log_path)
    assert "refused connection from 127.0.0.1: unknown client 'mallory'" in text(server_log)

    # a SuperNode with an unregistered key is refused by the SuperLink (Flower node authentication)
    stray = ec.generate_private_key(ec.SECP384R1())
    stray_key = tmp_path / "stray.key"
    stray_key.write_bytes(
        stray.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    stray_log = supernode_refused(fed, stray_key, paths.ca_cert, "stray")
    assert "Failed to activate SuperNode" in stray_log, stray_log[-2000:]

    # site-b waits for a session too, with the SuperNode it keeps between sessions (issue 18)
    waiting_b = fed.start_client(
        "site-b",
        once=False,
        data_path=str(generated_bearings),
        bearings=UNITS["site-b"],
        credentials=str(bundles["site-b"]),
    )
    b_log = fed.root / "logs" / "site-b.log"
    wait_for(lambda: "SuperNode" in text(b_log) and "joined" in text(b_log), 180, "site-b's SuperNode")
    node_file = str(fed.root / "clients" / "site-b" / "node.json")
    assert processes_with(node_file), "site-b's kept SuperNode is not running"

    # revoke site-b: its key is unregistered from the SuperLink, its connection is closed and its
    # next one refused, so it cannot take part in the next session (site-a keeps waiting alone);
    # the client stops its kept SuperNode and exits
    main(["clients", "revoke", "site-b", "-c", str(fed.root / "config" / "server.yaml")])
    assert waiting_b.proc.wait(180) == 2, waiting_b.tail(20)
    assert "refused this client: invalid credentials" in text(b_log)
    wait_for(lambda: not processes_with(node_file), 30, "site-b's SuperNode to stop")
    wait_for(
        lambda: "client site-b: SuperNode key unregistered" in text(server_log),
        180,
        "the revoked key to be unregistered",
    )
    again = fed.start_client(
        "site-b",
        data_path=str(generated_bearings),
        bearings=UNITS["site-b"],
        credentials=str(bundles["site-b"]),
    )
    assert again.proc.wait(180) == 2, again.tail(20)
    assert "refused this client: invalid credentials" in text(again.log_path)
    assert "client 'site-b' was revoked at" in text(server_log)
    revoked_log = supernode_refused(fed, bundles["site-b"] / "supernode.key", paths.ca_cert, "revoked")
    assert "Failed to activate SuperNode" in revoked_log, revoked_log[-2000:]
    assert ok.alive() and (fed.status() or {}).get("session") is None


def test_insecure_flag_warns_and_plain_network_listen_is_refused_without_it(
    federation: LocalFederation, tmp_path: Path
) -> None:
    fed = federation
    cfg = fed.root / "net.yaml"
    cfg.write_text(
        f"socketio_address: 0.0.0.0:{fed.sio_port}\nflwr_server_address: 0.0.0.0:{fed.flwr_port}\n"
        f"work_dir: {fed.root / 'w'}\nmlflow_server_address: {fed.root / 'mlruns'}\n"
    )
    import subprocess

    res = subprocess.run(
        [*CLI, "server", "-c", str(cfg)],
        env=fed.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2 and "pass --insecure to accept plain traffic" in res.stderr, res.stderr
    proc = runtime.ManagedProcess.start(
        "server", [*CLI, "server", "-c", str(cfg), "--insecure"], fed.env, fed.root / "logs" / "insecure.log"
    )
    fed.procs.append(proc)
    fed.server = proc
    wait_for(lambda: fed.status() is not None, 180, "the --insecure server")
    assert " ".join(INSECURE_WARNING.split()) in text(proc.log_path)
