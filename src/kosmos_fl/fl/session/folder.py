"""Every file of a session's folder, and the one atomic write (see :mod:`kosmos_fl.fl.session`)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kosmos_fl.errors import StorageError
from kosmos_fl.fl.session.progress import ProgressEvent, append_jsonl

SESSION_FILE = "session.json"
NODE_FILE = "node.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.jsonl"
CHECKPOINT_FILE = "checkpoint.json"
#: Written by the coordinator when it stops mid-session: the ServerApp then exits without failing
#: the session, which stays resumable.
INTERRUPTED_FILE = "interrupted"
#: Written by the coordinator when a session client's control connection drops.
DEAD_FILE = "dead_clients.json"
#: ``[{"client_id": 0, "name": "site-a"}, ...]``: who held which client id, to keep ids on resume.
CLIENTS_FILE = "clients.json"
#: ``{"session": {"<client id>": <Flower node id>}, "others": [<node id>, ...]}``: which SuperNodes
#: belong to this session and which belong to connected clients outside it. Clients keep their
#: SuperNode between sessions, so the SuperLink knows nodes that must not get this session's work.
NODES_FILE = "nodes.json"
MODEL_SUMMARY_FILE = "model_summary.txt"
#: What the session tells MLflow, written here first and delivered by a sender (issue 21):
#: entries (JSON lines), how far they are delivered, and the lock of the one sender at a time.
OUTBOX_FILE = "outbox.jsonl"
OUTBOX_STATE_FILE = "outbox-state.json"
OUTBOX_LOCK_FILE = "outbox.lock"
#: The final model as MLflow will log it (weights archive, signature, metadata), kept until delivered.
MODEL_DIR = "model"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it accessible to the owner only (0700): work and
    session folders hold specs, checkpoints and logs that can carry credentials."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


#: errno values that mean the disk, not the program: full, over quota, read-only, I/O failure.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def write_atomic(
    path: Path, data: str | bytes | Callable[[IO[bytes]], None], *, private: bool = False
) -> Path:
    """Write ``path`` so that a reader (another process, or a resume after a crash) sees either
    the old file or the whole new one: a temporary file, flushed to disk, then renamed.

    ``data`` is text (UTF-8), bytes or a function that writes into the binary file. ``private``
    makes the file readable by its owner only from the first byte on (keys, credentials)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        if private:
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # never leave a half-written (or 0-byte) .tmp behind
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            raise StorageError(
                f"cannot write {path}: {exc.strerror} ({errno.errorcode[exc.errno]}); free space on "
                "that disk or move work_dir, then restart"
            ) from exc
        raise
    return path


def write_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be written right now (full, read-only or failing disk), or None: a
    small probe file written as every session file is. For ``/health``, which must say so while
    it lasts and turn back on its own (issue 21)."""
    try:
        write_atomic(folder / ".health-probe", b"ok")
    except StorageError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot write {folder}: {exc.strerror or exc}"
    return None


def write_json_atomic(path: Path, data: Any) -> Path:
    """:func:`write_atomic` of a small JSON document."""
    return write_atomic(path, json.dumps(data, indent=2, default=str))


@dataclass(frozen=True)
class SessionFolder:
    """Every path of one session's folder (``<work_dir>/sessions/<session id>``)."""

    path: Path

    @property
    def spec_file(self) -> Path:
        return self.path / SESSION_FILE

    @property
    def progress_file(self) -> Path:
        return self.path / PROGRESS_FILE

    @property
    def result_file(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def interrupted_file(self) -> Path:
        return self.path / INTERRUPTED_FILE

    @property
    def dead_clients_file(self) -> Path:
        return self.path / DEAD_FILE

    @property
    def clients_file(self) -> Path:
        return self.path / CLIENTS_FILE

    @property
    def nodes_file(self) -> Path:
        return self.path / NODES_FILE

    @property
    def model_summary_file(self) -> Path:
        return self.path / MODEL_SUMMARY_FILE

    @property
    def outbox_file(self) -> Path:
        return self.path / OUTBOX_FILE

    @property
    def outbox_state_file(self) -> Path:
        return self.path / OUTBOX_STATE_FILE

    @property
    def outbox_lock_file(self) -> Path:
        return self.path / OUTBOX_LOCK_FILE

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def nodes_dir(self) -> Path:
        """A simulation's node specs (``node-<i>.json``)."""
        return self.path / "nodes"

    def append_progress(self, event: ProgressEvent) -> None:
        append_jsonl(self.progress_file, event.row())

    def write_result(self, result: dict[str, Any]) -> None:
        write_json_atomic(self.result_file, result)

    def read_result(self) -> dict[str, Any] | None:
        """The ServerApp's result document (None: the session has not ended)."""
        if not self.result_file.exists():
            return None
        result: dict[str, Any] = json.loads(self.result_file.read_text(encoding="utf-8"))
        return result
