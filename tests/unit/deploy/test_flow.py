"""The deploy steps between two real MLflow registries (no Airflow): the same bytes arrive with
their provenance, and every refusal leaves the target's registry as it was."""

from __future__ import annotations

import filecmp
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from airmlops_core import spec as model_spec
from airmlops_core.deploy import environments, flow
from airmlops_core.errors import DeployRefused
from airmlops_core.tracking import model_load, registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train.flow import logged_model_digest
from mlflow_server import mlflow_server
from paths import PROJECT_DIR

SPEC = model_spec.load_spec(PROJECT_DIR / "include" / "models" / "customer_churn.yaml")
NAME = SPEC.name
ROUTE = environments.Route(
    source=environments.Environment("dev", "mlflow_dev", None, False, (), 24.0),
    target=environments.Environment("staging", "mlflow_default", "dev", False, (), 24.0),
)


@pytest.fixture(scope="module")
def target_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow_target")) as url:
        yield url


def source_version(url: str, tags: dict[str, str], *, digest: str | None = None) -> str:
    """A small skops model with an input example, registered in the source with `tags` and
    its files' digest (or `digest`, a recorded digest the files do not have)."""
    mlflow.set_tracking_uri(url)
    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, X[:, 0] > 0.5),
            name="model",
            serialization_format="skops",
            pip_requirements=["scikit-learn"],
            input_example=X[:4],
            pyfunc_predict_fn="predict_proba",
        )
    recorded = digest or logged_model_digest(info.model_uri, url)
    mv = mlflow.register_model(
        info.model_uri, NAME, tags={**tags, "airmlops.model_sha256": recorded}
    )
    return str(mv.version)


def ctx(run_id: str) -> RunContext:
    return RunContext(model=NAME, dag_id=f"{NAME}__deploy", run_id=run_id, task_id="t")


def versions(url: str) -> list[str]:
    return [str(v.version) for v in MlflowClient(url).search_model_versions(f"name = '{NAME}'")]


def transfer(source: MlflowClient, resolved: flow.Resolved, target: str, run: str) -> flow.Pushed:
    with tempfile.TemporaryDirectory() as tmp:
        pulled = flow.pull_step(SPEC, resolved, source_client=source, dst=Path(tmp))
        return flow.push_step(SPEC, ctx(run), resolved, pulled, tracking_uri=target)


def test_deploy_moves_the_same_bytes_with_provenance(mlflow_url: str, target_url: str) -> None:
    source = MlflowClient(mlflow_url)
    version = source_version(mlflow_url, {"gate.decision": "promote", "metric.roc_auc": "0.9"})
    source.set_registered_model_alias(NAME, registry.CHAMPION, version)
    resolved = flow.resolve_step(
        SPEC, ROUTE, source_client=source, source_version="champion", requested_by="alice"
    )
    assert resolved["version"] == version
    pushed = transfer(source, resolved, target_url, "run1")
    again = transfer(source, resolved, target_url, "run1")  # a retried task: the same version
    assert (again["version"], again["created"]) == (pushed["version"], False)
    target = MlflowClient(target_url)
    with tempfile.TemporaryDirectory() as tmp:
        a = model_load.download_version(source, NAME, version, Path(tmp) / "a")
        b = model_load.download_version(target, NAME, pushed["version"], Path(tmp) / "b")
        names = [p.name for p in a.iterdir()]
        _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
        assert (mismatch, errors) == ([], [])
        assert sorted(names) == sorted(p.name for p in b.iterdir())
    verified = flow.verify_step(SPEC, ctx("run1"), resolved, pushed, tracking_uri=target_url)
    assert verified["promote"], verified["reasons"]
    assert "4 example row(s) matches" in verified["reasons"][0]
    moved = flow.promote_step(SPEC, ctx("run1"), verified, tracking_uri=target_url, approved_by="b")
    assert registry.alias_version(target, NAME, registry.CHAMPION) == pushed["version"]
    assert moved["previous_champion"] is None
    tags = target.get_model_version(NAME, pushed["version"]).tags
    assert tags["airmlops.deploy.source_registry"] == mlflow_url
    assert tags["airmlops.deploy.source_version"] == version
    assert tags["airmlops.deploy.requested_by"] == "alice"
    assert tags["metric.roc_auc"] == "0.9"
    assert (
        tags["airmlops.model_sha256"]
        == source.get_model_version(NAME, version).tags["airmlops.model_sha256"]
    )


def test_files_that_differ_from_the_recorded_digest_register_nothing(
    mlflow_url: str, target_url: str
) -> None:
    source = MlflowClient(mlflow_url)
    version = source_version(mlflow_url, {"gate.decision": "promote"}, digest="0" * 64)
    resolved = flow.resolve_step(
        SPEC, ROUTE, source_client=source, source_version=version, requested_by="alice"
    )
    before = versions(target_url)
    with pytest.raises(DeployRefused, match="changed since registration.*nothing was registered"):
        transfer(source, resolved, target_url, "run2")
    assert versions(target_url) == before


def test_a_version_that_failed_its_gate_is_refused(mlflow_url: str) -> None:
    source = MlflowClient(mlflow_url)
    version = source_version(mlflow_url, {"gate.decision": "reject", "gate.reasons": '["x"]'})
    with pytest.raises(DeployRefused, match=f"version {version} .* did not pass its gate"):
        flow.resolve_step(
            SPEC, ROUTE, source_client=source, source_version=version, requested_by="a"
        )


def test_a_rejected_deploy_keeps_the_champion_and_cannot_travel_further(
    mlflow_url: str, target_url: str
) -> None:
    source, target = MlflowClient(mlflow_url), MlflowClient(target_url)
    version = source_version(mlflow_url, {"gate.decision": "promote"})
    resolved = flow.resolve_step(
        SPEC, ROUTE, source_client=source, source_version=version, requested_by="alice"
    )
    pushed = transfer(source, resolved, target_url, "run3")
    verified = flow.verify_step(SPEC, ctx("run3"), resolved, pushed, tracking_uri=target_url)
    champion = registry.alias_version(target, NAME, registry.CHAMPION)
    out = flow.reject_step(SPEC, verified, tracking_uri=target_url, extra_reasons=["no, bob"])
    assert out["reasons"] == ["no, bob"]
    assert registry.alias_version(target, NAME, registry.CHAMPION) == champion
    nxt = environments.Route(source=ROUTE.target, target=ROUTE.source)
    with pytest.raises(DeployRefused, match="was rejected in its environment"):
        flow.resolve_step(
            SPEC, nxt, source_client=target, source_version=pushed["version"], requested_by="a"
        )
