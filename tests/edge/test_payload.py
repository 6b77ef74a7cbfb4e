"""Payload validation: what a gateway may send, and one clear reason for everything else."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from kosmos_fl.edge.payload import (
    MAX_PAYLOAD_BYTES,
    Maintenance,
    Snapshot,
    maintenance_payload,
    parse_message,
    snapshot_payload,
)
from kosmos_fl.errors import DataFormatError
from tests.edge.conftest import make_signals

SIG = make_signals(1)[0]


def _snapshot(**over: object) -> dict:
    msg = json.loads(snapshot_payload("m1", "Bearing1_1", 3, 1_700_000_000.5, SIG, 25600.0, encoding="json"))
    msg.update(over)
    return msg


@pytest.mark.parametrize("encoding", ["json", "f32le-base64"])
def test_snapshot_round_trip(encoding: str) -> None:
    raw = snapshot_payload(
        "m1", "Bearing1_1", 7, 1_700_000_000.5, SIG, 25600.0, condition=1, encoding=encoding
    )
    msg = parse_message(raw)
    assert isinstance(msg, Snapshot)
    assert msg.key == ("m1", "Bearing1_1", 7)
    assert msg.condition == 1 and msg.sampling_rate == 25600.0 and msg.timestamp == 1_700_000_000.5
    np.testing.assert_array_equal(msg.signal, SIG)
    assert msg.signal.dtype == np.float32 and msg.signal.shape == (2560, 2)


def test_base64_is_compact() -> None:
    b64 = snapshot_payload("m1", "B", 0, 1.0, SIG, 25600.0, encoding="f32le-base64")
    js = snapshot_payload("m1", "B", 0, 1.0, SIG, 25600.0, encoding="json")
    assert len(b64) < 0.7 * len(js)


def test_maintenance_round_trip() -> None:
    msg = parse_message(maintenance_payload("m1", "Bearing1_1", 1_700_005_000.0, 514, "Bearing1_2"))
    assert isinstance(msg, Maintenance)
    assert (msg.event, msg.last_seq, msg.replaced_by) == ("failure_replacement", 514, "Bearing1_2")


def _bad(**over: object) -> bytes:
    return json.dumps(_snapshot(**over)).encode()


def _b64(**channels: str) -> bytes:
    return _bad(encoding="f32le-base64", channels=channels)


THREE_BYTES = base64.b64encode(b"abc").decode()


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\x00\xffnot json", "not valid JSON"),
        (b"[1, 2, 3]", "(message)"),
        (json.dumps({"kind": "telemetry"}).encode(), "kind"),
        (_bad(extra=1), "extra"),
        (_bad(machine_id="../etc"), "machine_id"),
        (_bad(bearing_id=""), "bearing_id"),
        (_bad(seq=-1), "seq"),
        (_bad(sampling_rate=0), "sampling_rate"),
        (_bad(timestamp="yesterday"), "timestamp"),
        (_bad(channels={"horizontal": [1.0, 2.0], "vertical": [1.0]}), "differ"),
        (_bad(channels={"horizontal": [1.0, float("nan")], "vertical": [1.0, 2.0]}), "NaN"),
        (_bad(channels={"horizontal": "AAAA", "vertical": "AAAA"}), "string"),
        (_b64(horizontal="!!", vertical="AA=="), "base64"),
        (_b64(horizontal=THREE_BYTES, vertical="AAAA"), "float32"),
        (_bad(channels={"horizontal": [1.0, 2.0]}), "vertical"),
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "exceeds"),
    ],
)
def test_bad_payloads_raise_one_clear_line(payload: bytes, needle: str) -> None:
    with pytest.raises(DataFormatError) as err:
        parse_message(payload)
    text = str(err.value)
    assert needle in text and "\n" not in text
    assert len(text) < 300  # the reason, never the payload
