"""When the next session may start (issue 20): not before ``min_interval`` seconds after the last
one started, and not at all after ``max_sessions`` sessions of this server. A resumed session is
the continuation of one already counted and is never held back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("kosmos_fl.server")


def delay(
    now: float, last_start: float | None, started: int, min_interval: float, max_sessions: int | None
) -> float | None:
    """Seconds to wait before a new session may start (0: now); None: no more sessions (pure)."""
    if max_sessions is not None and started >= max_sessions:
        return None
    if last_start is None:
        return 0.0
    return max(0.0, last_start + min_interval - now)


class SessionSchedule:
    """Counts the sessions started and, when one is held back, asks again when it may start."""

    def __init__(self) -> None:
        self.last_start: float | None = None
        self.started = 0
        self._recheck: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def allows(
        self,
        min_interval: float,
        max_sessions: int | None,
        waiting: int,
        again: Callable[[], Awaitable[None]],
    ) -> bool:
        """True (and counted) when a new session may start now; else log why and, unless no more
        sessions may start, call ``again()`` once it may."""
        wait = delay(time.time(), self.last_start, self.started, min_interval, max_sessions)
        if wait == 0:
            self.last_start, self.started = time.time(), self.started + 1
            return True
        if wait is not None and self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(wait, self._fire, again)
        why = "max_sessions reached" if wait is None else f"the next session may start in {wait:.0f} s"
        log.info("%d eligible client(s) waiting: %s (min_interval/max_sessions)", waiting, why)
        return False

    def _fire(self, again: Callable[[], Awaitable[None]]) -> None:
        self._recheck = None
        task = asyncio.ensure_future(again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
