"""A warm SuperExec: ClientApp and ServerApp processes that start with everything imported.

Flower runs every message of a ClientApp in a fresh process (``flwr-clientapp``), which here costs
about 7 s of CPU per round just to start Python, import torch, Flower and the use case, and let
torch initialise its autograd and optimiser machinery; likewise every session's ServerApp
(``flwr-serverapp``, about 3 s of CPU on the critical path of each session, issue 18). This
SuperExec keeps one *template* process that has done all of that once; for each task it forks the
template, and the child runs Flower's own ``run_clientapp`` or ``run_serverapp`` (what the
``flwr-clientapp`` / ``flwr-serverapp`` entry points run) with the task's token. Each task still
runs in its own process, exactly as Flower's isolation intends; only the start-up is shared.

Clients pair it with their SuperNode, the server with its SuperLink (both run with ``--isolation
process`` so that they do not start Flower's own SuperExec; see ``runtime.start_supernode`` and
``runtime.start_superlink``). Other task types, and any task while the template is not running,
go to Flower's plain subprocess executor (a cold start; a new template is started at once).

Fork safety: the template stays single-threaded (torch is warmed up with one thread, so no OpenMP
pool exists at fork time, and no network client is created before the fork); the child then sets
its own thread count and drops the template's exit handlers.

Freshness: the template lives as long as its SuperExec, i.e. one server or client process (the
SuperLink's or SuperNode's companion). Code changed on disk (a new kosmos_fl install) reaches the
apps when that process restarts, as it would reach the server or client itself; a running template
never outlives the process that started it.

It plugs into Flower's ``run_superexec`` loop (task polling, tokens, plugin) by supplying the
executor.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

TEMPLATE_FLAG = "--template"
#: The template warms up inference only: the SuperLink's (ServerApps evaluate, never train), which
#: saves about 1.2 s of CPU at server start, when the clients are starting too.
NO_TRAIN_FLAG = "--no-train-warmup"
#: How often the SuperExec asks its SuperNode for new tasks (Flower's default is 1 s): a ClientApp
#: starts each round, so each poll interval counts in every round.
TASK_POLL_INTERVAL = "0.05"
#: How often the SuperLink's SuperExec asks for a new ServerApp task: it polls for the whole life of
#: the server, and at 0.05 s that costs about 12 % of a core while idle (0.25 s: see start_superlink);
#: a ServerApp starts once per session.
SERVER_TASK_POLL_INTERVAL = "0.25"
#: In an app process forked by the warm template: the wall-clock time of the fork (the ClientApp
#: reports it for the latency split). An environment variable, because the template runs as ``__main__`` (a
#: module-level value would not be shared).
FORKED_AT_ENV = "KOSMOS_FL_FORKED_AT"
#: What the template preloads: the apps of the Flower app (FAB). Named, not imported, because the
#: apps sit above this runtime (kosmos_fl.fl.apps imports kosmos_fl.fl.flower_runtime).
PRELOADED_APPS = ("kosmos_fl.fl.apps.server_app", "kosmos_fl.fl.apps.client_app")
#: Task types the template forks (``flwr.supercore.constant.TaskType`` values); others start cold.
WARM_TASK_TYPES = frozenset({"flwr-clientapp", "flwr-serverapp"})


class WarmExecutor:
    """Flower executor (``flwr.supercore.superexec.executor.Executor`` protocol) that forks ClientApp
    processes from a warm template; other task types go to Flower's plain subprocess executor."""

    def __init__(self, train: bool = True) -> None:
        from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor

        self._fallback = SubprocessExecutor()
        self._template: subprocess.Popen[bytes] | None = None
        self._train = train
        self._spawn()

    def _spawn(self) -> None:
        self._template = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kosmos_fl.fl.flower_runtime.warm_exec",
                TEMPLATE_FLAG,
                *([] if self._train else [NO_TRAIN_FLAG]),
            ],
            stdin=subprocess.PIPE,
            # the template (and so its forks) dies with this SuperExec: nothing outlives a killed
            # client or server (issue 21), even when only its process group was killed
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
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
        from flwr.supercore.superexec.executor.types import LaunchResult

        if str(spec.task_type) not in WARM_TASK_TYPES or spec.runtime_dependency_install:
            return self._fallback.launch(spec)
        task = {
            "task_type": str(spec.task_type),
            "runtime_api_address": spec.runtime_api_address,
            "token": spec.token,
            "insecure": spec.insecure,
            "root_certificates_path": spec.root_certificates_path,
            "parent_pid": spec.parent_pid,
            "suppress_output": spec.suppress_output,
        }
        template = self._template
        try:
            if template is None or template.poll() is not None or template.stdin is None:
                raise BrokenPipeError("the template is not running")
            template.stdin.write((json.dumps(task) + "\n").encode())
            template.stdin.flush()
        except OSError:  # the template died: a cold start for this task, a new template after
            _say(f"{spec.task_type} task {spec.task_id}: cold start (the template is not running)")
            self._spawn()
            return self._fallback.launch(spec)
        _say(f"{spec.task_type} task {spec.task_id}: forked from the template")
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        if self._template is None or self._template.poll() is not None:
            self._spawn()

    def close(self) -> None:
        if self._template is not None and self._template.poll() is None:
            self._template.kill()


