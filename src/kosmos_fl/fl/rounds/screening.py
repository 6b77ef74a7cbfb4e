"""Apply :mod:`kosmos_fl.fl.rounds.validation` to a round's Flower replies (the ServerApp's gate)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Message

from kosmos_fl.fl.rounds.liveness import reply_client_id
from kosmos_fl.fl.rounds.validation import Rejection, validate_updates

log = logging.getLogger("kosmos_fl.screening")


@dataclass
class Screened:
    accepted: list[Message]
    rejected: list[tuple[int | None, str]]  # (client id, reason)
    norms: list[float]  # norms of the accepted updates


def screen_replies(
    replies: Sequence[Message],
    reference: list[np.ndarray],
    max_ratio: float | None,
    max_norm: float | None,
    history: Sequence[float] = (),
    trainable: np.ndarray | None = None,
) -> Screened:
    """Split successful replies into accepted and rejected updates (the reasons name the client);
    ``trainable`` restricts the norm check to trainable parameters (``fl.validation``)."""
    if trainable is not None and trainable.size != sum(int(a.size) for a in reference):
        log.warning(
            "trainable mask does not fit the global model (%d elements); screening all", trainable.size
        )
        trainable = None
    updates: dict[int, tuple[list[np.ndarray], object]] = {}
    early: list[Rejection] = []
    for i, msg in enumerate(replies):
        try:
            arrays = msg.content.array_records.get("arrays")
            metrics = msg.content.metric_records.get("metrics")
            if arrays is None or metrics is None:
                early.append(Rejection(i, "reply holds no 'arrays' or no 'metrics' record"))
                continue
            updates[i] = (arrays.to_numpy_ndarrays(), metrics.get("num-examples"))
        except Exception as exc:  # a malformed record must not stop the round
            early.append(Rejection(i, f"reply cannot be read: {type(exc).__name__}: {exc}"))
    norms, rejections = validate_updates(updates, reference, max_ratio, max_norm, history, trainable)
    rejections = early + rejections
    bad = {r.key for r in rejections}
    out = Screened(
        accepted=[m for i, m in enumerate(replies) if i not in bad],
        rejected=[],
        norms=[norms[i] for i in sorted(norms)],
    )
    for r in rejections:
        msg = replies[int(r.key)]  # type: ignore[call-overload]
        cid = reply_client_id(msg)
        out.rejected.append((cid, r.reason))
        log.warning(
            "update of client %s (node %s) rejected: %s",
            "?" if cid is None else cid,
            msg.metadata.src_node_id,
            r.reason,
        )
    return out
