"""The coordinator's admission and session runner, built and connected the way
:class:`kosmos_fl.coordinator.server.Coordinator` connects them, without Flower or MLflow: outgoing
events are recorded and a session's run is the test's own (:meth:`Pieces.run_session`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kosmos_fl.config import ServerConfig, load_server_config
from kosmos_fl.coordinator.admission import Admission, ClientRecord
from kosmos_fl.coordinator.guard import GuardedServer
from kosmos_fl.coordinator.sessions import Session, SessionRunner
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.usecases import usecase_class


def server_config(tmp_path: Path, **cfg: Any) -> ServerConfig:
    return load_server_config(
        None, work_dir=str(tmp_path / "w"), mlflow_server_address=str(tmp_path / "m"), **cfg
    )


class Pieces:
    """Admission + session runner; the tests read the pool through the same names as before."""

    def __init__(self, tmp_path: Path, config: ServerConfig) -> None:
        self.sio = GuardedServer(
            limits=config.limits, async_mode="aiohttp", logger=False, engineio_logger=False
        )
        self.admission = Admission(config, usecase_class(config.usecase.name), self.sio)
        uri = tracking_uri(config.mlflow_server_address, tmp_path)
        self.sessions = SessionRunner(
            config, tmp_path.resolve(), self.admission.usecase_cls, uri, self.admission
        )
        self.admission.on_ready = self.sessions.maybe_start_session
        self.admission.on_leave = self.sessions.drop_client
        self.sessions.run_session = self.run_session  # type: ignore[method-assign]
        self.emitted: list[tuple[str, str, Any]] = []
        self.started: list[list[str]] = []
        self.on_connect = self.admission.on_connect
        self.on_disconnect = self.admission.on_disconnect
        self.on_client_criteria = self.admission.on_client_criteria
        self.on_unknown = self.admission.on_unknown
        self.flwr_address_for = config.flwr_address_for

        async def emit(event: str, data: Any = None, to: str | None = None, **_: Any) -> None:
            self.emitted.append((event, to or "", data))

        self.sio.emit = emit  # type: ignore[method-assign]

    async def run_session(self, s: Session) -> None:
        self.started.append(list(s.sids))

    @property
    def clients(self) -> dict[str, ClientRecord]:
        return self.admission.clients

    @property
    def waiting(self) -> list[str]:
        return self.admission.waiting

    @property
    def sessions_done(self) -> list[dict[str, Any]]:
        return self.sessions.sessions_done

    @property
    def _remind_tasks(self) -> dict[str, Any]:
        return self.admission._remind_tasks
