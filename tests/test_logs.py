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
