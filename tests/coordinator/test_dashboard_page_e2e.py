"""End to end, in a real headless Chromium: the dashboard shows units, client names (as text), one
row per client of a session, the champion, and lets the operator go back to a past session.

A real ``kosmos-fl server`` process serves the page; two real Socket.IO peers register as clients
(one with a name that is HTML); the MLflow store holds a champion, and the server's work_dir holds
two finished sessions written with the classes the ServerApp writes them with. No training runs
(``test_dashboard_e2e.py`` watches a live session): this test takes seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation
from tests.coordinator.test_dashboard_e2e import chromium
from tests.coordinator.test_dashboard_state import NEW, OLD, seed_sessions

pytestmark = pytest.mark.e2e

TOKEN = "page-admin-token"
HOSTILE = '<img src=x onerror="document.body.dataset.xss=1">site-x'
WAIT_MS = 120_000  # a loaded, shared machine (see test_dashboard_e2e.py)


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path / "fed", clean_env)
    yield fed
    assert fed.stop() == [], "processes outlived the federation"


def _seed(fed: LocalFederation) -> None:
    """Two finished sessions in the server's work_dir; version 1 (the older one's) is champion."""
    from mlflow.tracking import MlflowClient

    seed_sessions(fed.root / "server", cut=False)
    ml = MlflowClient(tracking_uri=tracking_uri(str(fed.root / "mlruns")))
    ml.create_registered_model("kosmos-BearingUseCase")
    for _ in range(2):
        ml.create_model_version("kosmos-BearingUseCase", source="file:///nowhere")
    ml.set_registered_model_alias("kosmos-BearingUseCase", "champion", "1")


def _cells(page, table: str, key: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    rows = page.locator(f"#{table} tbody tr")
    out = {}
    for i in range(rows.count()):
        tr = rows.nth(i)
        out[tr.get_attribute(key)] = [c.strip() for c in tr.locator("td").all_inner_texts()]
    return out


@pytest.mark.timeout(600)
def test_dashboard_page_units_names_clients_and_past_sessions(
    federation: LocalFederation, generated_bearings: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _seed(federation)
    federation.start_server(
        num_clients=3,  # two clients connect: no session starts
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3", "Bearing2_3"],
        admin_token=TOKEN,
    )
    peers = []
    for name in ("site-a", HOSTILE):
        sio = socketio.Client(reconnection=False)
        sio.connect(federation.url, transports=["polling"], wait_timeout=30)
        sio.emit("client_criteria", {"criteria_are_met": True, "client_name": name})
        peers.append(sio)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                ctx = browser.new_context(
                    http_credentials={"username": "operator", "password": TOKEN},
                    viewport={"width": 1280, "height": 1600},
                )
                page = ctx.new_page()
                assert page.goto(f"{federation.url}/dashboard").status == 200
                page.wait_for_function(
                    "document.querySelectorAll('#clients tbody tr').length === 2", timeout=WAIT_MS
                )
                page.wait_for_function(
                    "document.getElementById('champion').textContent.startsWith('version')", timeout=WAIT_MS
                )
                page.screenshot(path=str(tmp_path / "dashboard-page.png"), full_page=True)
                _check_live_view(page, peers, federation.root)
                _check_past_session(page)
                _check_start_button(page)
            finally:
                browser.close()
    finally:
        for sio in peers:
            sio.disconnect()


def _check_live_view(page, peers: list[socketio.Client], root: Path) -> None:  # type: ignore[no-untyped-def]
    header = page.get_by_test_id("server").inner_text()
    assert "RUL in hours" in header, header
    assert f"MLflow local store {root / 'mlruns'} (SQLite)" in header and "sqlite:" not in header, header
    heads = page.locator("#rounds thead th").all_inner_texts()
    assert "RMSE (hours)" in heads and "MAE (hours)" in heads, heads
    assert page.locator("#chart-metrics [data-testid=ylabel]").text_content() == "error (hours)"
    assert page.get_by_test_id("units-unit").inner_text() == "(hours)"
    assert "6.000 hours" in (page.locator("#chart-units").text_content() or "")  # Bearing1_3, last round

    # connected clients by name; the HTML name is shown as text, never run or parsed
    names = page.locator("#clients tbody td.name").all_inner_texts()
    assert sorted(names) == sorted(["site-a", HOSTILE]), names
    assert page.locator("#clients img").count() == 0
    assert page.evaluate("document.body.dataset.xss") is None
    visible = page.locator("main").inner_text()
    assert not any(sio.get_sid() and sio.get_sid()[:8] in visible for sio in peers)

    # the live view: the newest session, one row per client of it
    assert page.get_by_test_id("session-id").inner_text() == NEW
    assert page.get_by_test_id("champion").inner_text() == "version 1 of kosmos-BearingUseCase"
    assert (
        page.get_by_test_id("session-champion")
        .inner_text()
        .startswith("version 2 stayed a candidate: RMSE 5")
    )
    per = _cells(page, "per-client", "data-client")
    assert per["site-a"][:5] == ["site-a", "0", "100 samples", "2", "1.5000"], per
    assert per["site-b"][:5] == ["site-b", "1", "200 samples", "1", "4.0000"], per
    assert per["site-b"][6:] == ["2", "round 2: NaN in the update", "no"], per
    assert per["site-a"][8] == "yes"


def _check_past_session(page) -> None:  # type: ignore[no-untyped-def]
    listed = _cells(page, "done", "data-session")
    assert list(listed) == [NEW, OLD], listed
    assert listed[OLD][:5] == [
        OLD,
        "completed",
        "7.0000",
        "models:/kosmos-BearingUseCase/1",
        "became champion",
    ]

    page.get_by_test_id("session-select").select_option(OLD)
    page.wait_for_function(f"document.body.dataset.shown === '{OLD}'", timeout=30_000)
    assert page.get_by_test_id("session-id").inner_text() == f"{OLD} (past session)"
    assert page.get_by_test_id("session-round").inner_text() == "1 / 1"
    assert sorted(_cells(page, "rounds", "data-round")) == ["0", "1"]
    assert page.get_by_test_id("session-champion").inner_text() == (
        "version 1 became champion: first champion (RMSE 7)"
    )
    per = _cells(page, "per-client", "data-client")
    assert (per["site-b"][2], per["site-b"][6]) == ("200 samples", "1"), per
    # the choice holds over polls (the page does not jump back to the live session)
    page.wait_for_timeout(2500)
    assert page.evaluate("document.body.dataset.shown") == OLD

    # a row of the session list selects too; the drop-down follows
    page.locator(f"#done tbody tr[data-session='{NEW}']").click()
    page.wait_for_function(f"document.body.dataset.shown === '{NEW}'", timeout=30_000)
    assert page.get_by_test_id("session-select").input_value() == NEW
    assert sorted(_cells(page, "rounds", "data-round")) == ["0", "1", "2"]


def _check_start_button(page) -> None:  # type: ignore[no-untyped-def]
    """The page's "start a session now" asks the server (admin side, the page's credentials) and
    shows its answer: two of the three clients the config needs wait, so no session starts."""
    page.get_by_test_id("start-session").click()
    page.wait_for_function(
        "document.getElementById('start-answer').textContent.includes('clients wait')", timeout=30_000
    )
    assert page.get_by_test_id("start-answer").inner_text().startswith("2 of 3 eligible clients wait")
