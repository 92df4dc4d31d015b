"""The human review of a promotion: who may answer, and what an answer decides.

Pure functions of the answer (Airflow's human-in-the-loop response), the spec's reviewers and
the user who started the challenger's training run, so the rules are tested without Airflow:
no answer within `promotion.approval_timeout_hours` is a rejection, and the trainer of a version
cannot approve it (not offered the task when reviewers are listed; a self-approval is a
rejection otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

APPROVE = "Approve"
REJECT = "Reject"


class Review(TypedDict):
    """What a review decided, who answered (or "nobody") and, when rejected, why."""

    approved: bool
    reviewer: str
    reason: str | None


def user_label(user: Mapping[str, Any] | None) -> str:
    """A responding user's name (else id), or "nobody" for no user."""
    if not user:
        return "nobody"
    return str(user.get("name") or user.get("id") or "nobody")


def eligible_reviewers(reviewers: Sequence[str], trainer: str | None) -> list[str]:
    """The listed reviewers who may answer: everyone listed except the version's trainer."""
    return [r for r in reviewers if r != trainer]


def no_reviewer_left(reviewers: Sequence[str], trainer: str | None) -> Review | None:
    """A rejection when reviewers are listed and the trainer is the only one, else None."""
    if reviewers and not eligible_reviewers(reviewers, trainer):
        return {
            "approved": False,
            "reviewer": "nobody",
            "reason": (
                f"no reviewer other than the trainer {trainer} is listed in promotion.reviewers: "
                "a version cannot be approved by the user who trained it"
            ),
        }
    return None


def decide(
    chosen: Sequence[str],
    responder: Mapping[str, Any] | None,
    *,
    trainer: str | None,
    timed_out: bool,
    timeout_hours: float,
) -> Review:
    """What a review answer decides.

    Args:
        chosen: the options chosen (["Approve"] or ["Reject"]); on a timeout, the defaults.
        responder: the responding user ({"id", "name"}), None when nobody answered.
        trainer: the user who started the challenger's training run, None for the schedule or
            an Asset event.
        timed_out: nobody answered in time (Airflow applied the default, Reject).
        timeout_hours: promotion.approval_timeout_hours, named in the reason.

    Returns:
        Approved only for an Approve by someone other than the trainer; a timeout or a
        self-approval is a rejection that says why.
    """
    who = user_label(responder)
    if timed_out or not responder:
        return {
            "approved": False,
            "reviewer": "nobody",
            "reason": (
                f"no answer within {timeout_hours:g} h (promotion.approval_timeout_hours): "
                "rejected by timeout"
            ),
        }
    if list(chosen) != [APPROVE]:
        return {"approved": False, "reviewer": who, "reason": f"rejected in human review by {who}"}
    if trainer and trainer in {str(responder.get("id")), str(responder.get("name"))}:
        return {
            "approved": False,
            "reviewer": who,
            "reason": (
                f"self-approval refused: {who} started the training run of this version; "
                "another reviewer must approve it"
            ),
        }
    return {"approved": True, "reviewer": who, "reason": None}
