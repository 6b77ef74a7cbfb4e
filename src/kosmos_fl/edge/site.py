"""Edge mode of a KOSMoS client: its training data is what its machines sent over MQTT.

The client (:mod:`kosmos_fl.coordinator.client`) owns one :class:`EdgeSite` when its config has an
``edge`` section: the site runs the ingest, answers the criteria check from the store and tells the
client where the processed bearings are and which of them to train on.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.edge.eligibility import EdgeVerdict, evaluate
from kosmos_fl.edge.ingest import EdgeIngest
from kosmos_fl.edge.store import EdgeStore

log = logging.getLogger("kosmos_fl.edge")


def resolve(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base_dir / p).resolve()


class EdgeSite:
    """The ingest of one client plus its view of the collected data."""

    def __init__(self, cfg: EdgeConfig, base_dir: Path, client_name: str) -> None:
        self.cfg = cfg
        self.store_dir = resolve(cfg.store_dir, base_dir)
        self.changed = threading.Event()
        self.ingest = EdgeIngest(
            cfg, self.store_dir, cfg.client_id or f"kosmos-{client_name}", self.changed.set
        )
        self.last: EdgeVerdict | None = None

    @property
    def data_path(self) -> Path:
        return self.ingest.store.processed_dir

    def start(self) -> None:
        if not self.ingest.start(wait=15.0):
            log.warning(
                "edge: not subscribed at %s yet (%s); collecting starts once the broker answers",
                self.cfg.redacted(),
                self.ingest.last_error or "no answer",
            )

    def stop(self) -> None:
        self.ingest.stop()

    def verdict(self) -> EdgeVerdict:
        self.last = evaluate(self.ingest.store, self.cfg.criteria)
        return self.last

    def selection(self) -> list[str]:
        """The processed bearings to train on: those that passed the last criteria check."""
        return list((self.last or self.verdict()).bearings)


def edge_criteria(
    cfg: EdgeConfig, base_dir: Path, site: EdgeSite | None
) -> tuple[EdgeVerdict, Path, dict[str, Any]]:
    """The verdict, the processed folder and the ingest counters (from the running site, or
    from the store on disk when no ingest runs in this process)."""
    if site is not None:
        return site.verdict(), site.data_path, dict(site.ingest.store.counters())
    store = EdgeStore(resolve(cfg.store_dir, base_dir))
    try:
        return evaluate(store, cfg.criteria), store.processed_dir, store.counters()
    finally:
        store.close()
