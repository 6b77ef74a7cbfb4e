"""When the next session may start (issue 20): not before ``min_interval`` seconds after the last
one started, not at all after ``max_sessions`` sessions of this server, and with a ``schedule``
(cron) only at its times: at most one session per scheduled time, started at that time or, if too
few eligible clients waited then, as soon as enough do before the next one. A resumed session is the
continuation of one already counted and is never held back. ``kosmos-fl session start`` (the admin
``POST /sessions/start``, :func:`start_now`) starts one at once, whatever the timing says, as long
as enough eligible clients wait and ``max_sessions`` allows."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from croniter import croniter

log = logging.getLogger("kosmos_fl.server")


def schedule_delay(now: float, since: float, schedule: str, tz: dt.tzinfo | None = None) -> float:
    """Seconds until ``schedule`` lets a session start (0: now), when the last one started at
    ``since`` (or the server did, before its first): 0 when a scheduled time in ``(since, now]``
    had no session yet, else the wait for the next scheduled time. Times are read in ``tz``
    (default: the server's local time zone, as cron does). Pure."""
    at = dt.datetime.fromtimestamp(now, tz).astimezone(tz)
    # croniter's get_prev is strictly before its start: from just after now, a time equal to now counts
    latest = croniter(schedule, at + dt.timedelta(milliseconds=1)).get_prev(float)
    if latest > since:
        return 0.0
    return max(0.0, float(croniter(schedule, at).get_next(float)) - now)


def delay(
    now: float,
    last_start: float | None,
    started: int,
    min_interval: float,
    max_sessions: int | None,
    schedule: str | None = None,
    since: float | None = None,
) -> float | None:
    """Seconds to wait before a new session may start (0: now); None: no more sessions. ``since``:
    when the server started (a schedule's times before it do not count). Pure."""
    if max_sessions is not None and started >= max_sessions:
        return None
    wait = 0.0 if last_start is None else max(0.0, last_start + min_interval - now)
    if schedule:
        ref = last_start if last_start is not None else (since if since is not None else now)
        wait = max(wait, schedule_delay(now, ref, schedule))
    return wait


class SessionSchedule:
    """Counts the sessions started and, when one is held back, asks again when it may start."""

    def __init__(self, started_at: float | None = None) -> None:
        #: when this server started: scheduled times before it had their chance already
        self.started_at = time.time() if started_at is None else started_at
        self.last_start: float | None = None
        self.started = 0
        #: set by :func:`start_now` for one check: start now, whatever min_interval and schedule say
        self.manual = False
        self._recheck: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def allows(
        self,
        min_interval: float,
        max_sessions: int | None,
        waiting: int,
        again: Callable[[], Awaitable[None]],
        schedule: str | None = None,
    ) -> bool:
        """True (and counted) when a new session may start now; else log why and, unless no more
        sessions may start, call ``again()`` once it may."""
        now = time.time()
        wait = delay(
            now, self.last_start, self.started, min_interval, max_sessions, schedule, self.started_at
        )
        if wait == 0 or (self.manual and wait is not None):
            self.last_start, self.started, self.manual = now, self.started + 1, False
            return True
        if wait is not None:
            self._ask_again(wait, again)
        if wait is None:
            why = f"max_sessions ({max_sessions}) reached"
        else:
            at = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now + wait))
            by = f"schedule {schedule!r}" if schedule else "min_interval"
            why = f"the next session may start at {at}, in {wait:.0f} s ({by})"
        log.info("%d eligible client(s) waiting: %s", waiting, why)
        return False

    def _ask_again(self, wait: float, again: Callable[[], Awaitable[None]]) -> None:
        """One timer, for the earliest time asked (a reload may bring the next start closer)."""
        loop = asyncio.get_running_loop()
        if self._recheck is not None:
            if self._recheck.when() <= loop.time() + wait:
                return
            self._recheck.cancel()
        self._recheck = loop.call_later(wait, self._fire, again)

    def _fire(self, again: Callable[[], Awaitable[None]]) -> None:
        self._recheck = None
        task = asyncio.ensure_future(again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Runner(Protocol):
    """What :func:`start_now` needs of the session runner."""

    session: Any
    schedule: SessionSchedule
    resume_point: Any

    @property
    def config(self) -> Any: ...

    @property
    def pool(self) -> Any: ...

    async def maybe_start_session(self) -> None: ...


async def start_now(runner: Runner) -> tuple[bool, str]:
    """An operator's "start a session now": (started, what happened) in one line; min_interval and
    schedule do not apply, the number of eligible clients waiting and max_sessions do."""
    cfg = runner.config
    if runner.session is not None:
        return False, f"session {runner.session.session_id} is running; one session runs at a time"
    waiting, needed = len(runner.pool.waiting), cfg.num_clients
    if waiting < needed:
        return False, (
            f"{waiting} of {needed} eligible clients wait (num_clients: {needed}); start more clients "
            "or lower num_clients (config.yaml, then kill -HUP the server)"
        )
    sched = runner.schedule
    if runner.resume_point is None and cfg.max_sessions is not None and sched.started >= cfg.max_sessions:
        return (
            False,
            f"max_sessions ({cfg.max_sessions}) reached; raise it (then kill -HUP) or restart the server",
        )
    sched.manual = True
    try:
        await runner.maybe_start_session()
    finally:
        sched.manual = False
    s = runner.session
    if s is None:
        return False, "no session started: a waiting client left or was revoked; try again"
    log.info("session %s started on request (kosmos-fl session start)", s.session_id)
    return True, f"session {s.session_id} started with {len(s.sids)} clients"
