"""Onboarding of models built elsewhere, against a real MLflow server and real files.

The "vendor" model is a scikit-learn pipeline fitted here and saved the way another team would
(skops file, or an MLflow model logged under another registered name); expected metrics come
from scikit-learn on the same arrays, the expected profile from drift_flow.build_profile.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import crafted_models as cm
from airmlops_core import cli, onboard
from airmlops_core.errors import OnboardError, UnsafeModel
from airmlops_core.io import data
from airmlops_core.score.model import LoadedModel, PyfuncModel, load_local, load_model
from airmlops_core.score.stream import score_partition
from airmlops_core.spec import ModelSpec
from airmlops_core.stats.profile import PROFILE_ARTIFACT
from airmlops_core.tracking import locks, model_metrics, model_safety, registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.tracking.skops_allowlist import ALLOWED_TYPES
from airmlops_core.train import estimator as training
from churn_batches import frame  # the same churn-like batches as the scoring tests


def vendor_pipeline(train: pd.DataFrame, estimator: Any = None) -> Pipeline:
    """What another team built: its own preprocessing, fitted on its own data."""
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "monthly"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("model", estimator or LogisticRegression(max_iter=500))])
    target = train["churn"] if estimator is None else train["monthly"] * 2
    return pipe.fit(train[["tenure", "monthly", "contract"]], target)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_url: str) -> dict[str, Any]:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    name = f"ext_{secrets.token_hex(3)}"
    reference = frame(2000, seed=3)
    data.write_frame(reference, str(tmp_path / "data" / "vendor" / "reference.parquet"))
    spec = ModelSpec.model_validate(
        {
            "name": name,
            "task": "binary",
            "target": "churn",
            "row_key": "customer_id",
            "features": {"numeric": ["tenure", "monthly"], "categorical": ["contract"]},
            "external": {
                "reference": {"uri": "vendor/reference.parquet"},
                "origin": "vendor X / team Y notebook",
            },
        }
    )
    pipe = vendor_pipeline(frame(3000, seed=1))
    model_file = tmp_path / "data" / "vendor" / "churn.skops"  # inside the data directory
    skops.io.dump(pipe, model_file)
    return {
        "spec": spec,
        "name": name,
        "reference": reference,
        "pipe": pipe,
        "file": model_file,
        "url": mlflow_url,
        "client": MlflowClient(mlflow_url),
        "tmp": tmp_path,
        "data": tmp_path / "data",
    }


def ctx(name: str, run: str = "manual__1") -> RunContext:
    return RunContext(model=name, dag_id=f"{name}__onboard", run_id=run, task_id="onboard")


def versions(env: dict[str, Any]) -> list[Any]:
    return env["client"].search_model_versions(f"name = '{env['name']}'")


def test_skops_file_is_onboarded_with_origin_champion_and_reference(env) -> None:
    out = onboard.onboard(
        env["spec"], model_file=env["file"], tracking_uri=env["url"], ctx=ctx(env["name"])
    )
    client = env["client"]
    assert out["created"]
    assert out["champion"] == out["version"]
    mv = client.get_model_version(env["name"], out["version"])
    assert mv.tags["airmlops.origin"] == "external"
    assert mv.tags["airmlops.origin_detail"] == "vendor X / team Y notebook"
    sha = hashlib.sha256(env["file"].read_bytes()).hexdigest()
    assert mv.tags["airmlops.source_uri"] == f"{env['file']} sha256:{sha}"
    assert registry.alias_version(client, env["name"], "champion") == out["version"]
    # reference metrics from scikit-learn on the same rows
    ref = env["reference"]
    expected = roc_auc_score(
        ref["churn"], env["pipe"].predict_proba(ref[["tenure", "monthly", "contract"]])[:, 1]
    )
    assert float(mv.tags["metric.roc_auc"]) == pytest.approx(expected, abs=1e-5)
    # MLflow 3: the version is a logged model, with the reference metrics on its page
    model_id = model_metrics.version_model_id(client, env["name"], out["version"])
    assert model_id is not None
    assert mv.source == f"models:/{model_id}"
    logged = client.get_logged_model(model_id)
    assert logged.status == "READY"
    assert logged.source_run_id == out["run_url"].rsplit("/")[-1]
    on_page = {m.key: m for m in logged.metrics or []}
    assert on_page["reference_roc_auc"].value == pytest.approx(expected, abs=1e-9)
    assert on_page["reference_roc_auc"].dataset_name == f"{env['name']}-reference"
    # the profile the drift DAG reads: features, label and the model's predictions
    from airmlops_core.drift import flow as drift_flow

    profile = drift_flow.champion_profile(client, env["spec"], out["version"])
    assert set(profile.names()) >= {
        "tenure",
        "monthly",
        "contract",
        "churn",
        "prediction",
        "proba_0",
        "proba_1",
    }
    # the registered version scores like the vendor's own model (native sklearn path)
    model = load_model(client, env["name"], out["version"])
    X = training.feature_frame(env["spec"], ref.head(50))
    _, proba = model.predict(X)
    np.testing.assert_allclose(proba, env["pipe"].predict_proba(X), rtol=1e-12)


def test_retried_onboarding_makes_one_version(env) -> None:
    first = onboard.onboard(
        env["spec"], model_file=env["file"], tracking_uri=env["url"], ctx=ctx(env["name"])
    )
    again = onboard.onboard(
        env["spec"],
        model_file=env["file"],
        tracking_uri=env["url"],
        ctx=RunContext(**{**ctx(env["name"]).__dict__, "try_number": 2}),
    )
    assert again["version"] == first["version"]
    assert not again["created"]
    assert len(versions(env)) == 1
    exp = env["client"].get_experiment_by_name(f"airmlops/{env['name']}").experiment_id
    assert len(env["client"].search_logged_models([exp])) == 1  # the retry reused its model
    # the CLI (no Airflow context) is keyed on the file's content: twice, one more version
    cli1 = onboard.onboard(env["spec"], model_file=env["file"], tracking_uri=env["url"])
    cli2 = onboard.onboard(env["spec"], model_file=env["file"], tracking_uri=env["url"])
    assert cli1["version"] == cli2["version"] != first["version"]
    assert len(versions(env)) == 2
    assert cli1["previous_champion"] == first["version"]


def test_onboarding_moves_champion_under_the_champion_lease(
    env, caplog: pytest.LogCaptureFixture
) -> None:
    # a writer died holding the lease: onboarding waits it out and breaks it, never ignores it
    key = registry.champion_lease_key(env["name"])
    locks.Lease(env["client"], key, owner="dead writer", ttl=1.5).acquire()
    with caplog.at_level("WARNING", logger=locks.__name__):
        out = onboard.onboard(
            env["spec"], model_file=env["file"], tracking_uri=env["url"], ctx=ctx(env["name"])
        )
    assert "breaking the lease" in caplog.text
    assert "dead writer on " in caplog.text
    assert out["champion"] == out["version"]
    assert locks.read_lease(env["client"], key) is None


@pytest.mark.parametrize("disguise", ["extension", "content", "joblib"])
def test_pickle_files_are_refused_and_nothing_registered(env, disguise: str) -> None:
    if disguise == "extension":
        path = env["data"] / "model.pkl"
        path.write_bytes(pickle.dumps(env["pipe"]))
    elif disguise == "content":  # a pickle renamed to look like a skops file
        path = env["data"] / "model.skops"
        path.write_bytes(pickle.dumps(env["pipe"], protocol=4))
    else:
        import joblib

        path = env["data"] / "model.joblib"
        joblib.dump(env["pipe"], path)
    with pytest.raises(UnsafeModel) as info:
        onboard.onboard(env["spec"], model_file=path, tracking_uri=env["url"], ctx=ctx(env["name"]))
    text = str(info.value)
    assert str(path) in text
    assert "execute arbitrary code" in text
    assert "skops.io.dump" in text
    assert ("extension" in text) if disguise != "content" else ("pickle stream" in text)
    assert versions(env) == []


def test_skops_file_with_untrusted_type_is_refused(env) -> None:
    from sklearn.preprocessing import FunctionTransformer

    tmp_path = env["data"]
    pipe = Pipeline([("f", FunctionTransformer(func=np.log1p)), ("m", env["pipe"])])
    ok = tmp_path / "ok.skops"
    skops.io.dump(pipe, ok)  # numpy.log1p: trusted prefix
    assert set(model_safety.skops_types(ok, str(ok))) <= ALLOWED_TYPES
    bad = Pipeline([("f", FunctionTransformer(func=eval)), ("m", env["pipe"])])
    path = tmp_path / "eval.skops"
    skops.io.dump(bad, path)
    with pytest.raises(UnsafeModel, match=r"types outside the pack's allow-list.*builtins\.eval"):
        onboard.onboard(env["spec"], model_file=path, tracking_uri=env["url"], ctx=ctx(env["name"]))
    assert versions(env) == []


def _log_other(env: dict[str, Any], name: str, **kwargs: Any) -> str:
    from mlflow.models import infer_signature

    X = env["reference"][["tenure", "monthly", "contract"]].head(5)
    mlflow.set_tracking_uri(env["url"])
    mlflow.set_experiment(f"vendor/{name}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            env["pipe"],
            name="model",
            pip_requirements=["scikit-learn"],
            signature=infer_signature(X, env["pipe"].predict_proba(X)),
            **kwargs,
        )
    return str(mlflow.register_model(info.model_uri, name).version)


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_pickled_mlflow_model_is_refused(env, fmt: str) -> None:
    other = f"vendor_{secrets.token_hex(3)}"
    version = _log_other(env, other, serialization_format=fmt)
    with pytest.raises(UnsafeModel, match=f"sklearn flavor declares serialization_format: {fmt}"):
        onboard.onboard(
            env["spec"],
            model_uri=f"models:/{other}/{version}",
            tracking_uri=env["url"],
            ctx=ctx(env["name"]),
        )
    assert versions(env) == []


def test_cloudpickled_python_model_is_refused(env) -> None:
    class Vendor(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):  # noqa: ANN001, ANN201
            return model_input["tenure"] * 0.0

    path = env["data"] / "pyfunc_model"
    mlflow.pyfunc.save_model(str(path), python_model=Vendor(), pip_requirements=["mlflow"])
    with pytest.raises(UnsafeModel, match="cloudpickled python_model"):
        onboard.onboard(
            env["spec"], model_uri=str(path), tracking_uri=env["url"], ctx=ctx(env["name"])
        )
    assert versions(env) == []


def test_model_of_another_registered_model_is_copied_into_ours(env) -> None:
    other = f"vendor_{secrets.token_hex(3)}"
    version = _log_other(
        env,
        other,
        serialization_format="skops",
        skops_trusted_types=training.trusted_types(env["pipe"]),
    )
    out = onboard.onboard(
        env["spec"],
        model_uri=f"models:/{other}/{version}",
        tracking_uri=env["url"],
        ctx=ctx(env["name"]),
    )
    client = env["client"]
    mv = client.get_model_version(env["name"], out["version"])
    assert mv.tags["airmlops.source_uri"] == f"models:/{other}/{version}"
    assert mv.tags["airmlops.origin"] == "external"
    # the version lives in our registry with our run (lineage), not the other model's
    run = client.get_run(mv.run_id)
    assert run.data.tags["airmlops.purpose"] == "onboard"
    assert (
        run.info.experiment_id
        == client.get_experiment_by_name(f"airmlops/{env['name']}").experiment_id
    )
    assert {a.path for a in client.list_artifacts(mv.run_id, "monitoring")} == {
        f"monitoring/{PROFILE_ARTIFACT}"
    }
    model = load_model(client, env["name"], out["version"])
    assert model.classes == (0, 1)


def test_missing_reference_column_names_it_and_registers_nothing(env) -> None:
    ref = env["reference"].drop(columns=["monthly"])
    data.write_frame(ref, str(env["tmp"] / "data" / "vendor" / "reference.parquet"))
    with pytest.raises(
        OnboardError,
        match=r"reference dataset vendor/reference\.parquet.*"
        r"monthly",
    ):
        onboard.onboard(
            env["spec"], model_file=env["file"], tracking_uri=env["url"], ctx=ctx(env["name"])
        )
    assert versions(env) == []
    assert env["client"].get_experiment_by_name(f"airmlops/{env['name']}") is None


def test_wrong_task_and_failing_model_are_named(env) -> None:
    tmp_path = env["data"]
    regressor = vendor_pipeline(frame(500, seed=2), LinearRegression())
    path = tmp_path / "regressor.skops"
    skops.io.dump(regressor, path)
    with pytest.raises(
        OnboardError,
        match=rf"{path}: Pipeline is a regressor but task is "
        "'binary'",
    ):
        onboard.onboard(env["spec"], model_file=path, tracking_uri=env["url"], ctx=ctx(env["name"]))
    from sklearn.svm import LinearSVC

    train = frame(500, seed=2)
    no_proba = Pipeline(
        [
            ("pre", ColumnTransformer([("n", StandardScaler(), ["tenure", "monthly"])])),
            ("m", LinearSVC()),
        ]
    ).fit(train[["tenure", "monthly"]], train["churn"])
    path = tmp_path / "svc.skops"
    skops.io.dump(no_proba, path)
    with pytest.raises(
        OnboardError,
        match=rf"{path}: Pipeline has no predict_proba: a "
        "'binary' model must give class probabilities",
    ):
        onboard.onboard(env["spec"], model_file=path, tracking_uri=env["url"], ctx=ctx(env["name"]))
    # a model trained on other columns fails to predict on the reference: named
    other = Pipeline(
        [
            ("pre", ColumnTransformer([("n", StandardScaler(), ["age"])])),
            ("m", LogisticRegression()),
        ]
    ).fit(pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0]}), [0, 1, 0, 1])
    path = tmp_path / "other.skops"
    skops.io.dump(other, path)
    with pytest.raises(
        OnboardError,
        match=rf"{path}: the model fails to predict on the "
        "reference dataset",
    ):
        onboard.onboard(env["spec"], model_file=path, tracking_uri=env["url"], ctx=ctx(env["name"]))
    assert versions(env) == []


def test_a_spec_without_external_is_refused(env) -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "trained",
            "task": "binary",
            "source": {"uri": "x.parquet"},
            "target": "churn",
            "features": {"numeric": ["tenure"]},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "roc_auc"},
        }
    )
    with pytest.raises(OnboardError, match="no `external:` section"):
        onboard.onboard(spec, model_file=env["file"], tracking_uri=env["url"])
    with pytest.raises(OnboardError, match="exactly one of model_uri and model_file"):
        onboard.onboard(
            env["spec"], model_file=env["file"], model_uri="models:/x/1", tracking_uri=env["url"]
        )


CODE_MODEL = """
import mlflow
import numpy as np
import pandas as pd


