"""Issue 16 row 11: the deploy files match the docs.

Compose published 6000 and MLflow's 5000 (no authentication, ``--allowed-hosts "*"``) on every
host address with ``insecure: true``; the k8s ConfigMap mounted ``kosmos-tls`` but set no ``tls.*``
(so operators would "fix" the refusal with insecure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kosmos_fl.config import load_client_config, load_server_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"


def _compose_config(env: dict[str, str] | None = None) -> dict:
    """``docker-compose config``: the file as Compose itself resolves it (interpolation included)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose not installed; `make test` installs it (scripts/services.sh)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KOSMOS_")}
    res = subprocess.run(
        [exe, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True, text=True, cwd=REPO, check=False, env={**clean, **(env or {})},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def _published(doc: dict) -> list[tuple[str, str]]:
    """(service, host address) of every published port; '' means every address."""
    out = []
    for name, svc in doc["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                out.append((name, str(port.get("host_ip", ""))))
            else:  # "ip:host:container" or "host:container"
                parts = str(port).split(":")
                out.append((name, parts[0] if len(parts) == 3 else ""))
    return out


def test_row11_compose_binds_loopback_unless_the_operator_opts_in() -> None:
    published = _published(_compose_config())
    assert published, "the control plane should still be published (on loopback)"
    for service, host_ip in published:
        assert host_ip == "127.0.0.1", (service, host_ip)
    assert "mlflow" not in {s for s, _ in published}  # MLflow has no login: never on the host
    opted = _published(_compose_config({"KOSMOS_BIND": "0.0.0.0"}))
    assert {ip for _, ip in opted} == {"0.0.0.0"}
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert "KOSMOS_BIND" in text.split("services:")[0], "the header must say how to opt in"


def test_row11_mlflow_accepts_only_its_own_host_names() -> None:
    dockerfile = (REPO / "docker" / "mlflow.Dockerfile").read_text(encoding="utf-8")
    manifest = (K8S / "mlflow.yaml").read_text(encoding="utf-8")
    for text in (dockerfile, manifest):
        assert "--allowed-hosts" in text
        assert '"*"' not in text and "--allowed-hosts=*" not in text


def _configmaps() -> dict[str, dict]:
    out = {}
    for path in K8S.glob("*.yaml"):
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if d and d.get("kind") == "ConfigMap":
                out[d["metadata"]["name"]] = d
    return out


def _mounts(kind: str, name: str) -> dict[str, str]:
    """volume name -> mountPath of the workload's first container."""
    for path in K8S.glob("*.yaml"):
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if d and d.get("kind") == kind and d["metadata"]["name"] == name:
                c = d["spec"]["template"]["spec"]["containers"][0]
                return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    raise AssertionError(f"{kind}/{name} not found")


def test_row11_k8s_server_starts_in_production_with_the_mounted_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("DYNACONF_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DYNACONF_admin_token", "from-the-kosmos-admin-secret")
    srv = tmp_path / "server.yaml"
    srv.write_text(_configmaps()["kosmos-server-config"]["data"]["config.yaml"])
    cfg = load_server_config(srv)  # production: TLS and admin_token are required to load at all
    assert cfg.profile == "production" and not cfg.insecure
    tls_dir = _mounts("Deployment", "kosmos-server")["tls"]
    example = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    }
    keys = set(example["kosmos-tls"]["stringData"])
    for path in (cfg.tls.certfile, cfg.tls.keyfile, cfg.tls.ca_certfile):
        assert path is not None and Path(path).parent == Path(tls_dir), path
        assert Path(path).name in keys, path


def test_row11_k8s_clients_use_production_and_their_own_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("DYNACONF_")]:
        monkeypatch.delenv(key)
    cli = tmp_path / "client.yaml"
    cli.write_text(_configmaps()["kosmos-client-config"]["data"]["config.yaml"])
    cfg = load_client_config(cli)
    assert cfg.profile == "production" and cfg.credentials
    assert Path(cfg.credentials) == Path(_mounts("StatefulSet", "kosmos-client")["bundle"])
