"""Where the SuperLink listens (issue 16 row 9) and what runs beside it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime import netns, runtime, superlink


@pytest.mark.parametrize("tls", [False, True])
def test_the_superlink_runs_with_the_warm_superexec_as_its_companion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls: bool
) -> None:
    """What Flower's SuperLink would pass its own SuperExec: the Runtime API (same port), the CA
    when TLS is on, the SuperLink's pid; and the same log file."""
    started: list[tuple[str, list[str], Path]] = []

    class _Proc:
        pid = 31337

    def start(
        name: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Any = None, preexec: Any = None
    ) -> Any:
        started.append((name, args, log_path))
        return runtime.ManagedProcess(name, _Proc(), log_path)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime.ManagedProcess, "start", start)
    monkeypatch.setattr(superlink, "wait_http", lambda *a, **k: None)
    monkeypatch.setattr(superlink.ssl, "create_default_context", lambda **k: None)
    certs = (tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem") if tls else None
    log_path = tmp_path / "superlink.log"
    link = superlink.start_superlink(
        "127.0.0.1", 9999, tmp_path / "flwr", log_path, tls=certs, isolation="loopback"
    )
    (name, args, log), (exec_name, exec_args, exec_log) = started
    assert name == "SuperLink" and args[args.index("--isolation") + 1] == "process"
    assert exec_name == "SuperExec" and exec_log == log == log_path
    assert exec_args[1:3] == ["-m", "kosmos_fl.fl.flower_runtime.warm_exec"]
    assert exec_args[exec_args.index("--runtime-api-address") + 1] == "127.0.0.1:9999"
    assert exec_args[exec_args.index("--parent-pid") + 1] == "31337"
    # it polls for the server's whole life: not at the SuperNodes' 20 per second
    assert float(exec_args[exec_args.index("--task-poll-interval") + 1]) >= 0.2
    assert ("--root-certificates" in exec_args) is tls
    if tls:
        assert exec_args[exec_args.index("--root-certificates") + 1] == str(tmp_path / "ca.pem")
    assert [c.name for c in link.companions] == ["SuperExec"]
    # Flower's SuperExec authentication: only the holder of this 0600 secret can take ServerApp tasks
    secret = args[args.index("--superexec-auth-secret-file") + 1]
    assert exec_args[exec_args.index("--superexec-auth-secret-file") + 1] == secret
    assert Path(secret).stat().st_mode & 0o777 == 0o600 and len(Path(secret).read_bytes()) == 32

    started.clear()
    cold = superlink.start_superlink(
        "127.0.0.1", 9999, tmp_path / "flwr", log_path, tls=certs, warm=False, isolation="loopback"
    )
    assert [n for n, _, _ in started] == ["SuperLink"] and "--isolation" not in started[0][1]
    assert (
        "--superexec-auth-secret-file" not in started[0][1]
    )  # Flower ignores it without a SuperExec of ours
    assert cold.companions == []


REFUSE = (
    "import sys; print('SuperLink bridge: no private network namespace: [Errno 1] unshare: "
    f"Operation not permitted', file=sys.stderr); sys.exit({netns.REFUSED})"
)


@pytest.fixture
def refused_bridge(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The bridge exits as it does where the kernel refuses user namespaces (Docker's default
    seccomp profile); the SuperLink is a sleeping stand-in. Returns the names started."""
    started: list[str] = []
    real_start = runtime.ManagedProcess.start

    def start(name: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Any = None,
              preexec: Any = None) -> runtime.ManagedProcess:  # fmt: skip
        started.append(name)
        if name == "SuperLink bridge":
            args = [sys.executable, "-c", REFUSE]
        elif name == "SuperLink":
            assert preexec is None  # not joining a namespace that does not exist
            args = [sys.executable, "-c", "import time; time.sleep(30)"]
        return real_start(name, args, env, log_path, cwd, preexec)

    monkeypatch.setattr(runtime.ManagedProcess, "start", start)
    monkeypatch.setattr(superlink, "wait_http", lambda *a, **k: None)
    return started


def test_auto_falls_back_to_loopback_with_one_warning_naming_the_risk(
    refused_bridge: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kosmos_fl.flower"):
        link = superlink.start_superlink("127.0.0.1", 9999, tmp_path / "flwr", tmp_path / "l.log", warm=False)
    try:
        assert refused_bridge == ["SuperLink bridge", "SuperLink"]
        [warning] = [r.getMessage() for r in caplog.records]
        assert "any local user can call its Control API" in warning and "Operation not permitted" in warning
        assert "superlink_isolation: loopback" in warning
        assert runtime.endpoint(tmp_path / "flwr").unix_socket is None
    finally:
        link.stop(1.0)


def test_netns_when_the_kernel_refuses_is_an_error_naming_the_fix(
    refused_bridge: list[str], tmp_path: Path
) -> None:
    with pytest.raises(
        FederationError, match=r"superlink_isolation: netns: .*Operation not permitted.*loopback"
    ):
        superlink.start_superlink(
            "127.0.0.1", 9999, tmp_path / "flwr", tmp_path / "l.log", warm=False, isolation="netns"
        )
    assert refused_bridge == ["SuperLink bridge"]  # no SuperLink on the host's loopback


def test_an_unknown_isolation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match="use one of auto, netns, loopback"):
        superlink.start_superlink("127.0.0.1", 9999, tmp_path, tmp_path / "l.log", isolation="docker")
