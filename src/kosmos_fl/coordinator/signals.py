"""Graceful shutdown for the long-running commands."""

from __future__ import annotations

import asyncio
import contextlib


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM / SIGINT set ``stop`` so that clean-up runs (children stopped, runs closed); the
    default SIGTERM action would kill the process on the spot and orphan its SuperLink."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
