"""Deliver a session's tracking outbox to MLflow (see :mod:`kosmos_fl.fl.tracking.outbox`).

One sender at a time per outbox, by an exclusive ``flock`` on ``outbox.lock``: the ServerApp's
background thread holds it while its session runs; when the ServerApp has ended (or died) the
coordinator's :class:`Drainer` takes over, also after a restart. Transient failures (MLflow down,
timeouts, 5xx) are retried with exponential back-off (tenacity) and never reach training; an entry
MLflow refuses for good (an invalid value, a deleted run) is logged, recorded and skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    stop_never,
    wait_exponential,
)

from kosmos_fl.fl.session import SessionFolder
from kosmos_fl.fl.tracking.outbox import Entry, Outbox, State, undelivered_metrics

log = logging.getLogger("kosmos_fl.tracking")

#: A handler delivers one entry of a kind the sender does not know (``model``): (client, entry) ->
#: a result kept in the outbox state under the entry's ``id`` (or None).
Handler = Callable[[Any, Entry], dict[str, Any] | None]

#: MLflow error codes that retrying cannot fix: the entry is recorded as refused and skipped.
PERMANENT = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"})


class NoHandler(Exception):
    """An entry of a kind this sender cannot deliver: it waits for a sender that can."""


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` means MLflow will never take the entry (as opposed to: not now)."""
    if isinstance(exc, FileNotFoundError | TypeError | KeyError):
        return True  # a local file gone or a malformed entry: retrying cannot help
    return getattr(exc, "error_code", None) in PERMANENT


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    """A back-off sleep that ends as soon as ``stop`` is set (a stopping server does not wait)."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


class Sender:
    """Delivers one outbox in order; remembers whether its last pass ended cleanly (then the next
    entry's delivery is certain and needs no look-up of what MLflow already holds)."""

    def __init__(
        self,
        outbox: Outbox,
        uri: str,
        handlers: dict[str, Handler] | None = None,
        *,
        max_wait: float = 30.0,
        client: Any = None,
    ) -> None:
        self.outbox = outbox
        self.uri = uri
        self.handlers = dict(handlers or {})
        self.max_wait = max_wait
        self._client = client
        self._clean = False  # a new sender knows nothing of the last delivery attempt
        self._lock_fd: int | None = None
        #: True while the last attempt failed (MLflow unreachable): flush() stops waiting then.
        self.failing = False
        self.delivered = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # -- one sender at a time -----------------------------------------------------------------
    def try_lock(self) -> bool:
        """Become the outbox's one sender; False while another process (or sender) is."""
        if self._lock_fd is not None:
            return True
        path = self.outbox.folder.outbox_lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[bool]:
        got = self.try_lock()
        try:
            yield got
        finally:
            if got:
                self.unlock()

    # -- delivery ------------------------------------------------------------------------------
    def deliver_pending(self) -> int:
        """One pass: deliver every pending entry in order, acknowledging each in the state file.
        Raises the first transient error (the entry stays pending) or :class:`NoHandler`."""
        state = self.outbox.read_state()
        done = 0
        for i, (end, entry) in enumerate(self.outbox.entries(state.offset)):
            uncertain = i == 0 and not self._clean
            if entry is None:
                state.refused.append(f"unreadable outbox line ending at byte {end}")
                log.error("outbox %s: an unreadable line was skipped", self.outbox.path)
            else:
                try:
                    result = self._deliver(entry, uncertain)
                except NoHandler:
                    raise
                except Exception as exc:
                    if not is_permanent(exc):
                        self._clean = False
                        raise
                    state.refused.append(f"{entry.get('kind')}: {exc}"[:500])
                    log.error("MLflow refused an outbox entry (%s); skipped: %s", entry.get("kind"), exc)
                    result = None
                if result is not None:
                    state.results[str(entry.get("id", entry["kind"]))] = result
            state.offset = end
            self.outbox.write_state(state)  # the ack: crash before it = this entry is uncertain
            done += 1
            self.delivered += 1
        self._clean = True
        self.failing = False
        return done

    def _deliver(self, entry: Entry, uncertain: bool) -> dict[str, Any] | None:
        kind, run, c = entry["kind"], entry.get("run", ""), self.client
        if kind == "metrics":
            self._metrics(entry, uncertain)
        elif kind == "params":
            from mlflow.entities import Param

            items = [Param(k, str(v)) for k, v in entry["params"].items()]
            for i in range(0, len(items), 90):
                c.log_batch(run, params=items[i : i + 90])
        elif kind == "tag":
            c.set_tag(run, entry["key"], entry["value"])
        elif kind == "delete_tag":
            with contextlib.suppress(Exception):  # absent already: nothing to delete
                c.delete_tag(run, entry["key"])
        elif kind == "artifact":
            path = Path(entry["path"])
            if not path.exists():
                raise FileNotFoundError(f"artifact {path} is gone")
            c.log_artifact(run, str(path), artifact_path=entry.get("dir"))
        elif kind == "status":
            if entry["status"] == "RUNNING":
                if c.get_run(run).info.status != "RUNNING":
                    c.update_run(run, status="RUNNING")
            else:
                c.set_terminated(run, status=entry["status"])
        elif kind in self.handlers:
            return self.handlers[kind](c, entry)
        else:
            raise NoHandler(kind)
        return None

    def _metrics(self, entry: Entry, uncertain: bool) -> None:
        from mlflow.entities import Metric

        run, step = entry["run"], int(entry["step"])
        metrics: dict[str, float] = entry["metrics"]
        if uncertain:  # the last attempt may have been stored before its ack was written
            held = [(k, m.step) for k in metrics for m in self.client.get_metric_history(run, k)]
            metrics = undelivered_metrics(entry, held)
        items = [Metric(k, float(v), int(entry["ts"]), step) for k, v in metrics.items()]
        for i in range(0, len(items), 900):
            self.client.log_batch(run, metrics=items[i : i + 900])

    def drain(self, stop: threading.Event | None = None, patience: float | None = None) -> bool:
        """Deliver until the outbox is empty (True), retrying transient failures with exponential
        back-off up to ``max_wait`` s apart, for at most ``patience`` s (None: until ``stop``)."""
        stops: list[Any] = [stop_never if patience is None else stop_after_delay(patience)]
        if stop is not None:
            stops.append(lambda _state: stop.is_set())
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: not isinstance(exc, NoHandler)),
            wait=wait_exponential(multiplier=0.5, max=self.max_wait),
            stop=stop_any(*stops),
            sleep=time.sleep if stop is None else _interruptible(stop),
            before_sleep=self._note_failure,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self.deliver_pending()
        except (RetryError, NoHandler):
            return False
        return True

    def _note_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if not self.failing:
            log.warning(
                "MLflow unreachable (%s); %d tracking entries kept in %s, retrying",
                str(exc)[:300],
                self.outbox.backlog(),
                self.outbox.path,
            )
        self.failing = True


