"""Start and drive Flower's long-running processes (SuperLink, SuperNode) and submit runs.

Only this module knows Flower's command lines, so a Flower upgrade touches one file. Every process
is started in its own process group and stopped with the whole group, so nothing Flower spawns
(SuperExec, ServerApp, ClientApp processes) outlives it. The SuperLink and the SuperNodes run with
``--isolation process`` by default, each paired with our warm SuperExec (``warm_exec``, a companion
process stopped with them) instead of the SuperExec Flower would start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime.control import APP_DIR as APP_DIR
from kosmos_fl.fl.flower_runtime.control import CONNECTION as CONNECTION
from kosmos_fl.fl.flower_runtime.control import run_status as run_status  # in-process Control API
from kosmos_fl.fl.flower_runtime.control import stop_run as stop_run
from kosmos_fl.fl.flower_runtime.control import submit_run as submit_run
from kosmos_fl.fl.flower_runtime.warm_exec import NO_TRAIN_FLAG, SERVER_TASK_POLL_INTERVAL


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: our venv's tools first on PATH (the SuperLink and
    SuperNode spawn ``flower-superexec``/``flwr-*app`` by name), private FLWR_HOME, no telemetry."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (for per-process runtime APIs on one machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM this child when the process that started it dies, so that a
    crashed or killed server or client never leaves an orphaned SuperLink/SuperNode behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: Processes that belong to this one and stop with it (e.g. a SuperNode's warm SuperExec).
    companions: list[ManagedProcess] = field(default_factory=list)
    #: Where this process's output starts in ``log_path`` (the file is appended to across runs).
    log_start: int = 0

    @classmethod
    def start(
        cls, name: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as fh:
            fh.write(f"$ {shlex.join(args)}\n".encode())
            fh.flush()
            log_start = fh.tell()
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        return cls(name, proc, log_path, log_start=log_start)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def not_running(self) -> list[str]:
        """Names of this process and of its companions that have exited (empty: all run)."""
        return [p.name for p in (self, *self.companions) if not p.alive()]

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``timeout``; companions too."""
        for companion in self.companions:
            companion.stop(timeout)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children that left the group early are still in the session; kill stragglers by group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def write_connection(flwr_home: Path, address: str, root_certificates: Path | None = None) -> None:
    """Point the ``flwr`` CLI (run submission) at the local SuperLink's Control API; over TLS
    verified against ``root_certificates`` when given."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    security = (
        f"insecure = false\nroot-certificates = {json.dumps(str(root_certificates))}\n"
        if root_certificates is not None
        else "insecure = true\n"
    )
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{address}"\n{security}',
        encoding="utf-8",
    )


def wait_http(
    url: str, timeout: float, proc: ManagedProcess | None = None, context: ssl.SSLContext | None = None
) -> None:
    """Wait until ``url`` answers (any HTTP status), failing early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise FederationError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise FederationError(f"{url} did not answer within {timeout:.0f} s")


