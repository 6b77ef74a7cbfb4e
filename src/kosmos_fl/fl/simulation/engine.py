"""``kosmos-fl simulate``: the session's ServerApp and ClientApp on Flower's simulation engine.

For strategy research before a roll-out: N virtual clients (Ray actors, Flower extra
``flwr[simulation]``) run exactly the production apps (:mod:`kosmos_fl.fl.apps.server_app`,
:mod:`kosmos_fl.fl.apps.client_app`) in one process tree, with central evaluation, MLflow logging and
the model registry as in a real session. The training units of a real or generated data set are
pooled and partitioned sample-wise (every N-th sample) across the virtual clients; the use case's
held-out units stay with the server.

The apps read their specs from files as in production; the thin wrappers below only tell each
virtual node which spec file is its own (Flower gives simulated nodes ``partition-id`` and
``num-partitions`` as node config, nothing else).

Scale: a Ray worker serves many virtual clients in turn, so it loads the pooled data once and each
client slices its partition (:mod:`kosmos_fl.fl.rounds.partition`); and Flower's message extractor is
replaced for the run by one that does not scan every stored message for every node every 0.1 s
(:func:`fast_dispatch`). Measured figures: ``bench/bench_simulation.py`` and bench/README.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from kosmos_fl.errors import DataError, FederationError, KosmosError
from kosmos_fl.fl.session import (
    NodeSpec,
    SessionFolder,
    SessionSettings,
    SessionSpec,
    decide_quorum,
    read_progress,
)
from kosmos_fl.fl.simulation.fast_dispatch import fast_dispatch

log = logging.getLogger("kosmos_fl.simulation")

SESSION_ENV = "KOSMOS_SIM_SESSION_FILE"
NODES_ENV = "KOSMOS_SIM_NODE_DIR"

serverapp = ServerApp()
clientapp = ClientApp()


@serverapp.main()
def _server_main(grid: Grid, context: Context) -> None:
    from kosmos_fl.fl.apps import server_app

    run_config = {**context.run_config, "session-file": os.environ[SESSION_ENV]}
    ctx = Context(context.run_id, context.node_id, context.node_config, context.state, run_config)
    server_app.main(grid, ctx)


@clientapp.train()
def _client_train(msg: Message, context: Context) -> Message:
    from kosmos_fl.fl.apps import client_app

    pid = int(context.node_config["partition-id"])
    node_config = {
        **context.node_config,
        "session-file": str(Path(os.environ[NODES_ENV]) / f"node-{pid}.json"),
    }
    ctx = Context(context.run_id, context.node_id, node_config, context.state, context.run_config)
    return client_app.train(msg, ctx)


def _start_ray(init_args: dict[str, Any], attempts: int = 3) -> None:
    """Start Ray before Flower does (Flower then uses it), retrying: Ray gives its raylet a fixed
    30 s to register, which a heavily loaded machine misses (seen here at load 39 on 2 cores)."""
    import ray
    from tenacity import Retrying, stop_after_attempt, wait_fixed

    for attempt in Retrying(stop=stop_after_attempt(attempts), wait=wait_fixed(2), reraise=True):
        with attempt:
            try:
                ray.init(include_dashboard=False, **init_args)
            except Exception as exc:
                log.warning("Ray did not start (%s); retrying", exc)
                _shutdown_ray()
                raise


def ray_leftovers(nodes_dir: str | None) -> list[Any]:
    """Processes of a simulation still alive: Ray detaches its workers from the driver's process
    tree, so they are found by the session's own environment variable, which they inherit."""
    import psutil

    found = []
    if not nodes_dir:
        return found
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and p.environ().get(NODES_ENV) == nodes_dir:
                found.append(p)
    return found


def _shutdown_ray(grace: float = 10.0) -> None:
    """Stop Ray and every process it started. Its worker processes outlive ``ray.shutdown()``
    (seen here for minutes on a busy machine), so they are waited for, then killed."""
    import psutil
    import ray

    if ray.is_initialized():
        ray.shutdown()
    procs = ray_leftovers(os.environ.get(NODES_ENV))
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


@dataclass(frozen=True)
class SimulationPlan:
    """Where the data is and how it is split."""

    data_path: Path
    train_units: list[str]
    test_units: list[str]
    samples: int


def plan_data(usecase: Any, data_path: Path, num_clients: int) -> SimulationPlan:
    """Pool the use case's client units (its own federation split) and check every virtual
    client gets at least one sample."""
    split = None
    for k in range(3, 0, -1):  # the use case's own split; bearings know up to 3 sites
        try:
            split = usecase.federation_split(data_path, k)
            break
        except DataError as exc:
            last = exc
    if split is None:
        raise last
    clients, test = split
    train = sorted({u for units in clients for u in units})
    samples = len(usecase.client_dataset(data_path, train))
    if samples < num_clients:
        raise DataError(
            f"{num_clients} virtual clients need at least {num_clients} training samples, but "
            f"{', '.join(train)} in {data_path} hold {samples}; use fewer --clients or more data "
            "(--snapshots for generated data)"
        )
    return SimulationPlan(data_path, train, list(test), samples)


