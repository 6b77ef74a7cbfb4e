"""The one helper for text shown or sent: credentials out of URIs, control characters escaped."""

from __future__ import annotations

import json
import logging

import pytest

from kosmos_fl.logs import JsonFormatter, SafeTextFilter
from kosmos_fl.redact import printable, redact, safe


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("http://alice:pw@mlflow:5000/x", "http://mlflow:5000/x"),
        (
            "postgresql://u:p%40ss@db:5432/kosmos?sslmode=require",
            "postgresql://db:5432/kosmos?sslmode=require",
        ),
        (
            "see postgresql+psycopg://u@db/x and https://t0ken@h/",
            "see postgresql+psycopg://db/x and https://h/",
        ),
        ("host=db user=k password=secret dbname=x", "host=db user=k password=*** dbname=x"),
        ("./mlruns", "./mlruns"),
        ("mail me: ops@example.org", "mail me: ops@example.org"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
    ],
)
def test_redact(given: str, shown: str) -> None:
    assert redact(given) == shown


def test_printable_escapes_controls() -> None:
    assert (
        printable("ok\nFAKE 2026 INFO admitted\r\x1b[2J\u2028")
        == "ok\\nFAKE 2026 INFO admitted\\r\\x1b[2J\\u2028"
    )
    assert printable("Grüße ✓") == "Grüße ✓"
    assert safe("x\nhttp://u:p@h/") == "x\\nhttp://h/"


def test_log_filter_applies_to_args_and_json() -> None:
    record = logging.LogRecord(
        "t", logging.WARNING, "", 0, "refused %s: %s", ("site\nx", "http://u:pw@h/"), None
    )
    assert SafeTextFilter().filter(record)
    assert record.getMessage() == "refused site\\nx: http://h/"
    assert json.loads(JsonFormatter().format(record))["msg"] == "refused site\\nx: http://h/"
