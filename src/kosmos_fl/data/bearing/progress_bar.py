"""The snapshot progress bar of ``kosmos-fl data prepare`` and of loading raw folders."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Called with a number of snapshots done (halves: reading and computing each count half).
Progress = Callable[[float], None]


@contextmanager
def progress_bar(total: float, enabled: bool, label: str) -> Iterator[Progress | None]:
    """A rich progress bar on stderr counting snapshots (thread-safe), or None when not ``enabled``."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    lock = threading.Lock()
    with RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("snapshots"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(k: float) -> None:
            with lock:
                bar.advance(task, k)

        yield advance