def start_superlink(
    host: str,
    port: int,
    flwr_home: Path,
    log_path: Path,
    database: Path | None = None,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    node_auth: bool = False,
    warm: bool = True,
) -> ManagedProcess:
    """Start the SuperLink (Fleet, Control and Runtime APIs on ``host:port``).

    ``tls`` = (certfile, keyfile, CA certfile) serves all three APIs over TLS; ``node_auth``
    (needs TLS) only admits SuperNodes whose public key was registered (:func:`register_node`).

    ``warm`` (default) runs the SuperLink with ``--isolation process`` and pairs it with
    :mod:`kosmos_fl.fl.flower_runtime.warm_exec` (a companion: it stops with the SuperLink and logs
    to the same file), whose ServerApp processes start with torch and kosmos_fl already imported;
    otherwise the SuperLink starts Flower's own SuperExec, which cold-starts one per session.
    """
    security = ["--insecure"]
    if tls is not None:
        security = [
            "--ssl-certfile",
            str(tls[0]),
            "--ssl-keyfile",
            str(tls[1]),
            "--ssl-ca-certfile",
            str(tls[2]),
        ]
        if node_auth:
            security.append("--enable-supernode-auth")
    args = [
        _tool("flower-superlink"),
        *security,
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if warm:
        args += ["--isolation", "process"]
    if database is not None:
        args += ["--database", str(database)]
    env = flower_env(flwr_home)
    proc = ManagedProcess.start("SuperLink", args, env, log_path)
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if tls is not None:
        ctx = ssl.create_default_context(cafile=str(tls[2]))
        wait_http(f"https://{local}:{port}/health", 60.0, proc, context=ctx)
        write_connection(flwr_home, f"{local}:{port}", root_certificates=tls[2])
    else:
        wait_http(f"http://{local}:{port}/health", 60.0, proc)
        write_connection(flwr_home, f"{local}:{port}")
    if warm:
        # what the SuperLink would pass its own SuperExec (flower_superlink._get_superexec_command):
        # the Runtime API (same port), the CA when TLS is on, the SuperLink's pid to die with
        runtime_api = f"[{local}]:{port}" if ":" in local else f"{local}:{port}"
        exec_args = [sys.executable, "-m", "kosmos_fl.fl.flower_runtime.warm_exec",
                     "--runtime-api-address", runtime_api, "--parent-pid", str(proc.proc.pid),
                     "--task-poll-interval", SERVER_TASK_POLL_INTERVAL, NO_TRAIN_FLAG]  # fmt: skip
        if tls is not None:
            exec_args += ["--root-certificates", str(tls[2])]
        proc.companions.append(ManagedProcess.start("SuperExec", exec_args, env, log_path))
    return proc


def start_supernode(
    superlink: str,
    node_config: dict[str, Any],
    flwr_home: Path,
    log_path: Path,
    *,
    warm: bool = True,
    root_certificates: Path | None = None,
    auth_private_key: Path | None = None,
) -> ManagedProcess:
    """Start a SuperNode that connects to ``superlink`` and runs our ClientApp for each message.

    ``warm`` (default) pairs it with :mod:`kosmos_fl.fl.flower_runtime.warm_exec`, whose ClientApp
    processes start with torch and the use case already imported; otherwise Flower's own SuperExec
    cold-starts one.
    """
    cfg = " ".join(f"{k}={json.dumps(v)}" for k, v in node_config.items())
    port = free_port()
    security = (
        ["--insecure"] if root_certificates is None else ["--root-certificates", str(root_certificates)]
    )
    if auth_private_key is not None:
        security += ["--auth-supernode-private-key", str(auth_private_key)]
    args = [
        _tool("flower-supernode"),
        *security,
        "--superlink",
        superlink,
        "--node-config",
        cfg,
        "--port",
        str(port),
    ]
    if warm:
        args += ["--isolation", "process"]
    env = flower_env(flwr_home)
    node = ManagedProcess.start("SuperNode", args, env, log_path)
    if warm:
        exec_args = [sys.executable, "-m", "kosmos_fl.fl.flower_runtime.warm_exec", "--runtime-api-address",
                     f"127.0.0.1:{port}", "--parent-pid", str(node.proc.pid)]  # fmt: skip
        node.companions.append(ManagedProcess.start("SuperExec", exec_args, env, log_path))
    return node


_NODE_ID = re.compile(rb"SuperNode ID: (\d+)")


def wait_node_id(node: ManagedProcess, timeout: float) -> int | None:
    """The Flower node id a SuperNode got from the SuperLink, read from its log (Flower 1.42 logs
    ``SuperNode ID: <id>`` once it is registered and prints it nowhere else); None if the SuperNode
    died or did not register within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.alive():
        try:
            with node.log_path.open("rb") as fh:
                fh.seek(node.log_start)
                found = _NODE_ID.search(fh.read())
        except OSError:
            found = None
        if found is not None:
            return int(found.group(1))
        time.sleep(0.05)
    return None


def _flwr_json(
    flwr_home: Path, args: list[str], cwd: Path, timeout: float = 60, failure: str | None = None
) -> dict[str, Any]:
    """Run ``flwr ARGS --format json``; its JSON answer, or FederationError naming ``failure``."""
    res = subprocess.run(
        [_tool("flwr"), *args, "--format", "json"],
        env=flower_env(flwr_home), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    try:
        doc = json.loads(res.stdout[res.stdout.index("{") :])
    except ValueError:
        doc = {}
    if not doc.get("success"):
        msg = doc.get("error-message") or (res.stderr or res.stdout).strip()[-800:]
        raise FederationError(f"{failure or 'flwr ' + ' '.join(args[:2]) + ' failed'}: {msg}")
    return doc


def register_node(flwr_home: Path, public_key: Path, name: str, cwd: Path) -> int:
    """Register a SuperNode's OpenSSH EC public key with the SuperLink; returns its node id."""
    doc = _flwr_json(flwr_home, ["supernode", "register", str(public_key), CONNECTION, "--name", name], cwd)
    return int(doc["node-id"])


def unregister_node(flwr_home: Path, node_id: int, cwd: Path) -> None:
    """Remove a registered SuperNode: its key no longer authenticates."""
    _flwr_json(flwr_home, ["supernode", "unregister", str(node_id), CONNECTION], cwd)


def list_nodes(flwr_home: Path, cwd: Path) -> list[dict[str, Any]]:
    """The SuperLink's registered SuperNodes (``flwr supernode ls``)."""
    return list(_flwr_json(flwr_home, ["supernode", "ls", CONNECTION], cwd).get("nodes", []))
