"""Kubernetes manifests (deploy/k8s): schema-valid offline, with probes, limits and secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
#: The Kubernetes version the manifests are validated against (kubernetes-validate bundles schemas).
K8S_VERSION = "1.32.0"


def docs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return out


def workloads() -> list[tuple[str, dict]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d)
        for _, d in docs()
        if d["kind"] in ("Deployment", "StatefulSet")
    ]


@pytest.mark.parametrize(
    "name,doc", docs(), ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}"
)
def test_manifest_is_schema_valid(name: str, doc: dict) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except ValidationError as exc:
        pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc}")


def test_validator_rejects_a_broken_manifest() -> None:
    """The check above can fail: a typo in a container field is caught offline."""
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    _, server = next(w for w in workloads() if w[0] == "Deployment/kosmos-server")
    broken = yaml.safe_load(yaml.safe_dump(server))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/health"}}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(server))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert set(kust["resources"]) == files


def test_every_container_has_limits_and_probes() -> None:
    for name, w in workloads():
        for c in w["spec"]["template"]["spec"]["containers"]:
            res = c.get("resources", {})
            assert {"cpu", "memory"} <= set(res.get("limits", {})), (name, c["name"])
            assert {"cpu", "memory"} <= set(res.get("requests", {})), (name, c["name"])
            assert "livenessProbe" in c and "readinessProbe" in c, (name, c["name"])


def test_server_and_mlflow_probe_health_and_mlflow_uses_postgres_and_a_volume() -> None:
    w = dict(workloads())
    server = w["Deployment/kosmos-server"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"
    mlflow = w["Deployment/mlflow"]["spec"]["template"]["spec"]
    c = mlflow["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert any(a.startswith("--backend-store-uri=postgresql://") for a in c["args"])
    assert any(v.get("persistentVolumeClaim") for v in mlflow["volumes"])
    assert "StatefulSet/postgres" in w


def test_secrets_referenced_exist_in_the_example() -> None:
    example = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())
    }
    used: set[tuple[str, str | None]] = set()
    for _, w in workloads():
        spec = w["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
        for v in spec.get("volumes", []):
            if "secret" in v:
                used.add((v["secret"]["secretName"], None))
    assert ("kosmos-admin", "admin_token") in used and ("kosmos-tls", None) in used
    for name, key in used:
        assert name in example, name
        if key:
            assert key in example[name]["stringData"], (name, key)


def test_server_config_map_is_a_valid_server_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kosmos_fl.config import load_client_config, load_server_config

    by_name = {d["metadata"]["name"]: d for _, d in docs() if d["kind"] == "ConfigMap"}
    for key in [k for k in __import__("os").environ if k.startswith("DYNACONF_")]:
        monkeypatch.delenv(key)
    srv = tmp_path / "server.yaml"
    srv.write_text(by_name["kosmos-server-config"]["data"]["config.yaml"])
    monkeypatch.setenv("DYNACONF_admin_token", "from-secret")
    cfg = load_server_config(srv)
    assert cfg.log_format == "json" and cfg.admin_token is not None
    assert cfg.admin_token.get_secret_value() == "from-secret"
    monkeypatch.delenv("DYNACONF_admin_token")
    cli = tmp_path / "client.yaml"
    cli.write_text(by_name["kosmos-client-config"]["data"]["config.yaml"])
    assert load_client_config(cli).socketio_address == "kosmos-server:6000"


def test_scrape_annotations_name_the_token_free_metrics_port() -> None:
    """Issue 20: Prometheus' annotation-based scraping sends no credentials, so the annotated port
    is the server's metrics_address (``/metrics`` without the admin token), open on the container."""
    by_kind = {(d["kind"], d["metadata"]["name"]): d for _, d in docs()}
    service = by_kind[("Service", "kosmos-server")]
    notes = service["metadata"]["annotations"]
    cfg = yaml.safe_load(by_kind[("ConfigMap", "kosmos-server-config")]["data"]["config.yaml"])
    port = int(cfg["metrics_address"].rsplit(":", 1)[1])
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == port
    container = by_kind[("Deployment", "kosmos-server")]["spec"]["template"]["spec"]["containers"][0]
    assert port in {p["containerPort"] for p in container["ports"]}
    assert port in {p["port"] for p in service["spec"]["ports"]}
