"""``kosmos-fl demo``: a whole federation on one machine, as separate processes on loopback.

The server and three clients are started exactly as an operator would start them (``kosmos-fl
server`` / ``kosmos-fl client`` with their own config files), so the demo exercises the real control
plane, Flower runtime and MLflow store. Without ``--data`` it trains on generated bearings in the
real FEMTO on-disk format, so it needs no download.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from kosmos_fl.config import ServerConfig, load_server_config
from kosmos_fl.errors import DataError, FederationError
from kosmos_fl.fl.session import SessionFolder, read_progress
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.usecases import load_usecase

console = Console()
NUM_CLIENTS = 3
#: Rounds of the demo on generated bearings when neither ``--rounds`` nor ``--data`` is given: the
#: configured rounds are tuned for the real bearings (13 in config.yaml); the generated demo is a
#: quick look at the machinery and keeps its 3-minute goal with fewer rounds.
GENERATED_DEMO_ROUNDS = 10


def _generated_data(work_dir: Path) -> Path:
    from kosmos_fl.data.bearing.generate import generate_dataset

    out = work_dir / "data"
    marker = out / ".generated"
    if not marker.exists():
        console.print(f"Generating bearing recordings in the FEMTO format under {out} ...")
        generate_dataset(out, bearings=17, seed=0)
        marker.write_text("seed=0\n", encoding="utf-8")
    return out


def with_usecase_defaults(values: dict[str, Any], usecase: str) -> dict[str, Any]:
    """Server settings ``values`` switched to ``usecase`` with its default parameters and its
    :attr:`~kosmos_fl.usecases.base.UseCase.session_defaults` (rounds, training): the config's
    rounds and training block were tuned for the config's own use case."""
    tuned = load_usecase(usecase).session_defaults
    return {
        **values,
        "usecase": {"name": usecase, "params": {}, "broadcast_params": {}},
        "training": {**values["training"], **tuned.get("training", {})},
        "n_federated_train_epoch": tuned.get("n_federated_train_epoch", values["n_federated_train_epoch"]),
    }


def _table(rows: list[dict[str, Any]], status: str) -> Table:
    table = Table(title=f"KOSMoS federated session - {status}", title_justify="left")
    for col in ("round", "RMSE", "MAE", "PCC", "train loss", "round s", "elapsed s"):
        table.add_column(col, justify="right")
    for r in rows:
        m = r.get("metrics", {})
        c = r.get("client", {})
        table.add_row(
            str(r["round"]),
            f"{m.get('RMSE', float('nan')):.4f}",
            f"{m.get('MAE', float('nan')):.4f}",
            f"{m.get('PCC', float('nan')):.3f}",
            f"{c['train_loss']:.4f}" if "train_loss" in c else "-",
            f"{r.get('round_seconds', 0.0):.1f}",
            f"{r.get('seconds', 0.0):.1f}",
        )
    return table


def run_demo(
    *,
    data: Path | None,
    usecase: str,
    rounds: int | None,
    work_dir: Path,
    mlflow_address: str,
    config: Path | None,
) -> dict[str, Any]:
    """Run the demo federation; returns the session summary (also printed)."""
    t_start = time.monotonic()
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = config or (Path("config.yaml") if Path("config.yaml").is_file() else None)
    base = load_server_config(config)
    if config is None:  # the built-in defaults are the shipped config.yaml's values
        console.print("No ./config.yaml here: using the built-in defaults (those of the shipped config.yaml)")
    else:
        console.print(f"Config: {config}")
    if usecase != "BearingUseCase" and data is None:
        raise DataError(f"the {usecase} demo needs --data (its data file or folder)")
    data_dir = data.resolve() if data is not None else _generated_data(work_dir)
    if not data_dir.exists():
        raise DataError(f"--data {data_dir} does not exist; point it at a folder of bearing folders")
    uc_params = (
        {**base.usecase.params, **base.usecase.broadcast_params} if base.usecase.name == usecase else {}
    )
    clients, test = load_usecase(usecase, uc_params).federation_split(data_dir, NUM_CLIENTS)
    missing = [b for b in base.test_bearings if b not in test]
    if missing and usecase == "BearingUseCase":
        console.print(f"[yellow]Configured test bearings not in {data_dir}: {', '.join(missing)}[/]")

    mlflow_dir = mlflow_address if "://" in mlflow_address else str(Path(mlflow_address).resolve())
    values = _server_values(base, usecase, data, rounds, data_dir, test, mlflow_dir, work_dir)
    fed = LocalFederation(work_dir)
    try:
        fed.start_server(**values)
        for i, units in enumerate(clients):
            fed.start_client(
                f"client-{i}",
                data_path=str(data_dir),
                bearings=units,
                torch_threads=1,
                usecase={"name": usecase, "params": values["usecase"].get("params", {})},
            )
        console.print(
            f"Server on 127.0.0.1:{fed.sio_port} (Flower {fed.flwr_port}), {NUM_CLIENTS} clients "
            f"started; logs in {work_dir / 'logs'}"
        )
        summary = _follow(fed)
        took = time.monotonic() - t_start  # the session's end; stopping the processes comes after
    finally:
        leftovers = fed.stop()
        if leftovers:
            console.print(f"[yellow]had to kill {len(leftovers)} process(es) that did not stop[/]")
    if summary["status"] != "completed":
        raise FederationError(f"the demo session failed: {summary.get('reason')}")
    _report(summary, took, mlflow_dir, data_dir)
    return summary


