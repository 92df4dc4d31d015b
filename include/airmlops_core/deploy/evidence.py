"""What a deploy decides, as pure functions: is the source version deployable, which tags travel
with it, does the golden request match, and may the verified version become champion."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from airmlops_core.tracking.model_digest import DIGEST_TAG
from airmlops_core.tracking.registry import IDEMPOTENCY_TAG
from airmlops_core.tracking.runs import TAG_PREFIX, TRIGGERED_BY
from airmlops_core.validate.shadow_evidence import ShadowEvidence

GATE_DECISION_TAG = "gate.decision"
REJECTED_TAG = "rejected"
DEPLOY = f"{TAG_PREFIX}deploy."
SOURCE_ENVIRONMENT_TAG = f"{DEPLOY}source_environment"
SOURCE_REGISTRY_TAG = f"{DEPLOY}source_registry"
SOURCE_VERSION_TAG = f"{DEPLOY}source_version"
SOURCE_RUN_TAG = f"{DEPLOY}source_run_id"
TARGET_ENVIRONMENT_TAG = f"{DEPLOY}environment"
REQUESTED_BY_TAG = f"{DEPLOY}requested_by"
DEPLOY_RUN_TAG = f"{DEPLOY}run"
GOLDEN_TOLERANCE = 1e-9

# lineage recorded on the source version that stays true in any registry (the source run's
# own Airflow context is kept under deploy.source_*; registry bookkeeping is not carried)
_CARRIED_PREFIXES = ("gate.", "metric.")
_CARRIED_KEYS = tuple(
    f"{TAG_PREFIX}{k}"
    for k in (
        "data_sha256",
        "train_sha256",
        "train_uri",
        "holdout_sha256",
        "holdout_uri",
        "spec_sha",
        "floors",
        "retrain_reason",
        "approved_by",
        "origin",
    )
)


class DeployRefusal(ValueError):
    """Why a version may not be deployed (raised as errors.DeployRefused by the flow)."""


def gate_refusal(tags: Mapping[str, str], label: str) -> str | None:
    """Why the version with these registry tags did not pass its gate in its environment, or
    None when it did (`gate.decision` is "promote" and no `rejected` tag).

    A version deployed into an environment carries its original gate tags (`carried_tags`),
    and a deploy that was refused or rejected there tags it `rejected`: the rule holds along
    the whole chain dev -> staging -> production.
    """
    if REJECTED_TAG in tags:
        rejected = tags[REJECTED_TAG]
        return f"{label} did not pass its gate: it was rejected in its environment: {rejected}"
    decision = tags.get(GATE_DECISION_TAG)
    if decision is None:
        return f"{label} has no gate decision (tag {GATE_DECISION_TAG}): it never passed the gate"
    if decision != "promote":
        reasons = tags.get("gate.reasons", "")
        return f"{label} did not pass its gate (gate.decision={decision}): {reasons}".rstrip(": ")
    return None


def carried_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The source version's lineage and gate evidence that travel to the target version."""
    out = {
        k: v
        for k, v in tags.items()
        if (k.startswith(_CARRIED_PREFIXES) or k in _CARRIED_KEYS) and k != IDEMPOTENCY_TAG
    }
    if TRIGGERED_BY in tags:
        out[f"{DEPLOY}trained_by"] = tags[TRIGGERED_BY]
    return out


def provenance_tags(
    *,
    source_environment: str,
    source_registry: str,
    source_version: str,
    source_run_id: str,
    digest: str,
    target_environment: str,
    requested_by: str,
    deploy_run: str,
) -> dict[str, str]:
    """Where the target version came from and who asked, as version tags."""
    return {
        SOURCE_ENVIRONMENT_TAG: source_environment,
        SOURCE_REGISTRY_TAG: source_registry,
        SOURCE_VERSION_TAG: str(source_version),
        SOURCE_RUN_TAG: source_run_id,
        DIGEST_TAG: digest,
        TARGET_ENVIRONMENT_TAG: target_environment,
        REQUESTED_BY_TAG: requested_by,
        DEPLOY_RUN_TAG: deploy_run,
    }


@dataclass(frozen=True)
class GoldenCheck:
    """The golden request: the target's answer to the source's recorded rows."""

    rows: int
    max_abs_diff: float
    tolerance: float = GOLDEN_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.rows > 0 and self.max_abs_diff <= self.tolerance

    @property
    def reason(self) -> str:
        if self.rows == 0:
            return "golden request: no example rows recorded with the model"
        verb = "matches" if self.passed else "differs from"
        return (
            f"golden request: the target's output on {self.rows} example row(s) {verb} the "
            f"source's (max abs difference {self.max_abs_diff:.3g}, tolerance {self.tolerance:g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "passed": self.passed}


def golden_check(source_output: Any, target_output: Any) -> GoldenCheck:
    """Compare the outputs of the same rows in the source and in the target.

    A different shape, or a NaN where the other has a number, is an infinite difference.
    """
    a = np.asarray(source_output, dtype=float)
    b = np.asarray(target_output, dtype=float)
    if a.shape != b.shape:
        return GoldenCheck(rows=int(a.shape[0]) if a.ndim else 0, max_abs_diff=math.inf)
    if not a.size:
        return GoldenCheck(rows=0, max_abs_diff=0.0)
    same_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(same_nan, 0.0, np.abs(a - b))
    worst = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff)))
    return GoldenCheck(rows=int(a.shape[0]), max_abs_diff=worst)


@dataclass(frozen=True)
class DeployDecision:
    """May the verified version become champion in the target (after approval), and why."""

    promote: bool
    reasons: list[str]
    evidence: dict[str, Any]

    def tags(self) -> dict[str, str]:
        """The verification as version tags (deploy.*), each value at most 5000 characters."""
        return {
            f"{DEPLOY}decision": "promote" if self.promote else "reject",
            f"{DEPLOY}reasons": json.dumps(self.reasons)[:5000],
            f"{DEPLOY}evidence": json.dumps(self.evidence, default=str)[:5000],
        }

    def message(self, model: str, version: str, route: str) -> str:
        """Slack-ready text (mrkdwn) with every reason."""
        if self.promote:
            head = f":mag: *{model}* version {version} verified in {route}"
        else:
            head = f":no_entry: *{model}* version {version} failed verification in {route}"
        return "\n".join([head, *(f"• {r}" for r in self.reasons)])


def decide(
    *,
    golden: GoldenCheck,
    data_check: Mapping[str, Any] | None,
    shadow: ShadowEvidence | None,
    batch_note: str | None = None,
) -> DeployDecision:
    """Pass only when the golden request matches, the target's latest batch passes its data
    check and the shadow score of that batch does not block (`ShadowEvidence.blocking`).
    Without a scored batch in the target (`data_check` and `shadow` None), the golden request
    alone decides and `batch_note` says why.
    """
    blocking: list[str] = []
    passing: list[str] = []
    (passing if golden.passed else blocking).append(golden.reason)
    if data_check is not None:
        line = f"data check of the target's latest batch: {data_check['summary']}"
        (passing if data_check["success"] else blocking).append(line)
    if shadow is not None:
        (passing if shadow.passed else blocking).extend(
            [f"vs the target's champion, {r}" for r in shadow.reasons()]
        )
    if data_check is None and shadow is None and batch_note:
        passing.append(batch_note)
    promote = not blocking
    evidence = {
        "golden": golden.to_dict(),
        "data_check": None if data_check is None else dict(data_check),
        "shadow": None if shadow is None else shadow.to_dict(),
        "batch": batch_note,
    }
    return DeployDecision(promote, passing if promote else blocking, evidence)
