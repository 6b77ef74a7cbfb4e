"""The SuperNode a KOSMoS client keeps between sessions.

Starting a SuperNode and its warm SuperExec costs a few seconds of CPU (Python, Flower, torch and
the use case imported, the ClientApp template warmed up). A client therefore starts them once the
server finds it eligible, reports the node id the SuperLink gave it, and keeps them for the next
sessions; each session only rewrites :attr:`KeptSuperNode.node_file`, which the ClientApp reads
for the message's session (:func:`kosmos_fl.fl.session.node_spec_for_run`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.fl.session import NODE_FILE
from kosmos_fl.security.policy import ClientSecurity

log = logging.getLogger("kosmos_fl.client")

#: How long a new SuperNode may take to register with the SuperLink before the client registers
#: without its node id (the server then tells the session's nodes apart less precisely).
NODE_ID_WAIT = 30.0


class KeptSuperNode:
    """One client's SuperNode (and warm SuperExec): started on demand, kept until stopped."""

    def __init__(self, work_dir: Path, security: ClientSecurity, warm: bool = True) -> None:
        self.work_dir = work_dir
        self.security = security
        self.warm = warm
        self.process: runtime.ManagedProcess | None = None
        #: the SuperLink address it dials, and the node id it got there
        self.address: str | None = None
        self.node_id: int | None = None
        self._lock = asyncio.Lock()

    @property
    def node_file(self) -> Path:
        """The spec of the current session, read by the SuperNode's ClientApp."""
        return self.work_dir / NODE_FILE

    def ready(self) -> bool:
        """Running and registered with the SuperLink."""
        return self.process is not None and self.process.alive() and self.node_id is not None

    async def ensure(self, address: str) -> int | None:
        """A SuperNode dialling ``address`` (the kept one, or a new one); returns its node id
        (None if it did not register within :data:`NODE_ID_WAIT`)."""
        async with self._lock:
            if self.process is not None and self.process.alive() and self.address == address:
                return self.node_id
            await self._stop()
            credentials = self.security.credentials
            self.process = await asyncio.to_thread(
                runtime.start_supernode,
                address,
                {"session-file": str(self.node_file)},
                self.work_dir / "flower",
                self.work_dir / "supernode.log",
                warm=self.warm,
                root_certificates=self.security.ca_certfile,
                auth_private_key=credentials.node_private_key if credentials else None,
            )
            self.address = address
            self.node_id = await asyncio.to_thread(runtime.wait_node_id, self.process, NODE_ID_WAIT)
            if self.node_id is None:
                log.warning(
                    "the SuperNode did not join the SuperLink at %s within %.0f s (see %s)",
                    address,
                    NODE_ID_WAIT,
                    self.process.log_path,
                )
            else:
                log.info("SuperNode %s joined %s; kept for the next sessions", self.node_id, address)
            return self.node_id

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
            self.process = None
        self.address = self.node_id = None
