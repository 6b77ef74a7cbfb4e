"""Labelling a bearing collected at the edge: its snapshots up to the failure event become a
:class:`~kosmos_fl.data.bearing.processed.ProcessedBearing` with RUL labels, made with the data
pipeline's own code (:func:`~kosmos_fl.data.bearing.processed.process_raw`). Pure: the store
(:mod:`kosmos_fl.edge.store`) reads the snapshots and writes the result."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from kosmos_fl.data.bearing.femto import RawBearing, bearing_condition
from kosmos_fl.data.bearing.processed import ProcessedBearing, process_raw
from kosmos_fl.errors import DataError

# the store's logger: these lines are part of what `kosmos-fl machine` operators follow there
log = logging.getLogger("kosmos_fl.edge.store")


def folder_names(labelled: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Folder of each labelled ``(machine_id, bearing_id)`` in the processed layout: its bearing
    id, prefixed with the machine id only when two machines report the same bearing id."""
    labelled = list(labelled)
    owners: dict[str, int] = {}
    for _, b in labelled:
        owners[b] = owners.get(b, 0) + 1
    return {(m, b): (b if owners[b] == 1 else f"{m}-{b}") for m, b in labelled}


def label_bearing(
    timestamps: np.ndarray,
    signals: np.ndarray,
    condition: int | None,
    *,
    machine_id: str,
    bearing_id: str,
    folder: str,
    failure: float,
    source: str,
) -> ProcessedBearing | None:
    """The bearing's snapshots up to ``failure`` (later ones dropped with a warning, repeated
    timestamps once) processed and labelled with their RUL; None when none is left. Without a
    reported operating ``condition`` the one in ``bearing_id`` (``BearingC_N``) is used, else 0.
    ``source`` says where the result came from (kept in the processed cache)."""
    keep = timestamps <= failure
    if not keep.all():
        log.warning(
            "%s/%s: %d snapshot(s) after the failure time are not labelled",
            machine_id,
            bearing_id,
            int((~keep).sum()),
        )
        timestamps, signals = timestamps[keep], signals[keep]
    if timestamps.size == 0:
        return None
    if np.any(np.diff(timestamps) <= 0):
        _, first = np.unique(timestamps, return_index=True)
        timestamps, signals = timestamps[first], signals[first]
    if condition is None:
        try:
            condition = bearing_condition(bearing_id)
        except DataError:
            condition = 0
    raw = RawBearing(name=folder, condition=condition, timestamps=timestamps, signals=signals, files=())
    bearing = process_raw(raw)
    rul = failure - timestamps
    life = failure - timestamps[0]
    fraction = rul / life if life > 0 else np.zeros_like(rul)
    return replace(bearing, rul_seconds=rul, rul_fraction=fraction, source=source)
