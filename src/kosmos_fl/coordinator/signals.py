"""Graceful shutdown for the long-running commands."""

from __future__ import annotations

import asyncio
import contextlib


def install_stop_signals(stop: asyncio.Event) -> list[int]:
    """SIGTERM / SIGINT set ``stop`` so that clean-up runs (children stopped, runs closed); the
    default SIGTERM action would kill the process on the spot and orphan its SuperLink. Returns
    the list the signals received are appended to (a command exits 130 after SIGINT)."""
    import signal

    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    return received
