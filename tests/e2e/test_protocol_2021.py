"""A client written against the 2021 protocol (plain python-socketio, only ``client_criteria`` and
``start_train``) still registers and receives ``start_train`` with the 2021 keys; malformed answers
are told why and ignored; a session whose clients never join Flower fails loudly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import socketio

from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e

KEYS_2021 = {"client_id", "mlflow_experiment_name", "mlflow_server_address", "mlflow_run_id",
             "flwr_server_address", "usecase_name", "usecase_params"}  # fmt: skip


async def plain_client(
    url: str, answer: Any, wait_for: str, timeout: float = 60, send: bool = True
) -> dict[str, Any]:
    sio = socketio.AsyncClient()
    got: dict[str, Any] = {}
    event = asyncio.Event()

    async def handler(data: Any) -> None:
        got[wait_for] = data
        event.set()

    sio.on(wait_for, handler)
    await sio.connect(url, transports=["polling", "websocket"])
    if send:
        await sio.emit("client_criteria", answer)
    try:
        await asyncio.wait_for(event.wait(), timeout)
    finally:
        await sio.disconnect()
    return got[wait_for]


def test_2021_client_receives_start_train(federation: Federation, generated_bearings: Path) -> None:
    federation.start_server(
        num_clients=1, n_federated_train_epoch=1, data_path=str(generated_bearings),
        test_bearings=["Bearing1_3"], join_timeout=3, criteria_timeout=1, mlflow_experiment_name="proto",
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
    )  # fmt: skip
    url = f"http://127.0.0.1:{federation.sio_port}"

    async def scenario() -> tuple[dict[str, Any], ...]:
        silent = await plain_client(url, None, "error", send=False)
        bad = await plain_client(url, {"criteria": "yes"}, "error")
        worse = await plain_client(url, "not a dict", "error")
        no = await plain_client(url, {"criteria_are_met": False, "reason": "disk full"}, "registered")
        sio = socketio.AsyncClient()
        box: dict[str, Any] = {}
        start, end = asyncio.Event(), asyncio.Event()

        @sio.on("start_train")
        async def _start(data: dict[str, Any]) -> None:
            box["start"] = data
            start.set()

        @sio.on("end_train")
        async def _end(data: dict[str, Any]) -> None:
            box["end"] = data
            end.set()

        await sio.connect(url)
        await sio.emit("client_criteria", {"criteria_are_met": True})
        await asyncio.wait_for(start.wait(), 90)
        await asyncio.wait_for(end.wait(), 120)  # it never starts Flower: the session must fail
        await sio.disconnect()
        return silent, bad, worse, no, box

    silent, bad, worse, no, box = asyncio.run(scenario())
    assert "no client_criteria received" in silent["message"]
    assert "criteria_are_met" in bad["message"]
    assert "JSON object" in worse["message"]
    assert no["state"] == "ineligible" and no["reason"] == "disk full"
    start = box["start"]
    assert set(start) >= KEYS_2021
    assert start["client_id"] == 0
    assert start["usecase_name"] == "BearingUseCase"
    assert start["flwr_server_address"] == f"127.0.0.1:{federation.flwr_port}"
    assert box["end"]["status"] == "failed"
    assert "joined" in box["end"]["reason"]
    st = federation.status()
    assert st is not None and st["sessions_done"][0]["status"] == "failed"
