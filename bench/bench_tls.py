"""Round-time cost of TLS (and of TLS + client authentication) against plain training.

    .venv/bin/python bench/bench_tls.py [--rounds 3] [--clients 2]

Runs the same session three times in one go, with real processes on loopback and generated
bearings: (a) plain (baseline), (b) TLS on Socket.IO, the Fleet proxy, the SuperLink and the
SuperNodes, client authentication off, (c) TLS + client credentials (Socket.IO token, Flower
SuperNode authentication: every Fleet call signed and checked). All three go through the Fleet-only
proxy. Prints per-configuration mean round time and train phase over the rounds and the ratios to
plain.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kosmos_fl.data.bearing.generate import generate_dataset
from kosmos_fl.fl.session import read_progress
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.security import certs
from kosmos_fl.security.clients import ClientRegistry

console = Console()
CLIENT_BEARINGS = [["Bearing1_1", "Bearing1_2"], ["Bearing2_1", "Bearing2_2"], ["Bearing3_1", "Bearing3_2"]]


def run(root: Path, data: Path, mode: str, rounds: int, n_clients: int) -> dict[str, Any]:
    fed = LocalFederation(root / mode)
    server: dict[str, Any] = {}
    client_extra: list[dict[str, Any]] = [{} for _ in range(n_clients)]
    if mode != "plain":
        paths = certs.init(root / "certs")
        fed.ca_file = paths.ca_cert
        server["tls"] = {
            "certfile": str(paths.server_cert),
            "keyfile": str(paths.server_key),
            "ca_certfile": str(paths.ca_cert),
        }
        registry = ClientRegistry(root / mode / "clients.json")
        server["clients_file"] = str(registry.path)
        if mode == "tls":
            server["client_auth"] = "off"
            client_extra = [{"tls_ca_certfile": str(paths.ca_cert)} for _ in range(n_clients)]
        else:
            client_extra = [
                {"credentials": str(registry.add(f"site{i}", root / mode / "bundles", paths.ca_cert))}
                for i in range(n_clients)
            ]
    t0 = time.monotonic()
    try:
        fed.start_server(
            num_clients=n_clients,
            n_federated_train_epoch=rounds,
            data_path=str(data),
            test_bearings=["Bearing1_3"],
            usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
            training={"local_epochs": 1, "batch_size": 32},
            timeout=300,
            **server,
        )
        for i in range(n_clients):
            fed.start_client(
                f"site{i}",
                data_path=str(data),
                bearings=CLIENT_BEARINGS[i % 3],
                torch_threads=1,
                **client_extra[i],
            )
        done = fed.wait_sessions(1, timeout=900)[0]
        if done["status"] != "completed":
            raise SystemExit(f"{mode}: session failed: {done.get('reason')}")
        rows = read_progress(Path(done["progress"]))
    finally:
        fed.stop()
    rounds_ = [r for r in rows if r["round"] > 0]
    return {
        "mode": mode,
        "round_s": statistics.mean(r["round_seconds"] for r in rounds_),
        "train_s": statistics.mean(r["train_phase_seconds"] for r in rounds_),
        "compute_s": statistics.mean(r["client_compute_seconds_max"] for r in rounds_),
        "session_s": time.monotonic() - t0,
        "rounds": [round(r["round_seconds"], 2) for r in rounds_],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        root = Path(tmp)
        data = root / "data"
        generate_dataset(
            data,
            bearings=[b for pair in CLIENT_BEARINGS for b in pair] + ["Bearing1_3"],
            seed=3,
            snapshots=(60, 80),
        )
        results = []
        for mode in ("plain", "tls", "tls+auth"):
            results.append(run(root, data, mode, args.rounds, args.clients))
            console.print(results[-1])
    base = results[0]
    table = Table(
        "config",
        "round s (mean)",
        "train phase s",
        "client compute s",
        "rounds s",
        "whole run s",
        "round ratio",
        "train-phase ratio",
        title=f"{args.clients} clients, {args.rounds} rounds",
    )
    for r in results:
        table.add_row(
            r["mode"],
            f"{r['round_s']:.2f}",
            f"{r['train_s']:.2f}",
            f"{r['compute_s']:.2f}",
            " ".join(map(str, r["rounds"])),
            f"{r['session_s']:.1f}",
            f"{r['round_s'] / base['round_s']:.3f}",
            f"{r['train_s'] / base['train_s']:.3f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
