"""Fixed cost of a session: from enough eligible clients to round 1, and from the last round to
the registered model (issue #18).

    .venv/bin/python bench/bench_session_start.py [--sessions 3] [--rounds 2]

Two variants in one run, on generated bearings with real processes on loopback, 3 clients:

(a) Flower's own way, the baseline: a fresh server and fresh clients for every session, the
    ServerApp and each ClientApp message in a cold ``flwr-serverapp`` / ``flwr-clientapp`` process
    (``warm_serverapp: false``, ``warm_clientapp: false``), so every session pays for starting
    SuperLink, SuperNodes, SuperExecs and the ServerApp;
(b) the product's defaults: one server and three long-running clients; the clients keep their
    SuperNode and warm ClientApp template from one session to the next, the server its SuperLink.

Per session it prints
  * ``eligible -> round 1 fetched``: from the moment ``num_clients`` eligible clients were waiting
    (the coordinator creates the session) until the last client's ClientApp had started on the
    round-1 message (round 1 sent + the slowest pickup; an upper bound on "fetched");
  * ``last round -> registered``: from the last round's record until the coordinator had the
    result (model logged, registered, plots) and told the clients;
and the medians over ``--sessions`` sessions of each variant, with the ratio to the baseline.
Targets (issue #18): <= 5 s and <= 3 s, medians of >= 3 sessions on an idle machine. In (b) the
first session starts while the clients' SuperNodes are still starting, so it is printed but the
median is also given over the sessions after it.
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
from kosmos_fl.fl.session import ProgressReader
from kosmos_fl.localfed import LocalFederation

console = Console()
CLIENT_BEARINGS = [["Bearing1_1", "Bearing1_2"], ["Bearing2_1", "Bearing2_2"], ["Bearing3_1", "Bearing3_2"]]
TEST_BEARINGS = ["Bearing1_3", "Bearing2_3"]


def _server(fed: LocalFederation, data: Path, rounds: int, warm: bool) -> None:
    fed.start_server(
        warm_serverapp=warm,
        num_clients=3,
        n_federated_train_epoch=rounds,
        data_path=str(data),
        test_bearings=TEST_BEARINGS,
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "mlp"}},
    )


def _clients(fed: LocalFederation, data: Path, warm: bool, once: bool) -> None:
    for i, bearings in enumerate(CLIENT_BEARINGS):
        fed.start_client(
            f"client-{i}",
            once=once,
            data_path=str(data),
            bearings=bearings,
            warm_clientapp=warm,
            torch_threads=1,
        )


def timings(done: dict[str, Any]) -> tuple[float, float]:
    """(eligible -> round 1 fetched by every client, last round -> registered) of a finished session."""
    if done["status"] != "completed":
        raise SystemExit(f"session failed: {done.get('reason')}")
    events = [e.row() for e in ProgressReader(Path(done["progress"])).read()]
    started = next(e for e in events if e["event"] == "round_started" and e["round"] == 1)
    first = next(e for e in events if e["event"] == "round" and e["round"] == 1)
    last = [e for e in events if e["event"] == "round"][-1]
    fetched = started["at"] + first.get("pickup_seconds_max", 0.0)
    return fetched - done["started_at"], done["finished_at"] - last["at"]


def baseline(root: Path, data: Path, sessions: int, rounds: int) -> list[tuple[float, float]]:
    out = []
    for i in range(sessions):
        fed = LocalFederation(root / f"cold-{i}")
        try:
            _server(fed, data, rounds, warm=False)
            _clients(fed, data, warm=False, once=True)
            out.append(timings(fed.wait_sessions(1, timeout=900)[0]))
        finally:
            fed.stop()
        console.print(f"  (a) session {i + 1}: {out[-1][0]:.2f} s / {out[-1][1]:.2f} s")
    return out


def product(root: Path, data: Path, sessions: int, rounds: int) -> list[tuple[float, float]]:
    fed = LocalFederation(root / "kept")
    try:
        _server(fed, data, rounds, warm=True)
        _clients(fed, data, warm=True, once=False)
        done = fed.wait_sessions(sessions, timeout=900 * sessions)[:sessions]
    finally:
        fed.stop()
    out = [timings(d) for d in done]
    for i, t in enumerate(out):
        console.print(f"  (b) session {i + 1}: {t[0]:.2f} s / {t[1]:.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kosmos-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        generate_dataset(data, bearings=[b for bs in CLIENT_BEARINGS for b in bs] + TEST_BEARINGS, seed=0)
        t0 = time.monotonic()
        console.print(f"(a) Flower's cold start: {args.sessions} sessions, a fresh federation each")
        cold = baseline(root, data, args.sessions, args.rounds)
        console.print(f"(b) product defaults: {args.sessions} sessions on one federation")
        kept = product(root, data, args.sessions + 1, args.rounds)
        console.print(f"(both took {time.monotonic() - t0:.0f} s)")

    table = Table(title=f"Fixed session overhead, 3 clients, mlp, {args.rounds} rounds (seconds, medians)")
    for col in ("variant", "sessions", "eligible -> round 1 fetched", "last round -> registered"):
        table.add_column(col, justify="right")
    rows = {
        "(a) Flower cold start (baseline)": cold,
        "(b) product, all sessions": kept,
        "(b) product, sessions after the first": kept[1:],
    }
    for label, values in rows.items():
        start = statistics.median(v[0] for v in values)
        end = statistics.median(v[1] for v in values)
        table.add_row(label, str(len(values)), f"{start:.2f}", f"{end:.2f}")
    console.print(table)
    base_start = statistics.median(v[0] for v in cold)
    base_end = statistics.median(v[1] for v in cold)
    warm_start = statistics.median(v[0] for v in kept[1:])
    warm_end = statistics.median(v[1] for v in kept[1:])
    console.print(
        f"ratio to the baseline (sessions after the first): start {warm_start / base_start:.2f}, "
        f"end {warm_end / base_end:.2f}; targets <= 5 s and <= 3 s: "
        f"measured {warm_start:.2f} s and {warm_end:.2f} s"
    )


if __name__ == "__main__":
    main()
