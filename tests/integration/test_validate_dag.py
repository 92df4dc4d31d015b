"""The promotion gate on a real Airflow and a real MLflow server.

Order matters and is spelled out: the first training run's candidate is promoted by the
Asset-triggered validate run; a weaker challenger is rejected; rollback moves the champion; a
better challenger beats a weak champion; racing validations leave one consistent champion;
corrupted training batches never get past the data gate. Then human review (churn_reviewed):
the trainer's own Approve is a rejection, a review nobody answers is rejected at its timeout,
a reviewer's Reject and Approve decide.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient

from airmlops_core.io import data
from airmlops_core.tracking import registry
from airmlops_dev import demo_data
from airmlops_dev.webhook_receiver import read_messages
from hitl import wait_for_task_state, wait_until_parked
from score_helpers import mlflow_sklearn_load
from stack_models import register_challenger

pytestmark = pytest.mark.integration

MODEL = "customer_churn"


def aliases(client: MlflowClient) -> tuple[str | None, str | None, str | None]:
    return tuple(
        registry.alias_version(client, MODEL, a)  # type: ignore[return-value]
        for a in (registry.CHAMPION, registry.PREVIOUS_CHAMPION, registry.CHALLENGER)
    )


def card_markdown(client: MlflowClient, version: str, tmp_path: Any) -> str:
    """The version's model card (Markdown), found through its `airmlops.model_card` tag."""
    import mlflow

    uri = client.get_model_version(MODEL, version).tags["airmlops.model_card"]
    assert uri.startswith("runs:/"), uri
    assert uri.endswith("/model_card/model_card.html"), uri
    md = uri.removesuffix(".html") + ".md"
    local = mlflow.artifacts.download_artifacts(
        md, dst_path=str(tmp_path), tracking_uri=client.tracking_uri
    )
    with open(local, encoding="utf-8") as f:
        return f.read()


def validate(api: Any, model: str = MODEL) -> tuple[str, dict[str, str]]:
    dag_id = f"{model}__validate"
    run_id = api.trigger(dag_id)
    state = api.wait(dag_id, run_id, timeout=600)
    tis = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}
    return state, tis


@pytest.fixture(scope="module")
def first_champion(stack: Any, airflow_api: Any) -> dict:
    """Train through Airflow; the candidate Asset triggers validate; no champion: promoted."""
    demo_data.write_all(stack.home / "data")
    for dag_id in (f"{MODEL}__train", f"{MODEL}__validate"):
        airflow_api.wait_for_dag(dag_id, timeout=180)
    known = {r["dag_run_id"] for r in airflow_api.dag_runs(f"{MODEL}__validate")}
    train_runs = airflow_api.dag_runs(f"{MODEL}__train", states=["success"])
    if not train_runs:  # test_train_dag may have trained already in this session
        run_id = airflow_api.trigger(f"{MODEL}__train")
        assert airflow_api.wait(f"{MODEL}__train", run_id, timeout=600) == "success"
    if not known:
        val_run = airflow_api.wait_for_new_run(f"{MODEL}__validate", known)
    else:
        val_run = sorted(known)[0]
    state = airflow_api.wait(f"{MODEL}__validate", val_run, timeout=600)
    return {"run_id": val_run, "state": state}


def test_first_candidate_is_promoted_by_the_asset_triggered_gate(
    first_champion, stack, airflow_api, tmp_path
) -> None:
    assert first_champion["state"] == "success"
    tis = {
        t["task_id"]: t["state"]
        for t in airflow_api.task_instances(f"{MODEL}__validate", first_champion["run_id"])
    }
    assert tis["promote"] == "success"
    assert tis["reject"] == "skipped"
    client = MlflowClient(stack.mlflow_url)
    champion, previous, challenger = aliases(client)
    assert champion == challenger
    assert previous is None
    tags = client.get_model_version(MODEL, champion).tags
    assert tags["gate.decision"] == "promote"
    assert tags["airmlops.approved_by"] == "gate (automatic)"
    assert json.loads(tags["gate.fairness"])  # sensitive features: female, senior_citizen
    card = card_markdown(client, champion, tmp_path)
    assert "**Decision: PROMOTED to champion, approved by gate (automatic)**" in card
    assert "Rank existing telco customers" in card  # the demo spec's card section
    assert "Challenger by `female`" in card
    text = json.dumps(read_messages(stack.messages_file))
    assert f"{MODEL}__validate" in text


