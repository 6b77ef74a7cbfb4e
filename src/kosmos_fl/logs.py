"""Log set-up for the long-running commands: human text (rich) or one JSON object per line.

JSON lines are what log shippers (Loki, Elasticsearch, Cloud Logging) ingest without parsing
rules. Every record carries the session and client it concerns when known: code binds them with
:func:`bind` (context variables, so concurrent Socket.IO handlers and sessions do not mix them up)
or passes ``extra={"session_id": ..., "client_id": ...}``.

Flower and MLflow install console handlers of their own (Flower's prints coloured ``WARNING`` lines;
as its records also propagate to ours, each was printed twice). :func:`setup_logging` takes those
loggers over, so each record is printed once, by our handler. In JSON mode ``sys.stderr`` itself
becomes :class:`JsonStderr`: whatever else lands there (a library's ``print``, MLflow's handler
installed when ``mlflow`` is first imported, a traceback) is written as JSON objects too.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
from typing import Any, Literal, TextIO

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


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


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


def json_line(level: str, logger: str, msg: str) -> str:
    """One JSON log line (no newline) in :class:`JsonFormatter`'s shape, for text that is not a
    record: the CLI's fatal ``error:`` line, a foreign line on stderr."""
    doc = {
        "ts": _timestamp(time.time()),
        "level": level,
        "logger": logger,
        "msg": safe(msg),
        "session_id": session_id_var.get(),
        "client_id": client_id_var.get(),
    }
    return json.dumps(doc)


#: python-socketio / python-engineio add a bare StreamHandler to these when a client or server is
#: made while the logger's level is unset (each record then printed twice): a level set first stops it.
SOCKETIO_LOGGERS = ("socketio.client", "socketio.server", "engineio.client", "engineio.server")

#: Loggers of libraries that print through console handlers of their own (Flower: at import;
#: MLflow, and the SQLAlchemy / Alembic / Huey loggers it configures: when ``mlflow`` is imported).
LIBRARY_LOGGERS = ("flwr", "mlflow", "alembic", "sqlalchemy.engine", "huey", *SOCKETIO_LOGGERS)


def adopt_library_loggers() -> None:
    """Let :data:`LIBRARY_LOGGERS` records reach only our handlers: remove their console handlers
    (file handlers stay) and let them propagate. The console handler's level becomes the logger's,
    so what was shown stays shown (Flower: INFO, not its logger's DEBUG). Idempotent."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        console = [
            h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]  # fmt: skip
        for handler in console:
            logger.removeHandler(handler)
            if handler.level > logger.getEffectiveLevel():
                logger.setLevel(handler.level)
        if console:
            logger.propagate = True


#: A line of a library's own console format: MLflow's ``2026/12/03 19:20:01 WARNING mlflow.x: msg``
#: or Flower's ``WARNING :   msg`` (both maybe coloured).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL = "(DEBUG|INFO|WARNING|ERROR|CRITICAL)"
_MLFLOW_LINE = re.compile(rf"\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d {_LEVEL} ([\w.]+): (.*)", re.S)
_FLOWER_LINE = re.compile(rf"{_LEVEL} +(?:[\d\-:, ]+)?: +(.*)", re.S)


def _foreign(text: str) -> str:
    """``text`` written to stderr by something other than our handler, as JSON lines: kept when
    each line already is a JSON object, else one object (a library's log line parsed)."""
    lines = text.split("\n")
    if all(_is_json_object(line) for line in lines):
        return text
    plain = _ANSI.sub("", text)
    # (taking the logger over here, inside its handler, would print this record twice: its
    # propagation is decided after its handlers ran; json_line binds the same ids as a record)
    if m := _MLFLOW_LINE.fullmatch(plain):
        return json_line(m[1].lower(), m[2], m[3])
    if m := _FLOWER_LINE.fullmatch(plain):
        return json_line(m[1].lower(), "flwr", m[2])
    return json_line("warning" if "warn" in plain.lower() else "info", "stderr", plain)


def _is_json_object(line: str) -> bool:
    if not (line.startswith("{") and line.endswith("}")):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class JsonStderr:
    """``sys.stderr`` while logging JSON: what is written passes to the real stream as JSON lines.
    Text up to the last newline of a write is one object (a log record with a multi-line message
    stays one); the rest waits for its newline."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                if done.strip():
                    self.stream.write(_foreign(done) + "\n")
                    self.stream.flush()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer, ...: the real stream's
        return getattr(self.stream, name)


def real_stderr() -> TextIO:
    """The stream under :class:`JsonStderr` (or ``sys.stderr`` itself)."""
    err = sys.stderr
    return err.stream if isinstance(err, JsonStderr) else err


def json_logging_active() -> bool:
    """True once :func:`setup_logging` chose JSON (what the CLI's last error line follows)."""
    return isinstance(sys.stderr, JsonStderr)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("kosmos_fl").critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))


def setup_logging(verbose: bool = False, fmt: LogFormat = "text", console: Any = None) -> None:
    """Configure the root logger once for a command (replaces earlier handlers; may be called again,
    e.g. once the config says more), and take over Flower's and MLflow's console loggers."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(real_stderr())
        handler.setFormatter(JsonFormatter())
        if not isinstance(sys.stderr, JsonStderr):
            sys.stderr = JsonStderr(sys.stderr)  # type: ignore[assignment]
        logging.captureWarnings(True)  # warnings.warn(...): records, so JSON too
        sys.excepthook = _log_uncaught
    else:
        if isinstance(sys.stderr, JsonStderr):
            sys.stderr = sys.stderr.stream
        if console is not None and not console.is_terminal:
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
    for name in SOCKETIO_LOGGERS:  # (what python-socketio itself would set: INFO with logger=True)
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    adopt_library_loggers()
