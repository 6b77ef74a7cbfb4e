"""Issue 20: ``kosmos-fl session start`` against a real server process. With a schedule whose next
time is months away an eligible client waits; the command (the admin ``POST /sessions/start``,
behind the admin token) starts the session now, and answers in one line when it cannot."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kosmos_fl.cli import main as cli_main
from kosmos_fl.localfed import LocalFederation as Federation
from tests.e2e.test_secure_federation import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-admin-token-for-the-test"


def _start(fed: Federation, capfd: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    """``kosmos-fl session start --url ... EXTRA`` through the CLI's entry point: (exit code, output)."""
    code = 0
    try:
        cli_main(["session", "start", "--url", fed.url, *extra])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capfd.readouterr()
    return code, (out.out + out.err).strip()


def test_session_start_starts_a_held_back_session_now(
    federation: Federation, generated_bearings: Path, capfd: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no config.yaml here: only --url / --token count
    monkeypatch.delenv("KOSMOS_FL_ADMIN_TOKEN", raising=False)
    fed = federation
    fed.start_server(
        num_clients=1, data_path=str(generated_bearings), test_bearings=["Bearing1_3"],
        n_federated_train_epoch=1, schedule="0 0 1 1 *", admin_token=TOKEN,
    )  # fmt: skip

    code, out = _start(fed, capfd, "--token", "wrong")
    assert code == 2 and out.startswith("error:") and "refused the admin token" in out, out
    code, out = _start(fed, capfd, "--token", TOKEN)
    assert code == 2 and "no session started: 0 of 1 eligible clients wait" in out, out

    fed.start_client("site-a", data_path=str(generated_bearings), bearings=["Bearing1_1"], torch_threads=1)
    wait_for(lambda: (fed.status() or {}).get("waiting") == 1, 180, "the client waiting")
    time.sleep(2)
    assert (fed.status() or {})["session"] is None  # held back by the schedule
    assert "schedule '0 0 1 1 *'" in (fed.root / "logs" / "server.log").read_text(encoding="utf-8")

    # a browser form (not JSON) cannot trigger it, even with the token
    req = urllib.request.Request(
        f"{fed.url}/sessions/start", data=b"x=1", method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 415

    monkeypatch.setenv("KOSMOS_FL_ADMIN_TOKEN", TOKEN)
    code, out = _start(fed, capfd)
    assert code == 0 and out.startswith("session ") and "started with 1 clients" in out, out
    session = (fed.status() or {})["session"]
    assert session is not None and session["session_id"] in out
    code, out = _start(fed, capfd)
    assert code == 2 and f"session {session['session_id']} is running" in out, out
    done = fed.wait_sessions(1, timeout=600)[0]
    assert done["status"] == "completed", done
