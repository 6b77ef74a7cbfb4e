"""Eligibility from collected data: enough complete, clean run-to-failure histories.

A history counts when its bearing's failure event arrived (so every snapshot has an RUL label),
it is in the processed cache, and at most ``max_bad_share`` of its snapshots fail a quality check
(a flat-lined channel: standard deviation at most ``flatline_std``; a clipped channel: at least
``clip_share`` of its samples at the peak level, or a peak at the sensor's ``full_scale``).
The answer names what is missing, so an operator sees why a site does not train yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kosmos_fl.config.edge import EdgeCriteria
from kosmos_fl.edge.store import BearingRecord, EdgeStore


@dataclass
class EdgeVerdict:
    """Result of the edge criteria check."""

    eligible: bool
    reason: str | None
    bearings: list[str] = field(default_factory=list)
    """Processed folders of the histories that count (the client trains on exactly these)."""
    summary: dict[str, Any] = field(default_factory=dict)


def _problem(rec: BearingRecord, crit: EdgeCriteria) -> str | None:
    """Why a history fails the quality checks, or None when it passes."""
    if not rec.snapshots or (rec.flat + rec.clipped) / rec.snapshots <= crit.max_bad_share:
        return None
    parts = []
    if rec.flat:
        parts.append(f"a flat-lined channel in {rec.flat} of {rec.snapshots} snapshots")
    if rec.clipped:
        parts.append(f"a clipped signal in {rec.clipped} of {rec.snapshots} snapshots")
    return " and ".join(parts)


def evaluate(store: EdgeStore, crit: EdgeCriteria) -> EdgeVerdict:
    """Check the criteria against what ``store`` holds now."""
    records = store.bearings(crit.flatline_std, crit.clip_share, crit.full_scale)
    folders = store.processed_folders()
    good: list[tuple[BearingRecord, str]] = []
    notes: list[str] = []
    for rec in records:
        label = f"{rec.machine_id}/{rec.bearing_id}"
        if not rec.labelled:
            notes.append(f"{label} still running ({rec.snapshots} snapshots, no failure event yet)")
            continue
        folder = folders.get((rec.machine_id, rec.bearing_id))
        if folder is None:
            notes.append(f"{label} failed but is not labelled yet")
            continue
        problem = _problem(rec, crit)
        if problem is not None:
            notes.append(f"{label} excluded: {problem}")
            continue
        good.append((rec, folder))
    histories = len(good)
    labelled = sum(r.snapshots for r, _ in good)
    summary: dict[str, Any] = {
        "source": "edge",
        "histories": histories,
        "labelled_snapshots": labelled,
        "samples": labelled,
        "bearings": sorted(f for _, f in good),
        "collected_snapshots": sum(r.snapshots for r in records),
        "gaps": sum(r.gaps for r, _ in good),
    }
    missing = []
    if histories < crit.min_histories:
        missing.append(f"{histories} of {crit.min_histories} complete run-to-failure histories")
    if labelled < crit.min_labelled_snapshots:
        missing.append(f"{labelled} of {crit.min_labelled_snapshots} labelled snapshots")
    if crit.min_histories == 0 and crit.min_labelled_snapshots == 0 and not good:
        missing.append("no labelled history at all")
    if missing:
        reason = "collected data not enough: " + "; ".join(missing)
        if notes:
            reason += (
                " (" + "; ".join(notes[:5]) + (f"; +{len(notes) - 5} more" if len(notes) > 5 else "") + ")"
            )
        if not records:
            reason += " (nothing collected yet from the machines)"
        return EdgeVerdict(False, reason, [f for _, f in good], summary)
    return EdgeVerdict(True, None, sorted(f for _, f in good), summary)
