"""The rules of a promotion review: a timeout rejects, the trainer cannot approve."""

from __future__ import annotations

import pytest

from airmlops_core.validate import review

ANN = {"id": "ann", "name": "ann"}
BO = {"id": "7", "name": "bo"}


def test_an_approve_by_another_user_approves() -> None:
    assert review.decide(["Approve"], BO, trainer="ann", timed_out=False, timeout_hours=72) == {
        "approved": True,
        "reviewer": "bo",
        "reason": None,
    }


def test_a_reject_names_the_reviewer() -> None:
    got = review.decide(["Reject"], BO, trainer=None, timed_out=False, timeout_hours=72)
    assert got == {"approved": False, "reviewer": "bo", "reason": "rejected in human review by bo"}


@pytest.mark.parametrize(
    "responder", [ANN, {"id": "ann", "name": "Ann A."}, {"id": 3, "name": "ann"}]
)
def test_the_trainer_approving_their_own_version_is_a_rejection(responder: dict) -> None:
    got = review.decide(["Approve"], responder, trainer="ann", timed_out=False, timeout_hours=72)
    assert not got["approved"]
    assert got["reason"] is not None
    assert got["reason"].startswith("self-approval refused: ")
    assert "started the training run of this version" in got["reason"]


def test_no_answer_in_time_is_a_rejection_that_says_so() -> None:
    # what Airflow's timeout sweep resumes the task with: the default, by nobody
    got = review.decide(["Reject"], None, trainer="ann", timed_out=True, timeout_hours=0.5)
    assert got == {
        "approved": False,
        "reviewer": "nobody",
        "reason": "no answer within 0.5 h (promotion.approval_timeout_hours): rejected by timeout",
    }


def test_a_version_a_schedule_trained_may_be_approved_by_anyone() -> None:
    assert review.decide(["Approve"], ANN, trainer=None, timed_out=False, timeout_hours=72)[
        "approved"
    ]


def test_the_trainer_is_never_an_eligible_reviewer() -> None:
    assert review.eligible_reviewers(["ann", "bo"], "ann") == ["bo"]
    assert review.eligible_reviewers(["ann", "bo"], None) == ["ann", "bo"]
    assert review.no_reviewer_left(["ann", "bo"], "ann") is None
    assert review.no_reviewer_left([], "ann") is None  # nobody listed: any user, checked later
    alone = review.no_reviewer_left(["ann"], "ann")
    assert alone is not None
    assert not alone["approved"]
    assert alone["reason"] == (
        "no reviewer other than the trainer ann is listed in promotion.reviewers: "
        "a version cannot be approved by the user who trained it"
    )
