"""What federated evaluation (``federated_evaluation: true``) costs per round in a real session.

    .venv/bin/python bench/bench_federated_eval.py [--rounds 3] [--clients 2] [--only bearing|turbofan]

Runs one session per model with real processes on loopback (server, clients, Flower, MLflow) on
generated data and federated evaluation on (``fraction_evaluate: 1``): the bearing use case with
the 2021 design (``cnn`` on spectra) and the turbofan default (``lstm``). Per round the server
records the round without it (``round_seconds``: train phase, aggregation, its own held-out
evaluation) and the extra time the clients' evaluation on their own data took
(``federated_eval_seconds``: sending the model, each ClientApp loading its data and predicting, the
replies). The summary prints both and their ratio; the default of ``federated_evaluation`` follows
from it (docs/MIGRATING-2021.md, "Evaluation").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from kosmos_fl.data.bearing.generate import generate_dataset
from kosmos_fl.data.turbofan.generate import generate_cmapss
from kosmos_fl.fl.session import read_progress
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.usecases.turbofan import TurbofanUseCase


def _session(root: Path, server: dict[str, Any], clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fed = LocalFederation(root)
    try:
        fed.start_server(**server)
        for i, values in enumerate(clients):
            fed.start_client(f"site-{i}", torch_threads=1, **values)
        done = fed.wait_sessions(1, timeout=1800)[0]
        if done["status"] != "completed":
            raise SystemExit(f"session failed: {done.get('reason')}")
        return [r for r in read_progress(Path(done["progress"])) if r["round"] > 0]
    finally:
        fed.stop()


def bearing(root: Path, rounds: int, n: int) -> list[dict[str, Any]]:
    names = [f"Bearing{c}_{i}" for c in (1, 2, 3) for i in (1, 2)][: 2 * n]
    data = root / "bearings"
    generate_dataset(data, bearings=[*names, "Bearing1_3"], seed=3, snapshots=(150, 200))
    server = {
        "num_clients": n, "n_federated_train_epoch": rounds, "data_path": str(data),
        "test_bearings": ["Bearing1_3"], "federated_evaluation": True,
        "usecase": {"name": "BearingUseCase", "broadcast_params": {"model": "cnn"}},
        "training": {"local_epochs": 1, "batch_size": 32},
    }  # fmt: skip
    clients = [{"data_path": str(data), "bearings": names[2 * i : 2 * i + 2]} for i in range(n)]
    return _session(root / "b", server, clients)


def turbofan(root: Path, rounds: int, n: int) -> list[dict[str, Any]]:
    train = generate_cmapss(root / "cmapss", units=20, seed=3)
    parts, test = TurbofanUseCase({}).federation_split(train, n)
    server = {
        "num_clients": n, "n_federated_train_epoch": rounds, "data_path": str(train), "test_units": test,
        "federated_evaluation": True, "usecase": {"name": "TurbofanUseCase"},
        "training": {"local_epochs": 1, "batch_size": 64},
    }  # fmt: skip
    clients = [{"data_path": str(train), "units": p, "usecase": {"name": "TurbofanUseCase"}} for p in parts]
    return _session(root / "t", server, clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--only", choices=["bearing", "turbofan"], help="Run one of the two sessions.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (("bearing cnn (2021 design)", bearing), ("turbofan lstm (default)", turbofan)):
            if args.only and not name.startswith(args.only):
                continue
            rows = run(Path(tmp), args.rounds, args.clients)
            fe = [r["client"]["federated_eval_seconds"] for r in rows]  # logged with the client metrics
            rs = [r["round_seconds"] for r in rows]
            ratio = statistics.mean(f / r for f, r in zip(fe, rs, strict=True))
            print(
                f"{name}: round {statistics.mean(rs):.1f} s, federated evaluation "
                f"{statistics.mean(fe):.1f} s more per round (+{100 * ratio:.0f} %); per round "
                f"{', '.join(f'{f:.1f}/{r:.1f}' for f, r in zip(fe, rs, strict=True))} s"
            )


if __name__ == "__main__":
    main()
