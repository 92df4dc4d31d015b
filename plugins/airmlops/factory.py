"""The DAG factory: every model spec in include/models becomes its pipelines' DAGs.

Parse-time cost is reading small YAML files and building DAG objects; nothing heavy is
imported here (see tests/dags/test_dag_integrity.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param

from airmlops import assets, notify
from airmlops.operators.checks import CheckTrainingDataOperator
from airmlops.operators.score import (
    ListPartitionsOperator,
    PublishScoresOperator,
    ResolveChampionOperator,
    ScorePartitionOperator,
    ShadowHandoffOperator,
)
from airmlops.operators.train import (
    EvaluateModelOperator,
    ExtractRetrainingDataOperator,
    ExtractTrainingDataOperator,
    RecordRetrainOperator,
    RegisterModelOperator,
    TrainModelOperator,
)
from airmlops.operators.validate import (
    CheckHoldoutOperator,
    GateOperator,
    PromoteOperator,
    RejectOperator,
    ResolveCandidateOperator,
    RollbackOperator,
)
from airmlops_core import settings
from airmlops_core.errors import SpecError
from airmlops_core.spec import ModelSpec, load_specs
from airmlops_core.spec_alerts import DeadlinePipeline

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from airflow.sdk.definitions.deadline import DeadlineAlert

START_DATE = datetime(2024, 1, 1)
RETRIES = 2
RETRY_DELAY = timedelta(seconds=20)


def default_args(spec: ModelSpec) -> dict[str, object]:
    """Arguments every task of a model's DAGs shares: owner, retries, failure alert."""
    return {
        "owner": spec.owner,
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "on_failure_callback": [notify.failure_notifier(spec.alerts.conn_id)],
    }


def deadline(spec: ModelSpec, pipeline: str) -> DeadlineAlert | None:
    """The pipeline's deadline alert from `alerts.deadlines`, or None (none set, or a pipeline
    such as rollback that takes no deadline)."""
    minutes = next((m for name, m in spec.alerts.deadlines.items() if name == pipeline), None)
    if minutes is None:
        return None
    return notify.deadline_alert(f"{spec.name}__{pipeline}", minutes, spec.alerts.conn_id)


def dag_tags(spec: ModelSpec, pipeline: str) -> list[str]:
    return ["airmlops", f"model:{spec.name}", pipeline, *spec.tags]


def model_dag(spec: ModelSpec, pipeline: str, *, schedule: Any, **kwargs: Any) -> DAG:
    """`<model>__<pipeline>` with what every model DAG shares: start date, no catch-up, one run
    at a time (per DAG: champion moves across DAGs are serialised by the champion lease, see
    airmlops_core.tracking.locks), tags, default args and the deadline alert."""
    return DAG(
        dag_id=f"{spec.name}__{pipeline}",
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=dag_tags(spec, pipeline),
        default_args=default_args(spec),
        deadline=deadline(spec, pipeline),
        **kwargs,
    )


def train_dag(spec: ModelSpec, *, retrain: bool = False) -> DAG:
    """`<model>__train`: extract -> check -> train -> evaluate -> register (alias challenger).

    With `retrain`, `<model>__retrain`: the same path on a window rebuilt with the latest
    labelled production data, run by the drift Asset (and `schedules.retrain`).
    """
    pipeline: DeadlinePipeline = "retrain" if retrain else "train"
    with model_dag(
        spec,
        pipeline,
        description=(
            f"Retrain {spec.name} on recent labelled data"
            if retrain
            else f"Train {spec.name}: {spec.description}".strip(": ")
        ),
        doc_md=(RETRAIN_DOC if retrain else TRAIN_DOC).format(
            name=spec.name, estimator=spec.estimator.class_path
        ),
        schedule=(
            asset_or_cron(assets.drifted(spec.name), spec.schedules.retrain)
            if retrain
            else spec.schedules.train
        ),
    ) as dag:
        common = {"model_name": spec.name}
        extract = (ExtractRetrainingDataOperator if retrain else ExtractTrainingDataOperator)(
            task_id="extract", **common
        )
        check = CheckTrainingDataOperator(task_id="check_data", refs=extract.output, **common)
        train = TrainModelOperator(
            task_id="train", refs=extract.output, pool="ml_training", **common
        )
        check >> train
        evaluate = EvaluateModelOperator(
            task_id="evaluate", refs=extract.output, trained=train.output, **common
        )
        register = RegisterModelOperator(
            task_id="register",
            refs=extract.output,
            trained=train.output,
            evaluated=evaluate.output,
            outlets=[assets.candidate(spec.name)],
            on_success_callback=[notify.success_notifier(spec.alerts.conn_id)],
            **common,
        )
        if retrain:  # the cool-down starts once the retrain has succeeded, not before
            RecordRetrainOperator(
                task_id="record_retrain",
                refs=extract.output,
                registered=register.output,
                **common,
            )
    return dag