def _say(text: str) -> None:
    """One line in the SuperExec's log (the SuperLink's or SuperNode's log file)."""
    print(f"warm SuperExec: {text}", file=sys.stderr, flush=True)


def _warmup_models() -> list[tuple[Any, tuple[int, ...]]]:
    """One small instance of each built-in model with its input shape. Also imports what the use
    cases load only where a model runs (the model code, pandas for prediction tables), so a forked
    task finds it imported."""
    import pandas  # noqa: F401

    from kosmos_fl.ml.models import Cnn2021, Ffnn2021, RulMlp
    from kosmos_fl.ml.ratio import RulRatio

    return [
        (Ffnn2021(n_features=4, hidden=8), (4,)),
        (Cnn2021(), (129, 21, 2)),
        (RulMlp(4, hidden=(8,)), (4,)),
        (RulRatio(4), (4,)),
    ]


def _warm_up_torch() -> None:
    """One tiny training step per built-in model, on one thread: torch imports much of its
    autograd and optimiser machinery lazily on first use (about 3 s here)."""
    import numpy as np
    import torch

    from kosmos_fl.ml.train import train_epochs

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for model, shape in _warmup_models():
        x = rng.normal(size=(4, *shape)).astype(np.float32)
        train_epochs(model, x, np.ones(4, np.float32), epochs=1, lr=1e-3, batch_size=4, seed=0)


def _preimport_http_client() -> None:
    """Flower's Runtime API client builds an httpx transport per task; httpx imports its backends
    (httpcore, h11) lazily on that first use, about 0.1 s per task unless done here once."""
    import httpx

    httpx.Client().close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel SIGKILLs this process when its parent dies (PR_SET_PDEATHSIG). The
    template gets it before it warms up (its parent: the SuperExec), and every task forked from
    the template gets it too (its parent: the template), so a killed site's tasks go within a
    moment: Flower's parent-pid monitor alone took over 10 s on a loaded machine (issue 21)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _warm_up_inference() -> None:
    """One forward pass per built-in model without autograd (what a ServerApp's evaluation runs)."""
    import torch

    torch.set_num_threads(1)
    with torch.no_grad():
        for model, shape in _warmup_models():
            model.eval()
            model(torch.zeros((2, *shape)))


def _template(train: bool = True) -> None:
    """Import and warm up everything a ClientApp or ServerApp needs, then fork one child per task
    line."""
    import contextlib

    started = time.monotonic()
    import flwr.supercore.logger
    import flwr.supercore.tls
    import flwr.superlink.runtime.run_serverapp
    import flwr.supernode.runtime.run_clientapp  # noqa: F401

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
    if train:
        _warm_up_torch()
    else:
        _warm_up_inference()
    _say(f"template ready in {time.monotonic() - started:.1f} s")
    threads = os.cpu_count() or 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        if not line.strip():
            continue
        forked_at, template = time.time(), os.getpid()
        if os.fork() == 0:  # child: run the task, never return to the loop
            code = 1
            try:
                _die_with_parent()  # the task dies with the template, which dies with its SuperExec
                if os.getppid() != template:  # the template died before the line above
                    os._exit(1)
                atexit._clear()  # the template's exit handlers are not the task's
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = _child(json.loads(line), threads, forked_at)
                atexit._run_exitfuncs()  # those the task registered, as at a normal exit
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)