class Vendor(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        p = 1.0 / (1.0 + np.exp(-(1.0 - 0.05 * model_input["tenure"].to_numpy())))
        return pd.DataFrame({"0": 1.0 - p, "1": p})


mlflow.models.set_model(Vendor())
"""


@pytest.fixture
def code_model(tmp_path: Path) -> Path:
    """A non-sklearn MLflow model without pickle: a pyfunc model from code whose output is
    one probability column per class."""
    from mlflow.models import infer_signature

    code = tmp_path / "vendor_model.py"
    code.write_text(CODE_MODEL)
    X = pd.DataFrame(
        {"tenure": [1.0, 30.0], "monthly": [20.0, 90.0], "contract": ["month", "year1"]}
    )
    out = pd.DataFrame({"0": [0.5, 0.5], "1": [0.5, 0.5]})
    path = tmp_path / "data" / "code_model"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(code),
        pip_requirements=["mlflow"],
        signature=infer_signature(X, out),
    )
    return path


def test_non_sklearn_flavor_is_scored_through_pyfunc(code_model: Path, env) -> None:
    """`PyfuncModel`, the wrapper a checked non-sklearn flavor (XGBoost JSON, ONNX, ...) is
    scored through, on a model from code: load_local itself refuses such a model (it runs
    code), so the pyfunc model is loaded here directly."""
    from mlflow.models import Model

    with pytest.raises(UnsafeModel, match="runs Python code shipped with the model"):
        load_local(code_model, "vendor", "1")
    meta = Model.load(str(code_model))
    wrapped = PyfuncModel.wrap(mlflow.pyfunc.load_model(str(code_model)), meta)
    model = LoadedModel.from_estimator("vendor", "1", wrapped, meta.signature)
    assert isinstance(model.estimator, PyfuncModel)
    assert model.classes == (0, 1)  # from the output signature's column names
    batch = env["reference"].head(300)
    path = env["tmp"] / "batch.parquet"
    data.write_frame(batch, str(path))
    out = env["tmp"] / "scored.parquet"
    result = score_partition(
        model, str(path), str(out), row_key="customer_id", logical_date="2024-05-01T00:00:00Z"
    )
    assert result["rows_out"] == 300
    scored = pd.read_parquet(out)
    p = 1.0 / (1.0 + np.exp(-(1.0 - 0.05 * batch["tenure"].to_numpy(dtype=float))))
    np.testing.assert_allclose(scored["proba_1"], p, rtol=1e-12)
    np.testing.assert_array_equal(scored["prediction"], (p > 0.5).astype(int))


def test_model_that_runs_its_own_code_is_refused(code_model: Path, env) -> None:
    with pytest.raises(UnsafeModel, match="runs Python code shipped with the model"):
        onboard.onboard(
            env["spec"], model_uri=str(code_model), tracking_uri=env["url"], ctx=ctx(env["name"])
        )
    assert versions(env) == []


def test_cli_onboards_and_refuses(env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    from airmlops_core import cli

    models = tmp_path / "models"
    models.mkdir()
    (models / f"{env['name']}.yaml").write_text(
        yaml.safe_dump(env["spec"].model_dump(mode="json", by_alias=True, exclude_unset=True))
    )
    args = ["onboard", env["name"], "--models-dir", str(models), "--tracking-uri", env["url"]]
    pickled = env["data"] / "m.joblib"
    pickled.write_bytes(pickle.dumps(env["pipe"]))
    assert cli.main([*args, "--model-file", str(pickled)]) == 2
    assert "not onboarded" in capsys.readouterr().err
    assert versions(env) == []
    assert cli.main([*args, "--model-file", str(env["file"])]) == 0
    assert "version 1 onboarded" in capsys.readouterr().out
    [mv] = versions(env)
    assert mv.tags["airmlops.dag_id"] == "airmlops-cli"


# --- crafted models through the CLI: refused, named, nothing runs, nothing registered ---------


def _cli(env: dict[str, Any], tmp_path: Path) -> list[str]:
    import yaml

    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / f"{env['name']}.yaml").write_text(
        yaml.safe_dump(env["spec"].model_dump(mode="json", by_alias=True, exclude_unset=True))
    )
    return ["onboard", env["name"], "--models-dir", str(models), "--tracking-uri", env["url"]]


FILE_CASES = {
    "gadget_top": (lambda m: cm.skops_gadget(m, "top"), "numpy.testing._private.utils.runstring"),
    "gadget_in_pipeline": (
        lambda m: cm.skops_gadget(m, "pipeline"),
        "numpy.testing._private.utils.runstring",
    ),
    "gadget_in_column_transformer": (
        lambda m: cm.skops_gadget(m, "column_transformer"),
        "numpy.testing._private.utils.runstring",
    ),
    "exec_gadget": (lambda m: cm.skops_gadget(m, "top", cm.EXEC), "builtins.exec"),
    "pickle_protocol_0": (lambda m: cm.pickled(m, 0), "pickle stream importing builtins.exec"),
    "pickle_protocol_1": (lambda m: cm.pickled(m, 1), "pickle stream importing builtins.exec"),
    "pickle_protocol_2": (lambda m: cm.pickled(m, 2), "pickle stream (protocol 2)"),
    "pickle_protocol_5": (lambda m: cm.pickled(m, 5), "pickle stream (protocol 5)"),
    "pickle_in_zip": (lambda m: cm.zipped("data", cm.pickled(m, 2)), "member data is a pickle"),
    "gzipped_pickle": (lambda m: cm.gzipped(cm.pickled(m, 4)), "gzip-compressed a pickle"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_cli_refuses_crafted_model_files_and_nothing_runs(
    env, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    marker = tmp_path / "payload-ran"
    make, named = FILE_CASES[case]
    path = env["data"] / "vendor" / "crafted.skops"
    path.write_bytes(make(marker))
    assert cli.main([*_cli(env, tmp_path), "--model-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not onboarded" in err
    assert "refused" in err
    assert named in err.replace("__builtin__.", "builtins.")
    assert not marker.exists()
    assert versions(env) == []


@pytest.mark.parametrize("case", cm.DIR_CASES)
def test_cli_refuses_crafted_model_directories_and_nothing_runs(
    env, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    marker = tmp_path / "payload-ran"
    path = cm.malicious_dir(env["data"] / "vendor" / "model_dir", marker, case)
    assert cli.main([*_cli(env, tmp_path), "--model-uri", str(path)]) == 2
    err = capsys.readouterr().err
    assert cm.DIR_REASONS[case] in err
    assert not marker.exists()
    assert versions(env) == []


def test_cli_refuses_model_sources_outside_the_data_directory(
    env, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    outside = tmp_path / "elsewhere" / "churn.skops"
    outside.parent.mkdir()
    shutil.copy(env["file"], outside)
    os.symlink(outside, env["data"] / "vendor" / "link.skops")
    outside_dir = cm.mlflow_dir(tmp_path / "elsewhere" / "model_dir")
    cases = {
        ("--model-file", str(outside)): "outside the data directory",
        ("--model-file", f"{env['data']}/../elsewhere/churn.skops"): "contains '..'",
        ("--model-file", str(env["data"] / "vendor" / "link.skops")): "is a symlink",
        ("--model-uri", str(outside_dir)): "outside the data directory",
        ("--model-uri", f"file://{outside_dir}"): "scheme 'file:'",
        ("--model-uri", "s3://bucket/model"): "scheme 's3:'",
        ("--model-uri", "https://example.invalid/model"): "scheme 'https:'",
    }
    for (flag, value), why in cases.items():
        assert cli.main([*_cli(env, tmp_path), flag, value]) == 2, value
        assert why in capsys.readouterr().err, value
    assert versions(env) == []
    # the same file inside the data directory onboards (the rules refuse the place only)
    assert cli.main([*_cli(env, tmp_path), "--model-file", str(env["file"])]) == 0