RETRAIN_DOC = """### Retrain `{name}`
Runs when drift or decay crosses the spec's retrain rule (Asset `model/{name}/drift`), on
`schedules.retrain`, or by hand. Automatic runs wait `retrain.cooldown_hours` after the last
successful retrain (recorded by `record_retrain`, the last task); a manual run always runs.
Rebuilds the training window (the spec's source plus every scored row whose label has
landed; `retrain.window` expanding or sliding), then the same path as the train DAG: check,
fit `{estimator}`, evaluate, register a `challenger` and emit `model/{name}/candidate` for the
validate gate. The reason it ran is logged on the MLflow run (`airmlops.retrain_reason`).
"""


TRAIN_DOC = """### Train `{name}`
Extracts the spec's training window, checks it against the expectation suite (fails closed and
quarantines a bad batch), freezes a train/holdout split, fits `{estimator}` in a
scikit-learn Pipeline, evaluates it on the holdout and registers a new MLflow model version
with alias `challenger`, then emits the `model/{name}/candidate` Asset.
Spec: `include/models/{name}.yaml`.
"""


def validate_dag(spec: ModelSpec) -> DAG:
    """`<model>__validate`: on each candidate, gate the challenger and promote or reject it."""
    with model_dag(
        spec,
        "validate",
        description=f"Promotion gate of {spec.name}",
        doc_md=VALIDATE_DOC.format(
            name=spec.name, metric=spec.gate_metric, margin=spec.promotion.margin
        ),
        schedule=[assets.candidate(spec.name)],
    ) as dag:
        common = {"model_name": spec.name}
        resolve = ResolveCandidateOperator(task_id="resolve", **common)
        check = CheckHoldoutOperator(task_id="check_holdout", resolved=resolve.output, **common)
        gate = GateOperator(task_id="gate", resolved=resolve.output, checked=check.output, **common)
        approval = None
        if spec.promotion.human_approval:
            from airmlops.operators.approval import PromotionApprovalOperator

            approve = PromotionApprovalOperator(
                task_id="approve",
                subject=f"Promote {spec.name}?",
                gated=gate.output,
                resolved=resolve.output,
                timeout_hours=spec.promotion.approval_timeout_hours,
                reviewers=spec.promotion.reviewers,
                body="{{ ti.xcom_pull(task_ids='gate')['message'] }}",
                retries=0,
            )
            gate >> approve
            approval = approve.output
        notify_done = [notify.success_notifier(spec.alerts.conn_id)]
        promote = PromoteOperator(
            task_id="promote",
            gated=gate.output,
            approval=approval,
            outlets=[assets.champion(spec.name)],
            on_success_callback=notify_done,
            **common,
        )
        # reject runs after promote: it also tags a challenger a reviewer turned down
        reject = RejectOperator(
            task_id="reject",
            gated=gate.output,
            approval_task_id="approve" if approval is not None else None,
            trigger_rule="none_failed",
            on_success_callback=notify_done,
            **common,
        )
        gate >> promote >> reject
    return dag


VALIDATE_DOC = """### Validate `{name}`
Runs on every new candidate (Asset `model/{name}/candidate`) or by hand. Checks the holdout with
the expectation suite, applies the metric floors (per segment too), compares the challenger with
the champion on the same frozen holdout ({metric}, paired bootstrap interval; the lower bound
must clear {margin}), checks fairness gaps, then moves `champion` (compare-and-set under the
model's champion lease, evidence as version tags, emits `model/{name}/champion`) or tags the
challenger `rejected`. With `promotion.human_approval`, `approve` waits for a reviewer (Reject
when nobody answers within `promotion.approval_timeout_hours`; the user who trained the version
cannot approve it). With `promotion.shadow_runs`, a challenger that passes first gets the alias
`shadow` and waits for that many score runs; the score DAG then emits the candidate again and the
gate decides with their production evidence (agreement with the champion, prediction drift,
the paired comparison on labelled rows).
"""


