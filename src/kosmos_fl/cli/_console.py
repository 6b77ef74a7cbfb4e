"""The error console and log set-up shared by every ``kosmos-fl`` command group."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from rich.console import Console

err_console = Console(stderr=True)


def cli_logging(verbose: bool, json_logs: bool = False) -> None:
    """Log to stderr, as text or one JSON object per line."""
    from kosmos_fl.logs import setup_logging

    setup_logging(verbose, "json" if json_logs else "text", console=err_console)


def json_requested(argv: Sequence[str]) -> bool:
    """True when this command's stderr is JSON lines: logging set up so, ``--log-json`` given, or
    ``DYNACONF_log_format=json`` (also before the config was read, or when it could not be)."""
    from kosmos_fl.logs import json_logging_active

    env = any(
        k.upper() == "DYNACONF_LOG_FORMAT" and v.strip().lower() == "json" for k, v in os.environ.items()
    )
    return json_logging_active() or "--log-json" in argv or env


def say(text: str, *, level: str = "info", markup: str | None = None, json_logs: bool | None = None) -> None:
    """One line for the operator on stderr: ``markup`` (rich) as text, or a JSON object when the
    command logs JSON (``json_logs``; unset: :func:`json_requested` of ``sys.argv``)."""
    from kosmos_fl.logs import json_line, real_stderr

    if json_logs if json_logs is not None else json_requested(sys.argv[1:]):
        stream = real_stderr()
        stream.write(json_line(level, "kosmos_fl.cli", text) + "\n")
        stream.flush()
    else:
        err_console.print(markup if markup is not None else text, highlight=False, soft_wrap=True)


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def setting_up_logs() -> Iterator[None]:
    """Around reading a config and setting up logging from it (its ``log_format``): what is logged
    meanwhile (a 2021 key's warning) is held, then written as JSON when the logs are JSON (also when
    reading failed but the command line or environment asked for JSON), else as the bare line it
    always was (Python's last-resort handler, as before logging is set up)."""
    root = logging.getLogger()
    if root.handlers:  # set up already (--log-json) or under a test's capture: nothing to hold
        yield
        return
    held = _Held()
    root.addHandler(held)
    try:
        yield
    finally:
        from kosmos_fl.logs import json_logging_active

        root.removeHandler(held)
        if not root.handlers and json_requested(sys.argv[1:]):
            cli_logging(False, True)
        last = logging.lastResort
        targets = root.handlers if json_logging_active() else ([last] if last is not None else [])
        for record in held.records:
            for handler in targets:
                if record.levelno >= handler.level:
                    handler.handle(record)
