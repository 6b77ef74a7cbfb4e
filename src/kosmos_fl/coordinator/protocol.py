"""Control-plane messages (Socket.IO events) and their validation.

The 2021 events are kept: the client emits ``client_criteria`` and receives ``start_train``. Added:
``registered`` (the server's answer to criteria), ``end_train`` (the session is over) and ``error``
(why a message was refused). Every incoming payload is validated; a bad one is answered with
``error`` and otherwise ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from kosmos_fl.errors import ProtocolError

#: Largest control-plane message the server accepts (criteria answers are small).
MAX_MESSAGE_BYTES = 64 * 1024


class UseCaseRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(max_length=200)
    version: str = Field(max_length=50)


class ClientCriteria(BaseModel):
    """``client_criteria``: the client's eligibility answer (extra fields allowed, as in 2021)."""

    model_config = ConfigDict(extra="allow")
    criteria_are_met: StrictBool
    reason: str | None = Field(None, max_length=2000)
    client_name: str | None = Field(None, max_length=200)
    usecase: UseCaseRef | None = None
    data_summary: dict[str, Any] | None = None
    #: Flower node id of the client's SuperNode, which it keeps between sessions (so the
    #: ServerApp sends a session's work only to that session's nodes); None: started per session
    node_id: int | None = Field(None, ge=0, lt=2**64)


class StartTrain(BaseModel):
    """``start_train``: the 2021 keys plus what the current design needs."""

    client_id: int
    mlflow_experiment_name: str
    mlflow_server_address: str
    mlflow_run_id: str
    flwr_server_address: str
    usecase_name: str
    usecase_params: dict[str, Any]
    usecase_version: str
    session_id: str
    num_clients: int
    n_federated_train_epoch: int


class EndTrain(BaseModel):
    """``end_train``: the session a client took part in is over."""

    session_id: str
    status: Literal["completed", "failed"]
    reason: str | None = None
    model_uri: str | None = None
    mlflow_run_id: str


def parse_criteria(data: Any) -> ClientCriteria:
    """Validate a ``client_criteria`` payload; raises ProtocolError with a one-line reason."""
    if not isinstance(data, dict):
        raise ProtocolError(
            'client_criteria must be a JSON object like {"criteria_are_met": true}, '
            f"got {type(data).__name__}"
        )
    try:
        return ClientCriteria.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "payload"
        raise ProtocolError(f"client_criteria field '{key}': {err['msg']}") from None