def _child(task: dict[str, Any], threads: int, forked_at: float) -> int:
    """Run one task in a forked child; its exit code (Flower's apps end with ``sys.exit``)."""
    import torch

    os.environ[FORKED_AT_ENV] = repr(forked_at)
    _set_process_name(task.get("task_type", "flwr-clientapp"))
    if task.get("suppress_output"):  # as Flower's SubprocessExecutor: a ServerApp's output goes
        devnull = os.open(os.devnull, os.O_WRONLY)  # only to its log queue (``flwr log``)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    torch.set_num_threads(threads)
    try:
        _run_task(task)
    except SystemExit as exc:  # run_clientapp / run_serverapp end with flwr_exit -> sys.exit
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return 0


def _set_process_name(name: str) -> None:
    """Linux: the child's name in ps/top (``comm``) becomes Flower's (``flwr-serverapp`` /
    ``flwr-clientapp``), as a cold-started process's would be; its command line stays the
    template's."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _run_task(task: dict[str, Any]) -> None:
    from flwr.supercore.tls import validate_and_resolve_root_certificates

    certificates = validate_and_resolve_root_certificates(task["root_certificates_path"], task["insecure"])
    if task.get("task_type", "flwr-clientapp") == "flwr-serverapp":
        _run_serverapp(task, certificates)
        return
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    run_clientapp(
        runtime_api_address=task["runtime_api_address"],
        token=task["token"],
        insecure=task["insecure"],
        certificates=certificates,
        parent_pid=task["parent_pid"],
        runtime_dependency_install=False,
    )


def _run_serverapp(task: dict[str, Any], certificates: bytes | None) -> None:
    """What Flower's ``flwr-serverapp`` entry point runs (flwr/superlink/cli/flwr_serverapp.py):
    output mirrored to a log queue that the ServerApp uploads to the SuperLink, then the app."""
    from logging import INFO
    from queue import Queue

    from flwr.supercore import log
    from flwr.supercore.logger import mirror_output_to_queue, restore_output
    from flwr.superlink.runtime import run_serverapp

    log_queue: Queue[str | None] = Queue()
    mirror_output_to_queue(log_queue)
    try:
        log(INFO, "Start `flwr-serverapp` process (forked from the warm template)")
        run_serverapp(
            runtime_api_address=task["runtime_api_address"],
            log_queue=log_queue,
            token=task["token"],
            insecure=task["insecure"],
            certificates=certificates,
            parent_pid=task["parent_pid"],
            runtime_dependency_install=False,
        )
    finally:
        restore_output()


def main(argv: list[str] | None = None) -> None:
    """``python -m kosmos_fl.fl.flower_runtime.warm_exec --runtime-api-address HOST:PORT
    [--parent-pid PID] [--root-certificates CA] [--task-poll-interval SECONDS]
    [--superexec-auth-secret-file FILE]``."""
    argv = sys.argv[1:] if argv is None else argv
    if TEMPLATE_FLAG in argv:
        _template(train=NO_TRAIN_FLAG not in argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--root-certificates", default=None)
    parser.add_argument("--task-poll-interval", default=TASK_POLL_INTERVAL, help="seconds")
    parser.add_argument(NO_TRAIN_FLAG, action="store_true", help="the template warms up inference only")
    parser.add_argument("--superexec-auth-secret-file", default=None, help="signs Runtime API calls")
    args = parser.parse_args(argv)
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", args.task_poll_interval)

    import flwr.supercore.superexec.run_superexec as flwr_superexec

    executor = WarmExecutor(train=not args.no_train_warmup)
    flwr_superexec.get_executor = lambda *a, **k: executor  # Flower's loop, our executor
    flwr_superexec.run_superexec(
        runtime_api_address=args.runtime_api_address,
        insecure=args.root_certificates is None,
        root_certificates_path=args.root_certificates,
        superexec_auth_secret=_read_secret(args.superexec_auth_secret_file),
        parent_pid=args.parent_pid,
        runtime_dependency_install=False,
    )


def _read_secret(path: str | None) -> bytes | None:
    """The SuperExec authentication secret (Flower's, as ``flower-superexec`` reads it)."""
    from flwr.supercore.auth.superexec_secret import load_superexec_auth_secret

    return load_superexec_auth_secret(path) if path else None


if __name__ == "__main__":
    main()