def _server_values(
    base: ServerConfig,
    usecase: str,
    data: Path | None,
    rounds: int | None,
    data_dir: Path,
    test: list[str],
    mlflow_dir: str,
    work_dir: Path,
) -> dict[str, Any]:
    """The demo server's settings: the config's, with this demo's clients, data, test units,
    stores and rounds (a short run on generated data unless ``--rounds`` says otherwise)."""
    values = {
        **json.loads(base.model_dump_json()),
        "num_clients": NUM_CLIENTS,
        "mlflow_server_address": mlflow_dir,
        "data_path": str(data_dir),
        "test_bearings": test,
        "work_dir": str(work_dir / "server"),
    }
    if base.usecase.name != usecase:
        values = with_usecase_defaults(values, usecase)
    if rounds is None and data is None and usecase == "BearingUseCase":
        rounds = min(base.n_federated_train_epoch, GENERATED_DEMO_ROUNDS)
    if rounds is not None:
        values["n_federated_train_epoch"] = rounds
    for key in ("flwr_server_address", "socketio_address"):
        values.pop(key)
    return values


def _report(summary: dict[str, Any], seconds: float, mlflow_dir: str, data_dir: Path) -> None:
    """Where the results are and the command to try the model (never wrapped: users copy them)."""

    def show(*parts: Any) -> None:
        console.print(*parts, soft_wrap=True)

    uri = summary["model_uri"]
    show(f"\n[bold green]Session completed[/] in {seconds:.0f} s (demo start to session end)")
    show(
        f"MLflow run     : {summary['mlflow_run_id']} (store: {mlflow_dir}; "
        f"browse with `mlflow ui --backend-store-uri sqlite:///{mlflow_dir}/mlflow.db`)"
        if "://" not in mlflow_dir
        else f"MLflow run     : {summary['mlflow_run_id']} at {mlflow_dir}"
    )
    show(f"Plots          : {Path(summary['out_dir']) / 'plots'}")
    show(f"Registered model: {uri}")
    show(f"Try            : kosmos-fl predict --model {uri} --data {data_dir} --mlflow {mlflow_dir}")


def _follow(fed: LocalFederation) -> dict[str, Any]:
    """Show the live per-round table until the session ends; returns the session summary."""
    rows: list[dict[str, Any]] = []
    state = "waiting for clients"
    with Live(_table(rows, state), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            assert fed.server is not None
            if not fed.server.alive():
                raise FederationError(f"the server exited:\n{fed.server.tail()}")
            st = fed.status() or {}
            if st.get("sessions_done"):
                done = st["sessions_done"][0]
                live.update(_table(read_progress(Path(done["progress"])), done["status"]))
                return done
            dead = [p for p in fed.procs[1:] if p.proc.poll() not in (0, None)]
            if dead and not st.get("session"):
                raise FederationError(f"{dead[0].name} exited:\n{dead[0].tail()}")
            if st.get("session"):
                state = st["session"]["status"]
                rows = read_progress(SessionFolder(Path(st["session"]["out_dir"])).progress_file)
            live.update(_table(rows, state))
            time.sleep(0.5)
