"""The promotion decision: a pure function of the gate's evidence, and that evidence as tags."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import LOWER_IS_BETTER
from airmlops_core.stats.comparison import Comparison
from airmlops_core.stats.fairness import MISSING_GROUP, FairnessResult
from airmlops_core.stats.metrics import METRIC_FUNCS
from airmlops_core.train.generalization import OverfitCheck
from airmlops_core.validate.shadow_evidence import ShadowEvidence

log = logging.getLogger(__name__)

TAG_VALUE_LIMIT = 5000
"""Longest value a model version tag gets: MLflow rejects longer ones."""
_TRUNCATED = "...[truncated]"


@dataclass(frozen=True)
class Decision:
    """Promote or not, every reason, and the evidence behind it (JSON-able).

    `reasons` are the blocking reasons when rejected, and what was checked when promoted.
    """

    promote: bool
    reasons: list[str]
    evidence: dict[str, Any]

    def tags(self) -> dict[str, str]:
        """Flat model version tags, each value a string of at most 5000 characters.

        Every key is always set ("null" for a check that did not run), so a re-decided version
        never keeps a stale tag from an earlier decision. The full evidence, with per-group
        fairness values, belongs in a run artifact: here fairness is summarised.
        """
        ev = self.evidence
        fairness = ev.get("fairness")
        return {
            "gate.decision": str(ev.get("decision", "promote" if self.promote else "reject")),
            "gate.reasons": _json_tag(self.reasons),
            "gate.data_check": _json_tag(ev.get("data_check")),
            "gate.floors": _json_tag(ev.get("floors")),
            "gate.comparison": _json_tag(ev.get("comparison")),
            "gate.fairness": _json_tag(None if fairness is None else fairness["summary"]),
            "gate.overfit": _json_tag(ev.get("overfit")),
            "gate.shadow": _json_tag(ev.get("shadow")),
        }

    def message(self, model: str, version: str) -> str:
        """Slack-ready text (mrkdwn): what was decided for which version, and every reason."""
        if self.evidence.get("decision") == "shadow":
            head = (
                f":hourglass: *{model}* version {version} passed the holdout gate and is "
                "scored in the shadow of the champion: the champion stays for now"
            )
        elif self.promote:
            head = f":white_check_mark: *{model}* version {version} promoted to champion"
            if self.evidence.get("comparison") is None:
                head += " (no champion before it: the floors decided)"
        else:
            head = f":no_entry: *{model}* version {version} rejected: the champion stays"
        return "\n".join([head, *(f"• {r}" for r in self.reasons)])


def decide(
    *,
    data_check_passed: bool,
    data_check_summary: str,
    floor_failures: list[str],
    segment_floor_failures: list[str],
    comparison: Comparison | None,
    fairness: FairnessResult | None,
    overfit: OverfitCheck | None = None,
    shadow: ShadowEvidence | None = None,
) -> Decision:
    """Promote the challenger only if every check passes; list every failing check.

    Rejects when the holdout's data check failed, any metric floor (overall or per segment) is
    missed, the train-versus-holdout gap exceeds its limit, a champion exists and the
    challenger is not better by the margin (a tie keeps the champion), or the fairness gate
    blocks, or the shadow runs' production evidence blocks (`ShadowEvidence.blocking`).
    Without a champion (`comparison` None) the floors,
    the data check and fairness alone decide.

    Args:
        data_check_passed: Whether the holdout passed its expectation suite.
        data_check_summary: One line about the data check.
        floor_failures: Missed overall floors (evaluation.floor_failures).
        segment_floor_failures: Missed per-segment floors (segment_floor_failures).
        comparison: Champion vs challenger, or None when there is no champion.
        fairness: The fairness gate, or None when the model has no sensitive features.
        overfit: The train-versus-holdout gap (and k-fold estimate), or None when not measured.
        shadow: The production evidence of the shadow runs, or None when there were none.

    Returns:
        The Decision with its reasons and evidence.
    """
    blocking: list[str] = []
    passing: list[str] = []
    if data_check_passed:
        passing.append(f"data check passed: {data_check_summary}")
    else:
        blocking.append(f"data check failed: {data_check_summary}")
    if floor_failures or segment_floor_failures:
        blocking += [f"floor: {f}" for f in floor_failures]
        blocking += [f"segment floor: {f}" for f in segment_floor_failures]
    else:
        passing.append("every metric floor is met, overall and per segment")
    if overfit is not None:
        (passing if overfit.passed else blocking).append(overfit.reason)
    if comparison is None:
        passing.append("no champion to compare with: the floors decide")
    elif comparison.challenger_better:
        passing.append(comparison.reason)
    else:
        blocking.append(comparison.reason)
    if fairness is not None:
        (passing if fairness.passed else blocking).extend(fairness.reasons)
    if shadow is not None:
        (passing if shadow.passed else blocking).extend(shadow.reasons())
    promote = not blocking
    evidence: dict[str, Any] = {
        "decision": "promote" if promote else "reject",
        "data_check": {"passed": data_check_passed, "summary": data_check_summary},
        "floors": {
            "failures": list(floor_failures),
            "segment_failures": list(segment_floor_failures),
        },
        "comparison": None if comparison is None else comparison.to_dict(),
        "fairness": None
        if fairness is None
        else {**fairness.to_dict(), "summary": fairness.summary()},
        "overfit": None if overfit is None else overfit.to_dict(),
        "shadow": None if shadow is None else shadow.to_dict(),
    }
    reasons = passing if promote else blocking
    log.info("gate decision: %s (%s)", evidence["decision"], "; ".join(reasons))
    return Decision(promote=promote, reasons=reasons, evidence=evidence)


def wait_for_shadow(decision: Decision, done: int, needed: int) -> Decision:
    """A passing decision turned into a wait: the challenger shadows `needed` score runs
    (it has `done`) before the gate decides again with their production evidence."""
    if not decision.promote:
        raise ValueError("only a passing challenger waits for shadow runs")
    wait = (
        f"waiting for {needed} shadow score run(s) ({done} done): the gate decides again "
        "with their production evidence"
    )
    evidence = {**decision.evidence, "decision": "shadow"}
    return Decision(promote=False, reasons=[*decision.reasons, wait], evidence=evidence)


def segment_floor_failures(
    y_true: Any, output: Any, segments: pd.Series, metric: str, floor: float, *, min_rows: int = 50
) -> list[str]:
    """Reasons each segment with at least `min_rows` rows misses the metric's floor.

    Segments are the values of `segments` (missing values form "(missing)"); rows align by
    position with `y_true` and `output` (the conventions of metrics.METRIC_FUNCS). A segment
    where the metric is undefined (AUC of a segment holding one class) is skipped, not failed.

    Returns:
        One sentence per failing segment, empty when all pass.
    """
    if metric not in METRIC_FUNCS:
        raise ValueError(f"unknown metric '{metric}'; choose from {sorted(METRIC_FUNCS)}")
    y, out = np.asarray(y_true), np.asarray(output)
    keys = np.array(
        [MISSING_GROUP if pd.isna(v) else str(v) for v in segments.tolist()], dtype=object
    )
    if not len(y) == len(out) == len(keys):
        raise ValueError(
            f"y_true, output and segments have lengths {len(y)}, {len(out)}, {len(keys)}"
        )
    name = str(segments.name) if segments.name is not None else "segment"
    lower = metric in LOWER_IS_BETTER
    op = "<=" if lower else ">="
    failures = []
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        n = int(rows.sum())
        if n < min_rows:
            continue
        value = METRIC_FUNCS[metric](y[rows], out[rows])
        if math.isnan(value):
            log.info("%s undefined for segment %s=%s (n=%d): skipped", metric, name, key, n)
            continue
        if (value > floor) if lower else (value < floor):
            failures.append(
                f"{name}={key}: {metric}={value:.4f} misses the floor {op} {floor} (n={n})"
            )
    return failures


def _json_tag(obj: Any) -> str:
    """Compact JSON within TAG_VALUE_LIMIT, shortening long strings, lists and mappings in steps
    (each shortened collection says how many items it left out) before a last-resort hard cut."""
    text = _dumps(obj)
    for max_str, max_items in _SHRINK_STEPS:
        if len(text) <= TAG_VALUE_LIMIT:
            return text
        text = _dumps(_shrink(obj, max_str, max_items))
    if len(text) > TAG_VALUE_LIMIT:
        text = text[: TAG_VALUE_LIMIT - len(_TRUNCATED)] + _TRUNCATED
    return text


_SHRINK_STEPS = ((400, 1000), (300, 20), (160, 8), (80, 3), (40, 1))


def _shrink(obj: Any, max_str: int, max_items: int) -> Any:
    if isinstance(obj, str):
        return obj if len(obj) <= max_str else obj[: max_str - 3] + "..."
    if isinstance(obj, dict):
        items = list(obj.items())
        out = {str(k): _shrink(v, max_str, max_items) for k, v in items[:max_items]}
        if len(items) > max_items:
            out["..."] = f"{len(items) - max_items} more"
        return out
    if isinstance(obj, list | tuple):
        kept = [_shrink(v, max_str, max_items) for v in obj[:max_items]]
        return kept + [f"... {len(obj) - max_items} more"] if len(obj) > max_items else kept
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(
        jsonable(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
    )
