"""A warm SuperExec for KOSMoS clients: ClientApp processes that start with everything imported.

Flower runs every message of a ClientApp in a fresh process (``flwr-clientapp``), which here costs
about 7 s of CPU per round just to start Python, import torch, Flower and the use case, and let
torch initialise its autograd and optimiser machinery. This SuperExec keeps one *template* process
that has done all of that once; for each task it forks the template, and the child runs Flower's own
``run_clientapp`` with the task's token. Each task still runs in its own process, exactly as
Flower's isolation intends; only the start-up is shared.

Fork safety: the template stays single-threaded (torch is warmed up with one thread, so no OpenMP
pool exists at fork time, and no network client is created before the fork); the child then sets
its own thread count.

It plugs into Flower's ``run_superexec`` loop (task polling, tokens, plugin) by supplying the
executor; the SuperNode runs with ``--isolation process`` so that it does not start its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

TEMPLATE_FLAG = "--template"
#: How often the SuperExec asks its SuperNode for new tasks (Flower's default is 1 s).
TASK_POLL_INTERVAL = "0.05"
#: In a ClientApp process forked by the warm template: the wall-clock time of the fork, for the
#: latency split. An environment variable, because the template runs as ``__main__`` (a
#: module-level value would not be shared).
FORKED_AT_ENV = "KOSMOS_FL_FORKED_AT"
#: What the template preloads: the apps of the Flower app (FAB). Named, not imported, because the
#: apps sit above this runtime (kosmos_fl.fl.apps imports kosmos_fl.fl.flower_runtime).
PRELOADED_APPS = ("kosmos_fl.fl.apps.server_app", "kosmos_fl.fl.apps.client_app")


class WarmExecutor:
    """Flower executor (``flwr.supercore.superexec.executor.Executor`` protocol) that forks ClientApp
    processes from a warm template; other task types go to Flower's plain subprocess executor."""

    def __init__(self) -> None:
        from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor

        self._fallback = SubprocessExecutor()
        self._template: subprocess.Popen[bytes] | None = None
        self._spawn()

    def _spawn(self) -> None:
        self._template = subprocess.Popen(
            [sys.executable, "-m", "kosmos_fl.fl.flower_runtime.warm_exec", TEMPLATE_FLAG],
            stdin=subprocess.PIPE,
        )

    def get_eligible_capacity(
        self,
        supported_task_types: set[Any],
        *,
        insecure: bool = False,
        root_certificates_path: str | None = None,
    ) -> tuple[set[Any], set[str]]:
        return set(supported_task_types), set()

    def wait_for_capacity(self, task_type: Any = None, **_: Any) -> None:
        return None

    def launch(self, spec: Any) -> Any:
        from flwr.supercore.constant import TaskType
        from flwr.supercore.superexec.executor.types import LaunchResult

        if spec.task_type != TaskType.CLIENT_APP or spec.runtime_dependency_install:
            return self._fallback.launch(spec)
        self.reconcile()
        template = self._template
        assert template is not None and template.stdin is not None
        task = {
            "runtime_api_address": spec.runtime_api_address,
            "token": spec.token,
            "insecure": spec.insecure,
            "root_certificates_path": spec.root_certificates_path,
            "parent_pid": spec.parent_pid,
        }
        try:
            template.stdin.write((json.dumps(task) + "\n").encode())
            template.stdin.flush()
        except OSError:  # the template died: a cold start for this task, a new template after
            self._spawn()
            return self._fallback.launch(spec)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        if self._template is None or self._template.poll() is not None:
            self._spawn()

    def close(self) -> None:
        if self._template is not None and self._template.poll() is None:
            self._template.kill()


def _warm_up_torch() -> None:
    """One tiny training step per built-in model, on one thread: torch imports much of its
    autograd and optimiser machinery lazily on first use (about 3 s here)."""
    import numpy as np
    import torch

    from kosmos_fl.ml.models import Cnn2021, Ffnn2021, RulMlp
    from kosmos_fl.ml.train import train_epochs

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    models = (
        (Ffnn2021(n_features=4, hidden=8), (4,)),
        (Cnn2021(), (129, 21, 2)),
        (RulMlp(4, hidden=(8,)), (4,)),
    )
    for model, shape in models:
        x = rng.normal(size=(4, *shape)).astype(np.float32)
        train_epochs(model, x, np.zeros(4, np.float32), epochs=1, lr=1e-3, batch_size=4, seed=0)


def _preimport_http_client() -> None:
    """Flower's Runtime API client builds an httpx transport per task; httpx imports its backends
    (httpcore, h11) lazily on that first use, about 0.1 s per task unless done here once."""
    import httpx

    httpx.Client().close()


def _template() -> None:
    """Import and warm up everything a ClientApp needs, then fork one child per task line."""
    import contextlib

    import flwr.supercore.tls
    import flwr.supernode.runtime.run_clientapp  # noqa: F401
    import torch

    from kosmos_fl.fl.flower_runtime.object_pulls import use_fast_object_pulls
    from kosmos_fl.usecases import available_usecases

    for module in PRELOADED_APPS:  # the app's FAB module imports both apps
        importlib.import_module(module)
    _preimport_http_client()
    use_fast_object_pulls()

    for ep in available_usecases().values():  # import installed use cases ahead of time
        # an unusable plug-in fails later, inside the task, where Flower reports it
        with contextlib.suppress(Exception):
            ep.load()
    _warm_up_torch()
    threads = os.cpu_count() or 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        if not line.strip():
            continue
        forked_at = time.time()
        if os.fork() == 0:  # child: run the task, never return to the loop
            os.environ[FORKED_AT_ENV] = repr(forked_at)
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                torch.set_num_threads(threads)
                _run_task(json.loads(line))
                code = 0
            except SystemExit as exc:  # run_clientapp ends with flwr_exit -> sys.exit
                code = exc.code if isinstance(exc.code, int) else 0
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)


def _run_task(task: dict[str, Any]) -> None:
    from flwr.supercore.tls import validate_and_resolve_root_certificates
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    run_clientapp(
        runtime_api_address=task["runtime_api_address"],
        token=task["token"],
        insecure=task["insecure"],
        certificates=validate_and_resolve_root_certificates(task["root_certificates_path"], task["insecure"]),
        parent_pid=task["parent_pid"],
        runtime_dependency_install=False,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m kosmos_fl.fl.flower_runtime.warm_exec --runtime-api-address HOST:PORT
    [--parent-pid PID]``."""
    argv = sys.argv[1:] if argv is None else argv
    if TEMPLATE_FLAG in argv:
        _template()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--root-certificates", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", TASK_POLL_INTERVAL)

    import flwr.supercore.superexec.run_superexec as flwr_superexec

    executor = WarmExecutor()
    flwr_superexec.get_executor = lambda *a, **k: executor  # Flower's loop, our executor
    flwr_superexec.run_superexec(
        runtime_api_address=args.runtime_api_address,
        insecure=args.root_certificates is None,
        root_certificates_path=args.root_certificates,
        parent_pid=args.parent_pid,
        runtime_dependency_install=False,
    )


if __name__ == "__main__":
    main()
