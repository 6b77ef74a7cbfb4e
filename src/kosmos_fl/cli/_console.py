"""The error console and log set-up shared by every ``kosmos-fl`` command group."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True)


def cli_logging(verbose: bool, json_logs: bool = False) -> None:
    """Log to stderr, as text or one JSON object per line."""
    from kosmos_fl.logs import setup_logging

    setup_logging(verbose, "json" if json_logs else "text", console=err_console)
