"""Structured logs: one JSON object per line with the bound session and client ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from kosmos_fl.logs import ContextFilter, JsonFormatter, bind, bind_session


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("kosmos_fl.test_logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def test_json_lines_carry_ids_bound_per_task() -> None:
    logger, stream = _capture()

    async def client(sid: str) -> None:
        bind(client_id=sid)
        await asyncio.sleep(0.01)  # interleave with the other task
        logger.info("criteria from %s", sid)

    async def session() -> None:
        bind(client_id="leftover")
        bind_session("sess-1")
        logger.warning("session started", extra={"flower_run_id": 7})

    async def main() -> None:
        await asyncio.gather(client("a"), client("b"), session())

    asyncio.run(main())
    logger.info("outside")
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_msg = {r["msg"]: r for r in rows}
    assert by_msg["criteria from a"]["client_id"] == "a"
    assert by_msg["criteria from b"]["client_id"] == "b"
    assert by_msg["criteria from a"]["session_id"] is None
    started = by_msg["session started"]
    assert started["session_id"] == "sess-1" and started["client_id"] is None
    assert started["level"] == "warning" and started["flower_run_id"] == 7
    assert started["logger"] == "kosmos_fl.test_logs" and started["ts"].endswith("Z")
    assert by_msg["outside"]["session_id"] is None and by_msg["outside"]["client_id"] is None


def test_json_stderr_turns_every_foreign_line_into_json() -> None:
    """What libraries write to stderr themselves (MLflow's handler, Flower's coloured console
    handler, a print, a multi-line record) comes out as JSON objects; JSON passes unchanged."""
    from kosmos_fl.logs import JsonStderr

    out = io.StringIO()
    err = JsonStderr(out)  # type: ignore[arg-type]
    err.write("2026/12/03 19:28:15 INFO mlflow.store.db.utils: Creating initial MLflow database tables...\n")
    err.write("\x1b[93mWARNING \x1b[0m:   fraction_evaluate is set to 0.0.\n")
    print("a plain line", file=err)  # two writes: the text, then the newline
    err.write("first line\nsecond line\n")  # one write, one record
    err.write('{"already": "json"}\n')
    err.write("no newline yet")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r.get("level"), r.get("logger")) for r in rows] == [
        ("info", "mlflow.store.db.utils"),
        ("warning", "flwr"),
        ("info", "stderr"),
        ("info", "stderr"),
        (None, None),
    ]
    assert rows[0]["msg"] == "Creating initial MLflow database tables..."
    assert rows[1]["msg"] == "fraction_evaluate is set to 0.0."
    assert rows[3]["msg"] == "first line\\nsecond line"  # one object, the newline escaped (safe())
    assert rows[4] == {"already": "json"}
    err.write(" - now\n")
    assert json.loads(out.getvalue().splitlines()[-1])["msg"] == "no newline yet - now"


def test_a_flower_warning_is_printed_once() -> None:
    """Flower's logger has its own console handler and also propagates to ours: without taking it
    over every Flower record was printed twice (text and JSON mode alike); python-socketio adds one
    of its own when a client is made."""
    import subprocess
    import sys

    code = (
        "import sys; from flwr.common.logger import log; from logging import WARNING\n"
        "from rich.console import Console; from kosmos_fl.logs import setup_logging\n"
        "setup_logging(fmt=sys.argv[1], console=Console(stderr=True))\n"
        "log(WARNING, 'the one flower warning')\n"
        "import socketio; socketio.AsyncClient(logger=False)\n"  # adds its own handler unless a level is set
        "import logging; logging.getLogger('socketio.client').error('the one socketio error')\n"
    )
    for fmt in ("text", "json"):
        res = subprocess.run(
            [sys.executable, "-c", code, fmt], capture_output=True, text=True, timeout=120, check=True
        )
        lines = [line for line in res.stderr.splitlines() if "the one flower warning" in line]
        assert len(lines) == 1, res.stderr
        assert len([line for line in res.stderr.splitlines() if "the one socketio error" in line]) == 1
        if fmt == "json":
            assert json.loads(lines[0])["logger"] == "flwr"
