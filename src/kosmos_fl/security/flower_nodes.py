"""Keep the SuperLink's registered SuperNode keys equal to the active clients of the registry.

With ``--enable-supernode-auth`` the SuperLink admits only SuperNodes whose public key was
registered through its (loopback-only) Control API. The server calls :meth:`NodeKeys.sync` after
the SuperLink starts and before every session, so a client added with ``kosmos-fl clients add``
can join the next session and a revoked one cannot.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.security.clients import ClientEntry

log = logging.getLogger("kosmos_fl.security")


class NodeKeys:
    """The node ids this server registered, per client name."""

    def __init__(self, flwr_home: Path, keys_dir: Path) -> None:
        self.flwr_home = flwr_home
        self.keys_dir = keys_dir
        self.node_ids: dict[str, int] = {}
        self._lock = threading.Lock()  # the registry watcher and session start may sync at once

    def sync(self, entries: dict[str, ClientEntry]) -> None:
        with self._lock:
            self._sync(entries)

    def _sync(self, entries: dict[str, ClientEntry]) -> None:
        for name, node_id in list(self.node_ids.items()):
            entry = entries.get(name)
            if entry is None or not entry.active:
                runtime.unregister_node(self.flwr_home, node_id, self.keys_dir)
                del self.node_ids[name]
                log.info("client %s: SuperNode key unregistered (node %s)", name, node_id)
        for name, entry in entries.items():
            if entry.active and name not in self.node_ids:
                self.keys_dir.mkdir(parents=True, exist_ok=True)
                key = self.keys_dir / f"{name}.pub"
                key.write_text(entry.public_key + "\n", encoding="ascii")
                self.node_ids[name] = runtime.register_node(self.flwr_home, key, name, self.keys_dir)
                log.info("client %s: SuperNode key registered (node %s)", name, self.node_ids[name])
