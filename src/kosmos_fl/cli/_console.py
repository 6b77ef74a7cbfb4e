"""The error console and log set-up shared by every ``kosmos-fl`` command group."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

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
