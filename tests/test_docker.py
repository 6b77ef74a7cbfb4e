"""The Docker deployment files: valid compose file, 2021 shape, overrides that the config accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kosmos_fl.config import load_client_config, load_server_config

REPO = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_file_validates_with_docker_compose() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose not installed; `make test` installs it (scripts/services.sh)")
    res = subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, cwd=REPO, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_compose_has_2021_shape() -> None:
    doc = compose()
    assert "fl_network" in doc["networks"]
    # named, not prefixed with the project: `docker run --network fl_network` (2021) joins it
    assert doc["networks"]["fl_network"]["name"] == "fl_network"
    services = doc["services"]
    assert {"mlflow", "server"} <= set(services)
    clients = [s for s in services if s.startswith("client")]
    assert len(clients) == 3
    for name, svc in services.items():
        assert "fl_network" in svc["networks"], name
        if svc.get("profiles"):  # --profile observability: Prometheus and Grafana, published images
            assert "image" in svc, name
            continue
        dockerfile = REPO / svc["build"]["dockerfile"]
        assert dockerfile.exists(), dockerfile


@pytest.mark.parametrize("service", ["server", "client0", "client1", "client2"])
def test_compose_overrides_are_valid_config(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each service's DYNACONF_ variables, applied to the config baked into its image, validate."""
    svc = compose()["services"][service]
    for key, value in svc["environment"].items():
        monkeypatch.setenv(key, str(value))
    kind = "server" if service == "server" else "client"
    baked = REPO / "docker" / f"{kind}.config.yaml"
    if kind == "server":
        cfg = load_server_config(baked)
        assert cfg.mlflow_server_address == "http://mlflow:5000"
        assert cfg.socketio_address == "0.0.0.0:6000"
    else:
        cfg = load_client_config(baked)
        assert cfg.socketio_address == "server:6000"
        assert cfg.bearings and len(cfg.bearings) == 2


def test_dockerfiles_install_the_pinned_torch_and_start_kosmos() -> None:
    for role in ("server", "client"):
        text = (REPO / "docker" / f"{role}.Dockerfile").read_text(encoding="utf-8")
        assert "torch==2.13.0" in text
        assert f'"kosmos-fl", "{role}"' in text


def _aliases(svc: dict) -> list[str]:
    nets = svc["networks"]
    return [] if isinstance(nets, list) else list((nets.get("fl_network") or {}).get("aliases", []))


def test_compose_services_answer_to_their_2021_names() -> None:
    services = compose()["services"]
    assert "kosmos_fl_server" in _aliases(services["server"])
    for i in range(3):
        assert f"kosmos_fl_client_{i}" in _aliases(services[f"client{i}"])


def test_a_2021_compose_client_reaches_the_compose_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 2021 compose file's client variables, on today's client image, name the server by its
    2021 alias and the SuperLink port the compose server listens on."""
    from kosmos_fl.config import split_address

    old = yaml.safe_load((REPO / "tests" / "fixtures" / "2021" / "kosmos-fl-docker-compose.yaml").read_text())
    env = dict(e.split("=", 1) for e in old["services"]["kosmos_fl_client_0"]["environment"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_client_config(REPO / "docker" / "client.config.yaml")
    server = compose()["services"]["server"]
    sio_host, sio_port = split_address(cfg.socketio_address, "socketio_address")
    assert cfg.flwr_server_address is not None
    flwr_host, flwr_port = split_address(cfg.flwr_server_address, "flwr_server_address")
    assert {sio_host, flwr_host} <= set(_aliases(server))
    assert split_address(server["environment"]["DYNACONF_socketio_address"], "s")[1] == sio_port
    assert split_address(server["environment"]["DYNACONF_flwr_server_address"], "f")[1] == flwr_port


def _compose_config(*args: str) -> dict:
    """The file as ``docker-compose [args] config`` resolves it (profiles, interpolation)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose not installed; `make test` installs it (scripts/services.sh)")
    res = subprocess.run([exe, "-f", str(REPO / "docker-compose.yml"), *args, "config"],
                         capture_output=True, text=True, cwd=REPO, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_work_dir_and_mlflow_data_live_on_named_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: a recreated server container keeps its client registry, sessions and checkpoints
    (work_dir), MLflow its runs and models."""
    doc = _compose_config()
    server = doc["services"]["server"]
    for key, value in server["environment"].items():
        monkeypatch.setenv(key, str(value))
    work_dir = load_server_config(REPO / "docker" / "server.config.yaml").work_dir
    named = set(doc["volumes"])

    def volume_at(service: str, target: str) -> str:
        for v in doc["services"][service]["volumes"]:  # docker-compose 1.x: "source:target[:mode]"
            source, _, rest = v.partition(":")
            if rest.split(":")[0] == target:
                assert not source.startswith(("/", ".")), (service, v)  # a named volume, not a bind
                return source
        raise AssertionError(f"{service}: nothing mounted at {target}")

    assert volume_at("server", work_dir) in named
    assert volume_at("mlflow", "/mlflow") in named
    dockerfile = (REPO / "docker" / "server.Dockerfile").read_text(encoding="utf-8")
    assert f"mkdir -p {work_dir}" in dockerfile  # a new volume takes the image folder's owner (kosmos)


def test_services_start_in_order_of_health() -> None:
    doc = _compose_config()
    services = doc["services"]
    for name in ("mlflow", "server"):
        assert services[name]["healthcheck"]["test"], name
    assert "/health" in " ".join(services["server"]["healthcheck"]["test"])
    assert services["server"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    for name in ("client0", "client1", "client2"):
        assert services[name]["depends_on"] == {"server": {"condition": "service_healthy"}}, name


def test_observability_profile_scrapes_the_unpublished_metrics_port() -> None:
    """`--profile observability` adds Prometheus and Grafana; the server's token-free metrics port
    stays on fl_network, Prometheus (no login) unpublished, Grafana (login) on loopback."""
    doc = _compose_config("--profile", "observability")
    services = doc["services"]
    assert {"prometheus", "grafana"} <= set(services)
    server = services["server"]
    port = int(server["environment"]["DYNACONF_metrics_address"].rsplit(":", 1)[1])
    assert not [p for p in server.get("ports", []) if str(p).split("/")[0].endswith(f":{port}")]
    assert "ports" not in services["prometheus"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000/tcp"]
    assert "server" in yaml.safe_load(server["environment"]["DYNACONF_admin_hosts"])  # Host: server:9464