class Background:
    """The ServerApp's sender: a daemon thread that delivers whatever the session appends."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kosmos-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set() and not self.sender.try_lock():
            self._closed.wait(1.0)  # the coordinator drains it right now: wait for our turn
        while not self._closed.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                if self.sender.outbox.backlog():
                    self.sender.drain(stop=self._closed)
            except Exception:  # never die silently: flush() gives up, the coordinator delivers
                log.exception("tracking sender failed; the server delivers the outbox later")
                self.sender.failing = True

    def flush(self, timeout: float, give_up_after: float = 5.0) -> bool:
        """Wait until everything is delivered (True); False after ``timeout`` s, or after
        ``give_up_after`` s of MLflow failing: then the coordinator delivers the rest later."""
        self.wake()
        t0 = time.monotonic()
        failing_since: float | None = None
        while self.sender.outbox.backlog():
            now = time.monotonic()
            if self.sender.failing:
                failing_since = failing_since or now
                if now - failing_since > give_up_after:
                    return False
            else:
                failing_since = None
            if now - t0 > timeout:
                return False
            time.sleep(0.1)
        return True

    def close(self, timeout: float = 2.0) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.sender.unlock()


class Drainer:
    """The coordinator's sender: every ``every`` s (or when woken) it delivers the outboxes of
    the sessions under ``sessions_dir`` that no ServerApp is sending (finished, failed, or left by
    a server that stopped), in a daemon thread: never on the event loop, never holding up a stop."""

    def __init__(
        self,
        sessions_dir: Path,
        uri: str,
        handlers: dict[str, Handler] | None = None,
        on_drained: Callable[[SessionFolder, State], None] | None = None,
        *,
        every: float = 5.0,
        patience: float = 60.0,
    ) -> None:
        self.sessions_dir = sessions_dir
        self.uri = uri
        self.handlers = handlers
        self.every = every
        self.patience = patience
        #: called after a session's outbox was delivered to the end (the server updates result.json)
        self.on_drained = on_drained
        #: Entries waiting for MLflow over all sessions (the ``/metrics`` gauge).
        self.backlog = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kosmos-outbox-drainer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # never let the drainer die: the next pass tries again
                log.exception("outbox drainer pass failed")
            self._wake.wait(self.every)
            self._wake.clear()

    def run_once(self) -> int:
        """One pass over every session folder; returns the backlog left."""
        if not self.sessions_dir.is_dir():
            return 0
        outboxes = [Outbox(SessionFolder(p.parent)) for p in sorted(self.sessions_dir.glob("*/outbox.jsonl"))]
        waiting = {o: o.backlog() for o in outboxes}
        self.backlog = sum(waiting.values())
        for outbox, n in waiting.items():
            if self._stop.is_set() or not n:
                continue
            sender = Sender(outbox, self.uri, self.handlers)
            with sender.locked() as mine:
                if mine and sender.drain(stop=self._stop, patience=self.patience) and sender.delivered:
                    log.info("session %s: %d tracking entries delivered to MLflow",
                             outbox.folder.path.name, sender.delivered)  # fmt: skip
                    if self.on_drained is not None:
                        self.on_drained(outbox.folder, outbox.read_state())
            waiting[outbox] = outbox.backlog()
            self.backlog = sum(waiting.values())
        return self.backlog
