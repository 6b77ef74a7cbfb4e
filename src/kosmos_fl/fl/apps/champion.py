"""The ``champion`` alias: which registered version ``predict`` and ``serve`` use by default.

Every finished session registers a new version, tagged with its final evaluation metrics and the
evaluation set they were measured on. The new version becomes ``<name>@champion`` only when it
beats the current champion on the same evaluation set by ``champion_margin`` (relative, on
``champion_metric``, lower is better), or when there is no champion yet. A champion evaluated on
other data is not compared (that would compare two different exams): it stays, and the decision
says so. Every decision is a tag of the new version and a line in the server log. Deciding twice
for one version (the outbox delivers again after a lost ack) keeps the first decision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("kosmos_fl.server_app")

ALIAS = "champion"
#: Version tags: ``kosmos.eval.<metric>`` per final metric, the evaluation set, the decision.
TAG_EVAL = "kosmos.eval."
TAG_EVAL_SET = "kosmos.eval_set"
TAG_DECISION = "kosmos.champion_decision"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


def decide(
    new: float, current: float | None, margin: float, same_eval_set: bool, metric: str, current_version: str
) -> Decision:
    """Whether a new version with score ``new`` replaces the champion scoring ``current`` (pure)."""
    if not math.isfinite(new):
        return Decision(False, f"{metric} {new} is not a finite score")
    if current is None:
        return Decision(True, f"first champion ({metric} {new:.4g})")
    if not same_eval_set:
        return Decision(
            False,
            f"champion version {current_version} was evaluated on other data; not compared "
            f"(promote by hand: mlflow set alias {ALIAS})",
        )
    than = f"champion version {current_version} ({current:.4g}, margin {margin:g})"
    if new < current * (1 - margin):
        return Decision(True, f"{metric} {new:.4g} beats {than}")
    return Decision(False, f"{metric} {new:.4g} does not beat {than}")


def tag_and_promote(
    client: Any,
    name: str,
    version: str,
    metrics: dict[str, float],
    eval_set: list[str],
    metric: str = "RMSE",
    margin: float = 0.0,
) -> Decision:
    """Tag version ``version`` of ``name`` with its metrics and move ``@champion`` to it if it wins."""
    from mlflow.exceptions import MlflowException

    set_key = ",".join(sorted(eval_set))
    for key, value in metrics.items():
        client.set_model_version_tag(name, version, f"{TAG_EVAL}{key}", repr(float(value)))
    client.set_model_version_tag(name, version, TAG_EVAL_SET, set_key)
    try:
        champ = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        champ = None
    if champ is not None and str(champ.version) == str(version):  # decided before its ack was lost
        return Decision(True, str(champ.tags.get(TAG_DECISION, "already the champion")))
    current = None
    if champ is not None and f"{TAG_EVAL}{metric}" in champ.tags:
        current = float(champ.tags[f"{TAG_EVAL}{metric}"])
    decision = decide(
        float(metrics.get(metric, math.nan)),
        current,
        margin,
        champ is not None and champ.tags.get(TAG_EVAL_SET) == set_key,
        metric,
        str(champ.version) if champ is not None else "",
    )
    if decision.promoted:
        client.set_registered_model_alias(name, ALIAS, version)
    client.set_model_version_tag(name, version, TAG_DECISION, decision.reason)
    log.info(
        "model %s version %s %s: %s",
        name,
        version,
        f"is {ALIAS}" if decision.promoted else "stays a candidate",
        decision.reason,
    )
    return decision
