"""Issue 20: when sessions start. The schedule decision is a pure function of now, the last start
(or the server's start) and the config; ``start_now`` is the operator's "start one now"."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from kosmos_fl.coordinator.lifecycle import delay, schedule_delay, start_now
from kosmos_fl.errors import ConfigError
from tests.coordinator.pieces import server_config
from tests.coordinator.test_server_state import Recorder, connect

UTC = dt.UTC


def ts(day: int, hour: int, minute: int = 0, second: float = 0) -> float:
    whole = int(second)
    micro = round((second - whole) * 1e6)
    return dt.datetime(2026, 12, day, hour, minute, whole, micro, tzinfo=UTC).timestamp()


NIGHTLY = "0 2 * * *"


@pytest.mark.parametrize(
    ("now", "since", "wait"),
    [
        (ts(3, 13, 0, 5), ts(3, 13), ts(4, 2) - ts(3, 13, 0, 5)),  # started at 13:00: tomorrow 02:00
        (ts(4, 2), ts(3, 13), 0.0),  # exactly the scheduled time
        (ts(4, 2, 3), ts(3, 13), 0.0),  # clients ready a little later: that time's session, now
        (ts(4, 2, 3), ts(4, 2, 0, 1), ts(5, 2) - ts(4, 2, 3)),  # it had its session: tomorrow
        (ts(4, 1, 59, 59.5), ts(3, 13), 0.5),  # not yet
        (
            ts(4, 12),
            ts(3, 2, 5),
            0.0,
        ),  # 02:00 passed without a session (too few clients): as soon as they are
    ],
)
def test_schedule_delay(now: float, since: float, wait: float) -> None:
    assert schedule_delay(now, since, NIGHTLY, UTC) == pytest.approx(wait, abs=1e-3)


def test_every_thirty_minutes() -> None:
    assert schedule_delay(ts(3, 10, 29, 59), ts(3, 10, 0, 5), "*/30 * * * *", UTC) == pytest.approx(1.0)
    assert schedule_delay(ts(3, 10, 30, 1), ts(3, 10, 0, 5), "*/30 * * * *", UTC) == 0.0


def test_delay_combines_min_interval_max_sessions_and_schedule() -> None:
    every15 = "*/15 * * * *"  # the same times in every time zone the tests may run in
    start, now = ts(3, 10, 0, 1), ts(3, 10, 1)
    assert delay(now, None, 0, 0, None, every15, since=start) == pytest.approx(14 * 60)
    assert delay(ts(3, 10, 15, 30), None, 0, 0, None, every15, since=start) == 0.0
    # min_interval holds back longer than the schedule would
    assert delay(ts(3, 10, 15, 30), ts(3, 10, 0, 1), 1, 3600, None, every15) == pytest.approx(
        ts(3, 11, 0, 1) - ts(3, 10, 15, 30)
    )
    # the schedule holds back longer than min_interval would
    assert delay(ts(3, 10, 5), ts(3, 10, 0, 1), 1, 60, None, every15) == pytest.approx(10 * 60)
    assert delay(ts(3, 10, 5), ts(3, 10, 0, 1), 3, 60, 3, every15) is None
    assert delay(ts(3, 10, 5), None, 0, 0, None) == 0.0  # neither: now


@pytest.mark.parametrize("bad", ["every night", "0 2 * *", "61 2 * * *", "*/5 * * * * 30"])
def test_a_bad_schedule_is_one_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"config key 'schedule'.*cron expression.*DYNACONF_schedule"):
        server_config(tmp_path, schedule=bad)


def test_schedule_holds_sessions_back_and_start_now_overrides_it(tmp_path: Path) -> None:
    """A schedule whose next time is months away: a ready group waits; ``start_now`` starts it,
    and says why when it cannot (a session running, too few clients, max_sessions)."""

    async def scenario() -> tuple[Recorder, list[tuple[bool, str]]]:
        c = Recorder(tmp_path, num_clients=2, schedule="0 0 1 1 *", max_sessions=2)
        answers = [await start_now(c.sessions)]  # nobody waits
        for sid in ("a", "b", "c"):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True})
        await asyncio.sleep(0.01)
        assert c.started == [] and c.waiting == ["a", "b", "c"]  # held back by the schedule
        answers.append(await start_now(c.sessions))  # starts a + b
        answers.append(await start_now(c.sessions))  # one runs
        c.release.set()
        await asyncio.sleep(0.05)
        answers.append(await start_now(c.sessions))  # only c waits
        await connect(c, "d")
        await c.on_client_criteria("d", {"criteria_are_met": True})
        await asyncio.sleep(0.01)
        assert len(c.started) == 1  # the schedule still holds c + d back
        answers.append(await start_now(c.sessions))  # c + d: the second and last (max_sessions)
        c.release.set()
        await asyncio.sleep(0.05)
        for sid in ("e", "f"):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True})
        answers.append(await start_now(c.sessions))
        return c, answers

    c, answers = asyncio.run(scenario())
    assert c.started == [["a", "b"], ["c", "d"]]
    ok = [started for started, _ in answers]
    assert ok == [False, True, False, False, True, False], answers
    assert "0 of 2 eligible clients wait" in answers[0][1]
    assert answers[1][1].startswith("session ") and "started with 2 clients" in answers[1][1]
    assert "is running" in answers[2][1]
    assert "1 of 2 eligible clients wait" in answers[3][1]
    assert "max_sessions (2) reached" in answers[5][1]
    assert not c.sessions.schedule.manual  # a grant never outlives its request
