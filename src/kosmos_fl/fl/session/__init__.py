"""The session folder: the contract between the coordinator and the ServerApp.

The coordinator writes the session spec (:class:`SessionSpec`, JSON) into a folder per session
and hands its path to Flower as ``session-file`` (Flower passes only flat run-config values); the
ServerApp writes progress events, checkpoints and the result there, and the coordinator, the
dashboard, the demo and the simulation read them back. :class:`SessionFolder` names every file of
that folder, :func:`write_atomic` is the one way a file in it (or any other file kosmos_fl must
never leave half-written) is written, :class:`ProgressReader` the one reader of
``progress.jsonl``. Clients get their own smaller spec (:class:`NodeSpec`) through the
SuperNode's ``--node-config``.
"""

from kosmos_fl.fl.session.folder import (
    CHECKPOINT_FILE,
    CLIENTS_FILE,
    DEAD_FILE,
    INTERRUPTED_FILE,
    MODEL_SUMMARY_FILE,
    NODE_FILE,
    NODES_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
    SESSION_FILE,
    SessionFolder,
    private_dir,
    write_atomic,
    write_json_atomic,
    write_problem,
)
from kosmos_fl.fl.session.progress import (
    ProgressEvent,
    ProgressReader,
    RejectedEvent,
    RejectedUpdateEvent,
    ResumedEvent,
    RoundEvent,
    RoundStartedEvent,
    StoppedEvent,
    append_jsonl,
    read_progress,
)
from kosmos_fl.fl.session.spec import (
    NodeSpec,
    SessionSettings,
    SessionSpec,
    decide_quorum,
    node_spec_for_run,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CLIENTS_FILE",
    "DEAD_FILE",
    "INTERRUPTED_FILE",
    "MODEL_SUMMARY_FILE",
    "NODES_FILE",
    "NODE_FILE",
    "PROGRESS_FILE",
    "RESULT_FILE",
    "SESSION_FILE",
    "NodeSpec",
    "ProgressEvent",
    "ProgressReader",
    "RejectedEvent",
    "RejectedUpdateEvent",
    "ResumedEvent",
    "RoundEvent",
    "RoundStartedEvent",
    "SessionFolder",
    "SessionSettings",
    "SessionSpec",
    "StoppedEvent",
    "append_jsonl",
    "decide_quorum",
    "node_spec_for_run",
    "private_dir",
    "read_progress",
    "write_atomic",
    "write_json_atomic",
    "write_problem",
]
