"""The end-to-end demo `make up` runs: demo data, a train run per demo model, a summary."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airmlops_core import settings, spec
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import experiment_name
from airmlops_dev import demo_data, run_progress
from airmlops_dev.airflow_api import AirflowClient
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_secrets import credentials, use_mlflow_credentials
from airmlops_dev.webhook_receiver import read_messages

log = logging.getLogger(__name__)

DEMO_TAG = "demo"
DAG_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900
SCHEDULED_RUN_GRACE_S = 10
ALIAS_ORDER = (registry.CHAMPION, registry.CHALLENGER, registry.PREVIOUS_CHAMPION)
BALANCE_PREFIX = "train_class_"  # train.flow logs train_class_<before|after>.<label> = rows


def ordered_aliases(aliases: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A version's aliases, champion first, then challenger, previous_champion, the rest."""
    rank = {a: i for i, a in enumerate(ALIAS_ORDER)}
    return tuple(sorted(set(aliases), key=lambda a: (rank.get(a, len(rank)), a)))


def class_balance(metrics: dict[str, float]) -> dict[str, dict[str, int]]:
    """Rows per class of the training fold, `before` and `after` the spec's oversampler, from
    a training run's `train_class_*` metrics (empty for a regressor)."""
    balance: dict[str, dict[str, int]] = {}
    for key, value in metrics.items():
        if key.startswith(BALANCE_PREFIX) and "." in key:
            stage, label = key.removeprefix(BALANCE_PREFIX).split(".", 1)
            balance.setdefault(stage, {})[label] = int(value)
    return {stage: dict(sorted(counts.items())) for stage, counts in sorted(balance.items())}


def balance_line(balance: dict[str, dict[str, int]]) -> str:
    """`0: 3,880, 1: 1,401 -> rebalanced 0: 3,880, 1: 3,880`, or the counts once."""
    before, after = balance.get("before", {}), balance.get("after", {})

    def counts(c: dict[str, int]) -> str:
        total = sum(c.values()) or 1
        return ", ".join(f"{k}: {n:,} ({100 * n / total:.0f}%)" for k, n in c.items())

    if not after or after == before:
        return f"{counts(before)} (not rebalanced)"
    return f"{counts(before)} -> rebalanced {counts(after)}"


@dataclass
class ModelSummary:
    """What the demo shows for one model: its challenger with every alias it has, the
    training fold's class balance, the champion and the gate's decision."""

    model: str
    runs: int
    version: str | None
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    url: str
    champion: str | None = None
    decision: str = ""
    reasons: tuple[str, ...] = ()
    message: str = ""
    balance: dict[str, dict[str, int]] = field(default_factory=dict)

    def line(self) -> str:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        tags = " ".join(f"@{a}" for a in self.aliases)
        version = f"v{self.version} {tags}".strip() if self.version else "no version yet"
        lines = [
            f"  {self.model:<16} MLflow runs: {self.runs:<3} {version:<26} {metrics}",
            f"  {'':<16} champion: "
            + (f"v{self.champion}" if self.champion else "none")
            + (f"; gate decision on v{self.version}: {self.decision}" if self.decision else ""),
        ]
        lines += [f"  {'':<18}- {r}" for r in self.reasons]
        if self.balance.get("before"):
            lines.append(f"  {'':<16} training classes: {balance_line(self.balance)}")
        if self.message:
            lines.append(f"  {'':<16} Slack message: {self.message}")
        lines.append(f"  {'':<16} {self.url}")
        return "\n".join(lines)


def models_dir_of(cfg: StackConfig) -> Path:
    """The specs directory the stack's Airflow reads."""
    return Path(cfg.extra_env.get("AIRMLOPS_MODELS_DIR") or settings.models_dir())


def demo_models(models_dir: Any) -> list[spec.ModelSpec]:
    """The specs tagged `demo`."""
    specs, _ = spec.load_specs(models_dir)
    return [s for s in specs.values() if DEMO_TAG in s.tags]