def generate_data(out: Path, snapshots: int, seed: int = 7) -> Path:
    """A generated FEMTO-format set: the 2021 bearings of two sites plus two test bearings."""
    from kosmos_fl.data.bearing.generate import generate_dataset

    marker = out / f".generated-{snapshots}-{seed}"
    if not marker.exists():
        generate_dataset(
            out,
            bearings=["Bearing1_1", "Bearing1_2", "Bearing2_1", "Bearing2_2", "Bearing1_3", "Bearing2_3"],
            seed=seed,
            snapshots=(snapshots, snapshots + snapshots // 4),
        )
        marker.write_text("", encoding="utf-8")
    return out


def run_simulation(
    *,
    config: SessionSettings,
    num_clients: int,
    data_path: Path,
    work_dir: Path,
    mlflow_uri: str,
    experiment: str = "simulation",
    rounds: int | None = None,
    usecase_params: dict[str, Any] | None = None,
    client_cpus: float = 1.0,
    ray_cpus: int | None = None,
    round_timeout: float = 3600.0,
) -> dict[str, Any]:
    """Run one simulated session of ``config`` (a server config's session settings, as a real
    session would take them) with ``num_clients`` virtual clients; ``rounds`` and
    ``usecase_params`` override the config's. Returns the ServerApp's result plus per-round
    progress."""
    flwr_run_simulation = _require_engine()
    from kosmos_fl.fl.tracking import create_session_run
    from kosmos_fl.usecases import load_usecase

    if num_clients < 1:
        raise KosmosError("--clients must be at least 1")
    params = (
        dict(usecase_params)
        if usecase_params is not None
        else {**config.usecase.params, **config.usecase.broadcast_params}
    )
    usecase_name = config.usecase.name
    usecase = load_usecase(usecase_name, params)
    plan = plan_data(usecase, data_path, num_clients)
    session_id = time.strftime("sim-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    out_dir = (work_dir / "sessions" / session_id).resolve()
    folder = SessionFolder(out_dir)
    run_id = create_session_run(
        mlflow_uri,
        experiment,
        f"simulation-{session_id}",
        {
            "kosmos.session_id": session_id,
            "kosmos.simulation": "true",
            "kosmos.virtual_clients": str(num_clients),
        },
    )
    rounds = rounds or config.n_federated_train_epoch
    spec = SessionSpec.from_config(
        config,
        session_id=session_id,
        out_dir=str(out_dir),
        usecase_name=usecase_name,
        usecase_version=usecase.version,
        usecase_params=params,
        num_clients=num_clients,
        # virtual clients never drop out, so a round waits for all of them
        min_fit_clients=decide_quorum(num_clients, min_fit_clients=num_clients),
        num_rounds=rounds,
        data_path=str(plan.data_path.resolve()),
        test_names=plan.test_units,
        mlflow_tracking_uri=mlflow_uri,
        mlflow_run_id=run_id,
        registered_model_name=f"kosmos-{usecase_name}-simulation",
        round_timeout=round_timeout,
        join_timeout=600.0,
    )
    spec_path = _write_specs(spec, folder, plan)
    log.info(
        "simulation %s: %d virtual clients, %d rounds, %d samples",
        session_id,
        num_clients,
        rounds,
        plan.samples,
    )
    t0 = time.monotonic()
    _run_engine(flwr_run_simulation, spec_path, folder.nodes_dir, num_clients, client_cpus, ray_cpus)
    return _collect(folder, run_id, time.monotonic() - t0, plan.samples)


def _write_specs(spec: SessionSpec, folder: SessionFolder, plan: SimulationPlan) -> Path:
    """The session spec and one node spec per virtual client (its partition of the pooled data)."""
    spec_path = spec.write(folder.spec_file)
    for i in range(spec.num_clients):
        NodeSpec(
            session_id=spec.session_id,
            client_id=i,
            usecase_name=spec.usecase_name,
            usecase_version=spec.usecase_version,
            usecase_params=spec.usecase_params,
            data_path=str(plan.data_path.resolve()),
            selection=plan.train_units,
            torch_threads=1,
            partition=(i, spec.num_clients),
        ).write(folder.nodes_dir / f"node-{i}.json")
    return spec_path


def _run_engine(
    flwr_run_simulation: Any,
    spec_path: Path,
    nodes_dir: Path,
    num_clients: int,
    client_cpus: float,
    ray_cpus: int | None,
) -> None:
    """Run the apps on Flower's simulation engine (Ray), with the faster dispatch."""
    os.environ[SESSION_ENV] = str(spec_path)
    os.environ[NODES_ENV] = str(nodes_dir)
    init_args: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    if ray_cpus:
        init_args["num_cpus"] = ray_cpus
    backend_config = {"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}, "init_args": init_args}
    try:
        _start_ray(init_args)
        with fast_dispatch():
            flwr_run_simulation(
                server_app=serverapp,
                client_app=clientapp,
                num_supernodes=num_clients,
                backend_config=backend_config,
            )
    finally:
        _shutdown_ray()


def _require_engine() -> Any:
    """Flower's ``run_simulation``; fails early, with the fix, when the extra is missing."""
    try:
        import ray  # noqa: F401
        from flwr.simulation import run_simulation as flwr_run_simulation
    except ImportError:
        raise FederationError(
            "Flower's simulation engine (Ray) is not installed; "
            "install the extra: pip install 'kosmos-fl[simulation]'"
        ) from None
    return flwr_run_simulation


def _collect(folder: SessionFolder, run_id: str, seconds: float, samples: int) -> dict[str, Any]:
    """The ServerApp's result plus the simulation's figures and per-round progress."""
    result = folder.read_result()
    if result is None:
        raise FederationError(f"the simulation ended without a result; see the log above ({folder.path})")
    if result.get("status") != "completed":
        raise FederationError(f"the simulated session failed: {result.get('reason')}")
    result.update(
        {
            "session_id": folder.path.name,
            "mlflow_run_id": run_id,
            "out_dir": str(folder.path),
            "seconds": seconds,
            "samples": samples,
            "rounds": read_progress(folder.progress_file),
        }
    )
    return result