def test_weaker_challenger_is_rejected_and_champion_kept(
    first_champion, stack, airflow_api, tmp_path
) -> None:
    client = MlflowClient(stack.mlflow_url)
    champion_before = aliases(client)[0]
    # same features, heavily regularised: roc_auc ~0.830 vs ~0.845 on the same holdout
    weak = register_challenger(stack, "manual__weak", {"params": {"C": 0.0001, "max_iter": 1000}})
    state, tis = validate(airflow_api)
    assert state == "success"
    assert tis["reject"] == "success"
    assert tis["promote"] == "skipped"
    assert aliases(client)[0] == champion_before
    reasons = json.loads(client.get_model_version(MODEL, weak).tags["rejected"])
    assert any("roc_auc" in r for r in reasons), reasons
    card = card_markdown(client, weak, tmp_path)
    assert f"**Decision: REJECTED: version {champion_before} stays champion**" in card


def test_rollback_then_better_challenger_promoted(first_champion, stack, airflow_api) -> None:
    client = MlflowClient(stack.mlflow_url)
    champion, _, weak = aliases(client)
    run_id = airflow_api.trigger(
        f"{MODEL}__rollback", conf={"target": weak, "reason": "test: roll back to weak"}
    )
    assert airflow_api.wait(f"{MODEL}__rollback", run_id, timeout=300) == "success"
    assert aliases(client)[:2] == (weak, champion)
    tags = client.get_model_version(MODEL, weak).tags
    assert tags["airmlops.rollback_reason"] == "test: roll back to weak"
    better = register_challenger(stack, "manual__better", {})
    state, tis = validate(airflow_api)
    assert state == "success", tis
    assert tis["promote"] == "success", tis
    assert aliases(client)[:2] == (better, weak)
    evidence = json.loads(client.get_model_version(MODEL, better).tags["gate.comparison"])
    assert evidence["interval"]["low"] > 0, evidence


def test_racing_validations_leave_one_consistent_champion(
    first_champion, stack, airflow_api
) -> None:
    client = MlflowClient(stack.mlflow_url)
    register_challenger(stack, "manual__race", {"params": {"max_iter": 1000, "C": 0.5}})
    dag_id = f"{MODEL}__validate"
    runs = [airflow_api.trigger(dag_id) for _ in range(2)]
    states = [airflow_api.wait(dag_id, r, timeout=900) for r in runs]
    assert "success" in states
    champion, previous, _ = aliases(client)
    assert champion is not None
    assert previous is not None
    assert champion != previous
    import mlflow

    mlflow.set_tracking_uri(stack.mlflow_url)
    mlflow_sklearn_load(f"models:/{MODEL}@champion")  # the artifact loads


CORRUPTIONS = [
    "nulls",
    "dropped_column",
    "out_of_range",
    "new_category",
    "wrong_dtype",
    "empty_file",
]
TALLY: dict[str, str] = {}


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Outcome per corrupted batch, printed after the module (shown without -s too)."""
    yield TALLY
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter and TALLY:
        reporter.write_line("")
        reporter.write_line(
            f"corrupted training batches through the train DAG: "
            f"{sum(v.startswith('rejected') for v in TALLY.values())}/"
            f"{len(TALLY)} rejected, 0 promoted expected"
        )
        for corruption, outcome in TALLY.items():
            reporter.write_line(f"  {corruption:<16} {outcome}")


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupted_training_batch_never_becomes_champion(
    first_champion, stack, airflow_api, tally, corruption: str
) -> None:
    client = MlflowClient(stack.mlflow_url)
    before = aliases(client)
    path = stack.home / "data" / "demo" / "churn.parquet"
    original = path.read_bytes()
    df = demo_data.churn()
    if corruption == "nulls":
        df.loc[df.index[:500], "tenure"] = None
    elif corruption == "dropped_column":
        df = df.drop(columns=["contract"])
    elif corruption == "out_of_range":
        df.loc[df.index[:50], "monthly_charges"] = 1e6
    elif corruption == "new_category":
        df.loc[df.index[:200], "contract"] = "Lifetime"
    elif corruption == "wrong_dtype":
        df["tenure"] = df["tenure"].astype("str")
    elif corruption == "empty_file":
        df = df.head(0)
    try:
        data.write_frame(df, str(path))
        dag_id = f"{MODEL}__train"
        run_id = airflow_api.trigger(dag_id)
        assert airflow_api.wait(dag_id, run_id, timeout=300) == "failed"
        tis = {t["task_id"]: t["state"] for t in airflow_api.task_instances(dag_id, run_id)}
        failed_at = "extract" if corruption in ("dropped_column", "empty_file") else "check_data"
        assert tis[failed_at] == "failed", tis
        assert tis["register"] != "success"
    finally:
        path.write_bytes(original)
    assert aliases(client) == before
    alerts = [m for m in read_messages(stack.messages_file) if run_id in json.dumps(m)]
    assert alerts, f"no alert names {run_id}"
    assert "failed" in json.dumps(alerts), alerts
    tally[corruption] = f"rejected at {failed_at}, {len(alerts)} alert(s), champion unchanged"


REVIEWED = "churn_reviewed"
APPROVAL_TIMEOUT_HOURS = 0.03  # conftest.reviewed(): 108 s, so that the timeout is tested too


def awaiting_review(stack: Any, api: Any, run_id: str) -> None:
    """Wait until the run's approval task waits for an answer that is safe to give."""
    dag_id = f"{REVIEWED}__validate"
    wait_for_task_state(api, dag_id, run_id, "approve", "awaiting_input")
    wait_until_parked(stack, dag_id, run_id, "approve")