def summarize(cfg: StackConfig, model: str) -> ModelSummary:
    """Training runs, the challenger with its holdout metrics, the champion and the gate's
    decision with its reasons (version tags), and the last Slack message about the model."""
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow_url)
    exp = client.get_experiment_by_name(experiment_name(model))
    runs = len(client.search_runs([exp.experiment_id], max_results=1000)) if exp else 0
    version = registry.alias_version(client, model, registry.CHALLENGER)
    metrics: dict[str, float] = {}
    decision, reasons = "", ()
    aliases: tuple[str, ...] = (registry.CHALLENGER,)
    balance: dict[str, dict[str, int]] = {}
    if version:
        mv = client.get_model_version(model, version)
        tags, aliases = mv.tags, ordered_aliases(list(mv.aliases or [registry.CHALLENGER]))
        metrics = {
            k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")
        }
        decision = tags.get("gate.decision", "")
        reasons = tuple(json.loads(tags.get("gate.reasons") or "[]"))
        if mv.run_id:
            balance = class_balance(client.get_run(mv.run_id).data.metrics)
    url = f"{cfg.mlflow_url}/#/models/{model}" + (f"/versions/{version}" if version else "")
    # the gate's Slack message: its line naming the model version and the decision
    texts = [
        line
        for m in read_messages(cfg.messages_file)
        for line in str((m.get("body") or {}).get("text", "")).splitlines()
        if line.split(" ", 1)[-1].startswith(f"*{model}* version")
    ]
    return ModelSummary(
        model,
        runs,
        version,
        aliases,
        metrics,
        url,
        champion=registry.alias_version(client, model, registry.CHAMPION),
        decision=decision,
        reasons=reasons,
        message=texts[-1] if texts else "",
        balance=balance,
    )


def stack_client(cfg: StackConfig) -> AirflowClient:
    """An Airflow client of the stack (its admin) whose waits show task progress."""
    _, (user, password) = credentials(cfg)
    return AirflowClient(cfg.airflow_url, user, password, progress=run_progress.shared())


def _active_or_new_runs(api: AirflowClient, dag_ids: list[str]) -> dict[str, str]:
    """A run of each DAG to wait for: the scheduler's first run when it makes one, else a new
    one, all within one grace period (not one per DAG).

    A DAG with a schedule gets a run as soon as the scheduler sees it; triggering another
    would only train the same model twice.
    """
    runs: dict[str, str] = {}
    deadline = time.monotonic() + SCHEDULED_RUN_GRACE_S
    while True:
        for dag_id in dag_ids:
            if dag_id not in runs and (
                active := api.dag_runs(dag_id, states=["queued", "running"])
            ):
                runs[dag_id] = str(active[0]["dag_run_id"])
                log.info("following the scheduled run %s of %s", runs[dag_id], dag_id)
        if len(runs) == len(dag_ids):
            return runs
        if time.monotonic() > deadline:
            for dag_id in dag_ids:
                if dag_id not in runs:
                    runs[dag_id] = api.trigger(dag_id)
                    log.info("triggered %s (%s)", dag_id, runs[dag_id])
            return runs
        time.sleep(1)


def run_demo(cfg: StackConfig, *, retrain: bool = False) -> list[ModelSummary]:
    """Train every demo model that has no challenger yet (all with retrain), all at once, and
    follow each one's promotion gate (the validate run its candidate Asset triggers) as soon as
    its training ends, printing every task's state changes; then summarize."""
    from mlflow import MlflowClient

    demo_data.write_all(cfg.root / "data")
    use_mlflow_credentials(cfg)  # this process's MLflow clients log in as the stack's admin
    api = stack_client(cfg)
    client = MlflowClient(cfg.mlflow_url)
    models = demo_models(models_dir_of(cfg))
    to_train = [
        s.name
        for s in models
        if retrain or not registry.alias_version(client, s.name, registry.CHALLENGER)
    ]
    validations = {}
    for name in to_train:
        api.wait_for_dag(f"{name}__train", timeout=DAG_TIMEOUT_S)
        validations[name] = {r["dag_run_id"] for r in api.dag_runs(f"{name}__validate")}
    watcher = run_progress.RunWatcher(api)
    for dag_id, run_id in _active_or_new_runs(api, [f"{n}__train" for n in to_train]).items():
        watcher.follow(dag_id, run_id, timeout=RUN_TIMEOUT_S)
    failed = []
    while watcher.active:
        for dag_id, run_id, state in watcher.wait_any():
            if state != "success":
                failed.append(f"{dag_id} run {run_id} ended {state}")
            elif dag_id.endswith("__train"):
                name = dag_id.removesuffix("__train")
                # the promotion gate: a validate run the candidate Asset starts
                watcher.follow_next(
                    f"{name}__validate", validations[name], timeout=DAG_TIMEOUT_S + RUN_TIMEOUT_S
                )
    if failed:
        raise RuntimeError("demo runs failed: " + "; ".join(failed) + f" (see {cfg.airflow_url})")
    return [summarize(cfg, s.name) for s in models]