def rollback_dag(spec: ModelSpec) -> DAG:
    """`<model>__rollback`: a manual form that re-points `champion` and records why."""
    with model_dag(
        spec,
        "rollback",
        description=f"Roll back the champion of {spec.name}",
        doc_md=f"### Roll back `{spec.name}`\nRe-points `champion` at a chosen version or at "
        "`previous_champion`, records who and why as version tags, and notifies.",
        schedule=None,
        params={
            "target": Param(
                "previous_champion",
                type="string",
                description="A version number, or previous_champion",
            ),
            "reason": Param(
                "", type="string", minLength=3, description="Why (recorded on the version)"
            ),
        },
    ) as dag:
        RollbackOperator(
            task_id="rollback",
            model_name=spec.name,
            target="{{ params.target }}",
            reason="{{ params.reason }}",
            outlets=[assets.champion(spec.name)],
            on_success_callback=[notify.success_notifier(spec.alerts.conn_id)],
        )
    return dag


def deploy_dag(spec: ModelSpec) -> DAG:
    """`<model>__deploy`: the source environment's version into this environment's registry,
    verified, approved, then champion (docs/environments.md)."""
    from airmlops.operators.deploy import (
        DeployApprovalOperator,
        DeployPromoteOperator,
        DeployRejectOperator,
        ResolveDeployOperator,
        TransferOperator,
        VerifyDeployOperator,
    )

    with model_dag(
        spec,
        "deploy",
        description=f"Deploy {spec.name} from the source environment's registry",
        doc_md=DEPLOY_DOC.format(name=spec.name),
        schedule=None,
        params={
            "source_version": Param(
                "champion",
                type="string",
                title="Source version",
                description="champion (the source environment's champion) or a version number",
            ),
            "target_environment": Param(
                "",
                type="string",
                title="Target environment",
                description="Empty: this deployment's own (AIRMLOPS_ENVIRONMENT)",
            ),
            "requested_by": Param(
                "",
                type="string",
                title="Requested by",
                description="Who asks (empty: the user who triggers); may not approve it",
            ),
        },
    ) as dag:
        # a refusal (DeployRefused, UnsafeModel) fails at once: retries only help a server down
        common = {"model_name": spec.name}
        resolve = ResolveDeployOperator(
            task_id="resolve",
            source_version="{{ params.source_version }}",
            target_environment="{{ params.target_environment }}",
            requested_by="{{ params.requested_by }}",
            **common,
        )
        transfer = TransferOperator(task_id="transfer", resolved=resolve.output, **common)
        verify = VerifyDeployOperator(
            task_id="verify", resolved=resolve.output, pushed=transfer.output, **common
        )
        approve = DeployApprovalOperator(
            task_id="approve",
            subject=f"Deploy {spec.name}?",
            gated=verify.output,
            resolved=verify.output,
            timeout_hours=24,
            body="{{ ti.xcom_pull(task_ids='verify')['message'] }}",
        )
        notify_done = [notify.success_notifier(spec.alerts.conn_id)]
        promote = DeployPromoteOperator(
            task_id="promote",
            verified=verify.output,
            approval=approve.output,
            outlets=[assets.champion(spec.name)],
            on_success_callback=notify_done,
            **common,
        )
        reject = DeployRejectOperator(
            task_id="reject",
            verified=verify.output,
            approval_task_id="approve",
            trigger_rule="none_failed",
            on_success_callback=notify_done,
            **common,
        )
        verify >> approve >> promote >> reject
    return dag


DEPLOY_DOC = """### Deploy `{name}` from the source environment
Manual (form) or through the REST API (`python -m airmlops_dev.deploy_trigger`, the release
workflow). `resolve` pins the source environment's champion (or `source_version`) in its
registry and refuses a version that did not pass its gate there; `transfer` downloads it,
checks its digest against the one recorded at registration and the model-safety check, then
registers it here with provenance tags (no alias); `verify` runs the golden request and, when
this environment has scored a batch, its data check and a shadow score next to the champion;
`approve` asks the environment's reviewers (see the environments file); `promote` moves
`champion` under the champion lease, `reject` tags the version `rejected`. Roll back with
`{name}__rollback`. See docs/environments.md.
"""


