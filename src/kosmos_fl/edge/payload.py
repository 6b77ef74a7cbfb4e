"""The MQTT payloads a machine's sensor gateway publishes (format documented in docs/EDGE.md).

Two kinds of JSON message share one topic, so the broker keeps them in order:

* ``snapshot``: one vibration recording (two channels, horizontal and vertical, in g) of a bearing,
  numbered by ``seq``; ``(machine_id, bearing_id, seq)`` is its key, so a re-sent snapshot is
  recognised as a duplicate.
* ``maintenance``: the bearing failed and was replaced; ``timestamp`` is the failure time from
  which the remaining useful life of every earlier snapshot is counted.

Channels are either JSON arrays of numbers (easy for any gateway) or base64 of little-endian
float32 (``encoding: "f32le-base64"``, a third of the size and much faster to parse).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from kosmos_fl.errors import DataFormatError

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Larger messages are refused before parsing (a 2560-sample snapshot is about 30 kB)."""
MAX_SAMPLES = 1 << 20
#: Longest JSON text of one sample of both channels ("-1.2345678901234567e-05, " twice, rounded up).
_BYTES_PER_SAMPLE = 64
_ENVELOPE_BYTES = 16 * 1024


def max_payload_bytes(expect_samples: int) -> int:
    """Largest payload a snapshot of ``expect_samples`` per channel can take (JSON numbers are the
    longest encoding), capped by :data:`MAX_PAYLOAD_BYTES`: anything larger is refused unparsed."""
    return min(MAX_PAYLOAD_BYTES, _BYTES_PER_SAMPLE * expect_samples + _ENVELOPE_BYTES)


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""Machine and bearing ids: they name folders on the client, so no separators or dots first."""

Encoding = Literal["json", "f32le-base64"]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    machine_id: Annotated[str, Field(pattern=ID_PATTERN)]
    bearing_id: Annotated[str, Field(pattern=ID_PATTERN)]
    timestamp: float = Field(ge=0, allow_inf_nan=False, description="seconds since the Unix epoch")


class Channels(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    horizontal: list[float] | str
    vertical: list[float] | str


def _decode(
    value: list[float] | str, encoding: Encoding, name: str, max_samples: int = MAX_SAMPLES
) -> np.ndarray:
    """One channel as float32; its sample count is checked before any conversion."""
    if encoding == "json":
        if isinstance(value, str):
            raise ValueError(f"channel {name} is a string but encoding is 'json' (a list of numbers)")
        if len(value) > max_samples:
            raise ValueError(f"channel {name} has more than {max_samples} samples")
        return np.asarray(value, dtype=np.float32)
    if not isinstance(value, str):
        raise ValueError(f"channel {name} must be a base64 string with encoding 'f32le-base64'")
    if len(value) > max_samples * 4 * 4 // 3 + 4:
        raise ValueError(f"channel {name} has more than {max_samples} samples")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"channel {name} is not valid base64") from None
    if len(raw) % 4:
        raise ValueError(f"channel {name} decodes to {len(raw)} bytes, not a whole number of float32")
    return np.frombuffer(raw, dtype="<f4")


class Snapshot(_Msg):
    """One vibration snapshot of a bearing."""

    kind: Literal["snapshot"]
    seq: int = Field(ge=0, lt=1 << 62, description="snapshot number of this bearing, from 0")
    sampling_rate: float = Field(gt=0, le=10_000_000, allow_inf_nan=False, description="Hz")
    encoding: Encoding = "json"
    channels: Channels
    condition: int | None = Field(None, ge=0, le=1000, description="operating condition id")
    _signal: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _signals(self, info: ValidationInfo) -> Snapshot:
        most = int((info.context or {}).get("max_samples", MAX_SAMPLES))
        h = _decode(self.channels.horizontal, self.encoding, "horizontal", most)
        v = _decode(self.channels.vertical, self.encoding, "vertical", most)
        if h.size != v.size:
            raise ValueError(f"channels differ in length: horizontal {h.size}, vertical {v.size}")
        if h.size < 2:
            raise ValueError("channels need at least 2 samples")
        signal = np.stack([h, v], axis=1)
        if not np.isfinite(signal).all():
            raise ValueError("channels hold NaN or infinite values")
        self._signal = signal
        return self

    @property
    def signal(self) -> np.ndarray:
        """(samples, 2) float32: [:, 0] horizontal, [:, 1] vertical, in g."""
        return self._signal

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.machine_id, self.bearing_id, self.seq)


class Maintenance(_Msg):
    """The bearing failed (at ``timestamp``) and was replaced."""

    kind: Literal["maintenance"]
    event: Literal["failure_replacement"] = "failure_replacement"
    last_seq: int | None = Field(
        None, ge=0, description="seq of the bearing's last snapshot (lets the client see gaps)"
    )
    replaced_by: Annotated[str, Field(pattern=ID_PATTERN)] | None = None


Message = Annotated[Snapshot | Maintenance, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Snapshot | Maintenance] = TypeAdapter(Message)


def parse_message(
    payload: bytes, max_samples: int = MAX_SAMPLES, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Snapshot | Maintenance:
    """Validate one MQTT payload; a bad one raises :class:`DataFormatError` with a one-line reason.
    A payload over ``max_bytes`` is refused before it is parsed, a channel over ``max_samples``
    before it is converted (the ingest passes what its use case expects)."""
    limit = min(max_bytes, MAX_PAYLOAD_BYTES)
    if len(payload) > limit:
        raise DataFormatError(f"payload of {len(payload)} bytes exceeds {limit}")
    try:
        return _ADAPTER.validate_json(payload, context={"max_samples": min(max_samples, MAX_SAMPLES)})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        if err["type"] == "json_invalid":
            raise DataFormatError("payload is not valid JSON") from None
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DataFormatError(f"{where}: {err['msg']}{more}") from None


def _channel(x: np.ndarray, encoding: Encoding) -> list[float] | str:
    if encoding == "json":
        return [float(v) for v in np.asarray(x, dtype=np.float32)]
    return base64.b64encode(np.ascontiguousarray(x, dtype="<f4").tobytes()).decode("ascii")


def snapshot_payload(
    machine_id: str,
    bearing_id: str,
    seq: int,
    timestamp: float,
    signal: np.ndarray,
    sampling_rate: float,
    *,
    condition: int | None = None,
    encoding: Encoding = "f32le-base64",
) -> bytes:
    """The JSON bytes of a snapshot message (``signal``: (samples, 2) in g)."""
    if not math.isfinite(timestamp):
        raise ValueError("timestamp must be finite")
    msg: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "kind": "snapshot",
        "machine_id": machine_id,
        "bearing_id": bearing_id,
        "seq": int(seq),
        "timestamp": float(timestamp),
        "sampling_rate": float(sampling_rate),
        "encoding": encoding,
        "channels": {
            "horizontal": _channel(signal[:, 0], encoding),
            "vertical": _channel(signal[:, 1], encoding),
        },
    }
    if condition is not None:
        msg["condition"] = int(condition)
    return json.dumps(msg, separators=(",", ":")).encode()


def maintenance_payload(
    machine_id: str, bearing_id: str, timestamp: float, last_seq: int | None, replaced_by: str | None = None
) -> bytes:
    """The JSON bytes of a failure-and-replacement event."""
    msg: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "kind": "maintenance",
        "event": "failure_replacement",
        "machine_id": machine_id,
        "bearing_id": bearing_id,
        "timestamp": float(timestamp),
        "last_seq": last_seq,
        "replaced_by": replaced_by,
    }
    return json.dumps(msg, separators=(",", ":")).encode()
