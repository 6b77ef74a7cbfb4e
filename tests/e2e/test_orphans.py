"""Issue 21: nothing a client spawned outlives it. SIGKILL of the client's process group (not its
whole process tree) mid-round, as ``kill -9 -<pgid>`` or a crashing supervisor would: every
process that carries the client's environment marker (SuperNode, warm SuperExec, its template and
the ClientApp forked from it) is gone within 10 s. Issue 20: a client stopped with SIGTERM
mid-session says goodbye in one line."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from kosmos_fl.localfed import LocalFederation as Federation
from tests.e2e.test_faults import _client, _server, _wait_event

pytestmark = pytest.mark.e2e

MARK = "KOSMOS_FL_TEST_MARK"


def marked(value: str) -> list[str]:
    """Command lines of the live processes whose environment holds ``MARK=value``."""
    needle = f"{MARK}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                status = (proc / "status").read_text()
                if "State:\tZ" not in status:  # a zombie is dead, only not yet reaped
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160])
        except OSError:
            continue
    return found


def test_a_client_killed_by_process_group_leaves_no_process_behind(
    federation: Federation, generated_bearings: Path
) -> None:
    fed = federation
    fed.start_server(
        **_server(generated_bearings, num_clients=2, min_fit_clients=1, n_federated_train_epoch=3)
    )
    mark = uuid.uuid4().hex
    # site-a trains on (3 s a round), so the session still runs when it gets its SIGTERM below
    slow = {"KOSMOS_FL_FAULT": "delay:3"}
    stays = fed.start_client("site-a", extra_env=slow, **_client(generated_bearings, "Bearing1_1"))
    victim = fed.start_client(
        "site-b",
        extra_env={"KOSMOS_FL_FAULT": "delay:120", MARK: mark},  # its ClientApp sleeps in round 1
        **_client(generated_bearings, "Bearing2_1"),
    )
    _wait_event(fed, lambda e: e.get("event") == "round_started" and e["round"] == 1, 300)
    deadline = time.monotonic() + 60
    while not any("flwr-clientapp" in c or "--template" in c for c in marked(mark)):
        assert time.monotonic() < deadline, marked(mark)
        time.sleep(0.3)
    assert len(marked(mark)) >= 4, marked(mark)  # client, SuperNode, SuperExec, template (+ task)

    os.killpg(victim.proc.pid, signal.SIGKILL)  # the client's group only; its children have their own
    killed = time.monotonic()
    while marked(mark):
        assert time.monotonic() - killed < 10, f"left behind after 10 s: {marked(mark)}"
        time.sleep(0.2)

    # issue 20: SIGTERM to a client in a running session (round 1 waits for the killed site) is a
    # one-line goodbye and exit 0: no "reconnecting" warning, no traceback
    assert (fed.status() or {}).get("session"), "the session ended before the SIGTERM"
    log = fed.root / "logs" / "site-a.log"
    before = len(log.read_text().splitlines())
    stays.proc.send_signal(signal.SIGTERM)
    assert stays.proc.wait(30) == 0, stays.tail(20)
    after = log.read_text().splitlines()[before:]
    assert "client site-a: stopped (SIGTERM); left the server cleanly" in after, after
    assert not [line for line in after if "reconnect" in line.lower()], after
    assert "Traceback" not in log.read_text()