def asset_or_cron(asset: Asset, cron: str | None) -> list[Asset] | AssetOrTimeSchedule:
    """Run on each event of `asset`, and also on `cron` (UTC) when one is given."""
    if not cron:
        return [asset]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[asset])


def score_dag(spec: ModelSpec) -> DAG:
    """`<model>__score`: champion pinned -> one mapped task per partition -> manifest."""
    with model_dag(
        spec,
        "score",
        description=f"Bulk scoring of {spec.name} with its champion",
        doc_md=SCORE_DOC.format(name=spec.name),
        schedule=asset_or_cron(assets.landing(spec.name), spec.schedules.score),
        params={
            "input": Param(
                "",
                type="string",
                title="Input location",
                description="A file, directory, glob or s3:// prefix; empty "
                "means the spec's scoring.input",
            )
        },
    ) as dag:
        common = {"model_name": spec.name}
        resolve = ResolveChampionOperator(task_id="resolve_champion", **common)
        partitions = ListPartitionsOperator(
            task_id="partitions", input_uri="{{ params.input }}", **common
        )
        scored = ScorePartitionOperator.partial(
            task_id="score",
            resolved=resolve.output,
            pool="ml_scoring",
            **common,
        ).expand(partition=partitions.output)
        publish = PublishScoresOperator(
            task_id="publish",
            resolved=resolve.output,
            results=scored.output,
            outlets=[assets.scored(spec.name)],
            on_success_callback=[notify.success_notifier(spec.alerts.conn_id)],
            **common,
        )
        if spec.promotion.shadow_runs:  # a challenger waiting in the shadow goes back to the gate
            ShadowHandoffOperator(
                task_id="shadow_handoff",
                published=publish.output,
                outlets=[assets.candidate(spec.name)],
                **common,
            )
    return dag


SCORE_DOC = """### Score `{name}`
Runs when a batch lands (Asset `model/{name}/landing`), on the spec's `schedules.score`, or by
hand (param `input`). Pins the champion's version, then one mapped task per partition checks it
with the batch expectation suite and streams it through the model into
`scored/{name}/<date>/<partition>.parquet` (atomic, byte-identical on a re-run), or quarantines
it. `publish` writes the manifest and the MLflow lineage run, emits `model/{name}/scored`, and
fails (with an alert) when a partition was quarantined. With `promotion.shadow_runs`, a
challenger waiting at the gate (alias `shadow`) scores every partition too, into
`scored/_shadow/v<version>/` (never the production files or sink); `shadow_handoff` emits
`model/{name}/candidate` once it has completed the shadow runs the gate asked for.
"""


def drift_dag(spec: ModelSpec) -> DAG:
    """`<model>__drift`: after each scoring run (Asset) or on cron: drift -> alert -> signal."""
    from airmlops.operators.monitor import (
        DriftAlertOperator,
        DriftCheckOperator,
        SignalRetrainOperator,
    )

    with model_dag(
        spec,
        "drift",
        description=f"Drift and decay of {spec.name}'s champion",
        doc_md=DRIFT_DOC.format(name=spec.name),
        schedule=asset_or_cron(assets.scored(spec.name), spec.schedules.drift),
    ) as dag:
        common = {"model_name": spec.name}
        check = DriftCheckOperator(task_id="check", **common)
        DriftAlertOperator(task_id="alert", checked=check.output, **common)
        SignalRetrainOperator(
            task_id="signal_retrain",
            checked=check.output,
            outlets=[assets.drifted(spec.name)],
            **common,
        )
    return dag


DRIFT_DOC = """### Drift `{name}`
After each scoring run (Asset `model/{name}/scored`) or on `schedules.drift`: compares the last
scored window with the champion's reference profile (KS + Wasserstein/PSI per numeric column,
chi-square homogeneity + JS/PSI per categorical one, Benjamini-Hochberg across columns, effect
minimums), checks label and performance drift where labels landed, logs metrics, an offline
HTML report and plots to an MLflow monitoring run, sends at most one alert, and emits
`model/{name}/drift` when the retrain rule holds.
"""


