"""``kosmos-fl simulate``: options to a simulated session, and a readable report of it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from kosmos_fl.config import load_server_config
from kosmos_fl.fl.simulation.engine import generate_data, run_simulation
from kosmos_fl.fl.tracking import tracking_uri


def run_simulate(
    *,
    clients: int,
    rounds: int | None,
    data: Path | None,
    snapshots: int,
    work_dir: Path,
    mlflow_address: str,
    config: Path | None,
    cpus: int | None,
) -> dict:
    """Run and print one simulated session; returns its result document."""
    console = Console()
    cfg = load_server_config(config)
    work_dir = work_dir.resolve()
    data_path = data.resolve() if data else generate_data(work_dir / "data", snapshots)
    params = {**cfg.usecase.params, **cfg.usecase.broadcast_params}  # as SessionSpec.from_config
    if data is None and cfg.usecase.name == "BearingUseCase":
        params.setdefault("model", "ffnn")  # generated data: the small feature network
    console.print(
        f"simulating {clients} virtual clients, {rounds or cfg.n_federated_train_epoch} round(s), "
        f"{cfg.strategy.name}, data {data_path}"
    )
    result = run_simulation(
        config=cfg,
        num_clients=clients,
        rounds=rounds,
        data_path=data_path,
        work_dir=work_dir,
        mlflow_uri=tracking_uri(mlflow_address),
        experiment=cfg.mlflow_experiment_name if config else "simulation",
        usecase_params=params,
        ray_cpus=cpus,
    )
    table = Table(title=f"simulation {result['session_id']}")
    for col in ("round", "RMSE", "MAE", "PCC", "train loss", "seconds"):
        table.add_column(col, justify="right")
    for r in result["rounds"]:
        m = r["metrics"]
        loss = (r.get("client") or {}).get("train_loss")
        table.add_row(
            str(r["round"]),
            f"{m['RMSE']:.4f}",
            f"{m['MAE']:.4f}",
            f"{m['PCC']:.4f}",
            "–" if loss is None else f"{loss:.4f}",
            f"{r.get('round_seconds', 0.0):.1f}",
        )
    console.print(table)
    console.print(
        f"{clients} virtual clients, {result['samples']} training samples, {result['seconds']:.1f} s; "
        f"MLflow run {result['mlflow_run_id']}; model {result['model_uri']}"
    )
    return result