def review(stack: Any, api: Any, answer: str | None) -> tuple[str, str, dict[str, str]]:
    """Run the reviewed model's validate DAG and answer its approval task (None: never)."""
    dag_id = f"{REVIEWED}__validate"
    api.wait_for_dag(dag_id, timeout=180)
    run_id = api.trigger(dag_id)
    awaiting_review(stack, api, run_id)
    if answer is not None:
        api.respond(dag_id, run_id, "approve", [answer])
    state = api.wait(dag_id, run_id, timeout=600)
    return run_id, state, {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}


def rejected_reasons(client: MlflowClient, version: str) -> list[str]:
    return json.loads(client.get_model_version(REVIEWED, version).tags["rejected"])


def test_the_trainer_cannot_approve_their_own_version(stack, airflow_api) -> None:
    """Trained through Airflow by this user, then approved by the same user: a rejection."""
    demo_data.write_all(stack.home / "data")
    client = MlflowClient(stack.mlflow_url)
    train, validate_dag = f"{REVIEWED}__train", f"{REVIEWED}__validate"
    for dag_id in (train, validate_dag):
        airflow_api.wait_for_dag(dag_id, timeout=180)
    known = {r["dag_run_id"] for r in airflow_api.dag_runs(validate_dag)}
    train_run = airflow_api.trigger(train)
    assert airflow_api.wait(train, train_run, timeout=600) == "success"
    [registered] = client.search_model_versions(
        f"name = '{REVIEWED}' and tags.`airmlops.run_id` = '{train_run}'"
    )
    version = str(registered.version)
    user = airflow_api.username
    assert registered.tags["airmlops.triggered_by"] == user
    run_id = airflow_api.wait_for_new_run(validate_dag, known)  # the candidate Asset's run
    awaiting_review(stack, airflow_api, run_id)
    airflow_api.respond(validate_dag, run_id, "approve", ["Approve"])
    assert airflow_api.wait(validate_dag, run_id, timeout=600) == "success"
    tis = {t["task_id"]: t["state"] for t in airflow_api.task_instances(validate_dag, run_id)}
    assert (tis["approve"], tis["promote"], tis["reject"]) == ("success", "skipped", "success")
    assert registry.alias_version(client, REVIEWED, registry.CHAMPION) is None
    reasons = rejected_reasons(client, version)
    assert (
        f"self-approval refused: {user} started the training run of this version; "
        "another reviewer must approve it"
    ) in reasons, reasons


def test_an_unanswered_review_is_rejected_after_the_timeout(stack, airflow_api) -> None:
    """Nobody answers: Airflow applies the default (Reject) after approval_timeout_hours."""
    client = MlflowClient(stack.mlflow_url)
    version = register_challenger(stack, "manual__review_timeout", {}, model=REVIEWED)
    started = time.monotonic()
    _, state, tis = review(stack, airflow_api, None)
    assert state == "success", tis
    assert (tis["approve"], tis["promote"], tis["reject"]) == ("success", "skipped", "success")
    assert time.monotonic() - started >= APPROVAL_TIMEOUT_HOURS * 3600
    assert registry.alias_version(client, REVIEWED, registry.CHAMPION) is None
    assert (
        f"no answer within {APPROVAL_TIMEOUT_HOURS:g} h (promotion.approval_timeout_hours): "
        "rejected by timeout"
    ) in rejected_reasons(client, version)


def test_human_review_rejects_then_approves(stack, airflow_api) -> None:
    demo_data.write_all(stack.home / "data")
    client = MlflowClient(stack.mlflow_url)
    first = register_challenger(stack, "manual__review1", {}, model=REVIEWED)
    _, state, tis = review(stack, airflow_api, "Reject")
    assert state == "success", tis
    assert (tis["approve"], tis["promote"], tis["reject"]) == ("success", "skipped", "success")
    assert registry.alias_version(client, REVIEWED, registry.CHAMPION) is None
    user = airflow_api.username
    assert f"rejected in human review by {user}" in rejected_reasons(client, first)

    second = register_challenger(stack, "manual__review2", {}, model=REVIEWED)
    _, state, tis = review(stack, airflow_api, "Approve")
    assert state == "success", tis
    assert (tis["promote"], tis["reject"]) == ("success", "skipped"), tis
    assert registry.alias_version(client, REVIEWED, registry.CHAMPION) == second
    tags = client.get_model_version(REVIEWED, second).tags
    assert tags["airmlops.approved_by"] == f"{user} (human approval)"
    assert "rejected" in client.get_model_version(REVIEWED, first).tags