def onboard_dag(spec: ModelSpec) -> DAG:
    """`<model>__onboard`: a manual form that onboards a model built elsewhere as champion."""
    from airmlops.operators.onboard import OnboardModelOperator

    assert spec.external is not None
    with model_dag(
        spec,
        "onboard",
        description=f"Onboard a build of {spec.name} made elsewhere ({spec.external.origin})",
        doc_md=ONBOARD_DOC.format(name=spec.name, origin=spec.external.origin),
        schedule=None,
        params={
            "model_uri": Param(
                "",
                type="string",
                title="MLflow model URI",
                description="runs:/..., models:/<name>/<version>, or an MLflow "
                "model directory (any flavor without pickle)",
            ),
            "model_file": Param(
                "",
                type="string",
                title="skops model file",
                description="A scikit-learn model saved with skops "
                "(.skops) on the worker; relative paths are under "
                "the data directory",
            ),
        },
    ) as dag:
        OnboardModelOperator(
            task_id="onboard",
            model_name=spec.name,
            model_uri="{{ params.model_uri }}",
            model_file="{{ params.model_file }}",
            outlets=[assets.champion(spec.name)],
            on_success_callback=[notify.success_notifier(spec.alerts.conn_id)],
        )
    return dag


ONBOARD_DOC = """### Onboard `{name}` (built elsewhere: {origin})
Manual only. Give either `model_uri` (an MLflow model of any flavor that loads without pickle)
or `model_file` (a scikit-learn model saved with skops). The model is checked on the spec's
reference dataset exactly as the score DAG will run it, then logged with the reference profile
and metrics, registered with `airmlops.origin: external`, and made `champion` (no promotion
gate: monitoring only). Pickle and joblib files, untrusted skops types and flavors that unpickle
or run the model's own code are refused, and nothing is registered. See
docs/external-models.md.
"""


HEALTH_DAG_ID = "airmlops_health"


def health_dag(specs: list[ModelSpec]) -> DAG:
    """`airmlops_health`: every 5 minutes, probe the model API (golden request per model) and
    MLflow; one alert when something goes down, one when it recovers."""
    from airmlops.operators.health import HealthProbeOperator

    conn_id = specs[0].alerts.conn_id if specs else "slack_alerts"
    with DAG(
        dag_id=HEALTH_DAG_ID,
        description="Outage probe of the model API and the MLflow server",
        schedule="*/5 * * * *",
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["airmlops", "health"],
        doc_md=HEALTH_DOC,
        default_args={
            "owner": "mlops",
            "retries": 1,
            "retry_delay": timedelta(seconds=30),
            "on_failure_callback": [notify.failure_notifier(conn_id)],
        },
    ) as dag:
        HealthProbeOperator(task_id="probe", models=sorted(s.name for s in specs), conn_id=conn_id)
    return dag


HEALTH_DOC = """### Health probe
Every 5 minutes: MLflow's /health, and each model's golden request against the model API
(URL and bearer token from the connection `model_api_default`: host and password). A target
that goes down sends one alert; while it stays down, nothing more; when it answers again, one
"recovered" message. A model without a champion is not probed (nothing to serve is no outage),
and one the API has not loaded yet is given five minutes after the API's start (its /status
`uptime_s`) or the champion's promotion: a stack restart sends nothing. State: Variable
`airmlops_health_state`. Also reports alerts that could
not be delivered since the last probe.
"""


def build_dags(models_dir: str | Path | None = None) -> dict[str, DAG]:
    """DAGs of every valid spec, by dag_id. Invalid specs are skipped (see spec_errors)."""
    specs, _ = load_specs(models_dir or settings.models_dir())
    dags: dict[str, DAG] = {}
    for spec in specs.values():
        pipelines = (
            (onboard_dag(spec), rollback_dag(spec), score_dag(spec), drift_dag(spec))
            if spec.is_external
            else (
                train_dag(spec),
                validate_dag(spec),
                rollback_dag(spec),
                score_dag(spec),
                drift_dag(spec),
                train_dag(spec, retrain=True),
                deploy_dag(spec),
            )
        )
        for dag in pipelines:
            dags[dag.dag_id] = dag
    dags[HEALTH_DAG_ID] = health_dag(list(specs.values()))
    return dags


def spec_errors(models_dir: str | Path | None = None) -> dict[str, SpecError]:
    """Errors of the invalid specs, by file path."""
    return load_specs(models_dir or settings.models_dir())[1]
