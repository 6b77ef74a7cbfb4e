"""Log set-up for the long-running commands: human text (rich) or one JSON object per line.

JSON lines are what log shippers (Loki, Elasticsearch, Cloud Logging) ingest without parsing
rules. Every record carries the session and client it concerns when known: code binds them with
:func:`bind` (context variables, so concurrent Socket.IO handlers and sessions do not mix them up)
or passes ``extra={"session_id": ..., "client_id": ...}``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

from kosmos_fl.redact import safe

LogFormat = Literal["text", "json"]

session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("kosmos_session_id", default=None)
client_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("kosmos_client_id", default=None)

#: LogRecord attributes that are not user ``extra`` fields.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind(*, session_id: str | None = None, client_id: str | None = None) -> None:
    """Attach ids to every record logged from the current task/thread from now on."""
    if session_id is not None:
        session_id_var.set(session_id)
    if client_id is not None:
        client_id_var.set(client_id)


def bind_session(session_id: str) -> None:
    """Start a session's task: its records carry the session id and no particular client."""
    session_id_var.set(session_id)
    client_id_var.set(None)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session_id", None) is None:
            record.session_id = session_id_var.get()
        if getattr(record, "client_id", None) is None:
            record.client_id = client_id_var.get()
        return True


class SafeTextFilter(logging.Filter):
    """Every record's message as one line without credentials: control characters escaped (a
    newline in a peer's ``reason`` cannot forge a log line) and URIs' ``user:password@`` removed.
    Runs on the handlers :func:`setup_logging` installs, so text and JSON alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        cleaned = safe(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, session_id, client_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "session_id": getattr(record, "session_id", None),
            "client_id": getattr(record, "client_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(verbose: bool = False, fmt: LogFormat = "text", console: Any = None) -> None:
    """Configure the root logger once for a command (replaces earlier handlers)."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif console is not None and not console.is_terminal:
        # a log file or a pipe: one unwrapped line per record (greppable, and far cheaper than
        # rich's layout, which cost ~40 % of the coordinator's CPU per registration)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    handler.addFilter(SafeTextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
