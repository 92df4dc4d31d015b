"""The model-safety check, attacked the way an attacker would: crafted files and directories.

Each crafted artifact carries a payload that creates a marker file if it ever runs; each test
asserts the refusal names the offending type, flavor or file, and that the marker is absent.
The `live` tests load the same artifacts the way the unsafe code did, proving the payloads real.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io

import crafted_models as cm
from airmlops_core.errors import UnsafeModel
from airmlops_core.tracking import model_load, model_safety, model_source
from airmlops_core.tracking.skops_allowlist import ALLOWED_TYPES
from airmlops_dev import skops_allowlist


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


# --- the payloads are real --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "pipeline", "column_transformer"])
def test_live_skops_gadgets_run_when_their_own_types_are_trusted(marker: Path, where: str) -> None:
    """The unsafe rule (trust what the file asks for, or any `numpy.` prefix) runs them."""
    data = cm.skops_gadget(marker, where)
    assert "numpy.testing._private.utils.runstring" in skops.io.get_untrusted_types(data=data)
    cm.live_skops(data)
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("protocol", [0, 1, 2, 5])
def test_live_pickles_run_when_unpickled(marker: Path, protocol: int) -> None:
    pickle.loads(cm.pickled(marker, protocol))  # noqa: S301 - the control: it must run
    assert marker.exists()


# --- skops files --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "pipeline", "column_transformer"])
def test_skops_gadget_is_refused_naming_the_type_and_never_runs(
    tmp_path: Path, marker: Path, where: str
) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(cm.skops_gadget(marker, where))
    with pytest.raises(UnsafeModel, match=r"numpy\.testing\._private\.utils\.runstring") as info:
        model_load.load_skops(path, str(path))
    assert "allow-list" in str(info.value)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_exec_gadget_is_refused(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(cm.skops_gadget(marker, "top", cm.EXEC))
    with pytest.raises(UnsafeModel, match=r"\['builtins\.exec'\]"):
        model_load.load_skops(path, "vendor file")
    assert not marker.exists()


def test_skops_is_given_the_packs_list_not_the_files(tmp_path: Path, marker: Path) -> None:
    """Even past the check (called directly), skops refuses a type outside ALLOWED_TYPES."""
    from skops.io.exceptions import UntrustedTypesFoundException

    data = cm.skops_gadget(marker, "pipeline")
    with pytest.raises(UntrustedTypesFoundException):
        skops.io.loads(data, trusted=sorted(ALLOWED_TYPES))
    assert not marker.exists()


def test_a_genuine_pipeline_loads_and_predicts_the_same(tmp_path: Path) -> None:
    pipe = cm.pipeline()
    path = tmp_path / "model.skops"
    skops.io.dump(pipe, path)
    loaded, needed = model_load.load_skops(path, "ok")
    X = cm.training_frame(20, seed=3)[["tenure", "monthly", "contract"]]
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert set(needed) <= ALLOWED_TYPES


# --- pickles, by content ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 5])
@pytest.mark.parametrize("name", ["model.skops", "model.json", "model.bin"])
def test_pickles_are_refused_in_every_protocol_under_any_name(
    tmp_path: Path, marker: Path, protocol: int, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(cm.pickled(marker, protocol))
    reason = model_safety.pickle_reason(path)
    assert reason is not None
    assert "protocol" in reason
    if protocol < 2:  # text opcodes: the imported global is named
        assert "exec" in reason
    with pytest.raises(UnsafeModel, match="pickle"):
        model_load.load_skops(path, str(path))
    assert not marker.exists()


def test_a_pickle_without_its_proto_header_is_refused(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(cm.pickled(marker, 4)[2:])  # PROTO stripped: pickle.load still runs it
    assert "STACK_GLOBAL" in (model_safety.pickle_reason(path) or "")


@pytest.mark.parametrize(
    ("wrap", "expected"),
    [
        (lambda data: cm.zipped("archive/data.pkl", data), "data.pkl"),
        (lambda data: cm.zipped("archive/data", data), "member archive/data is a pickle"),
        (cm.gzipped, "gzip-compressed a pickle"),
    ],
)
def test_wrapped_pickles_are_refused(tmp_path: Path, marker: Path, wrap, expected: str) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(wrap(cm.pickled(marker, 1)))
    with pytest.raises(UnsafeModel, match=expected):
        model_safety.refuse_pickle(path, "vendor file")
    assert not marker.exists()


def test_joblib_and_object_arrays_are_refused(tmp_path: Path) -> None:
    import joblib

    for compress in (0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)):
        path = tmp_path / "model.dat"
        joblib.dump({"a": np.arange(3)}, path, compress=compress)
        assert model_safety.pickle_reason(path), compress
    path = tmp_path / "arr.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "Python objects" in (model_safety.pickle_reason(path) or "")


def test_ordinary_model_files_are_not_taken_for_pickles(tmp_path: Path) -> None:
    model = cm.mlflow_dir(tmp_path / "model")
    assert [p.name for p in model.iterdir() if model_safety.pickle_reason(p)] == []
    for text in ("scikit-learn==1.9.1\nskops==0.16\n", "python: 3.11.7\n", "channels: []\n"):
        (tmp_path / "t.txt").write_text(text)
        assert model_safety.pickle_reason(tmp_path / "t.txt") is None
    np.save(tmp_path / "f.npy", np.arange(5.0))
    assert model_safety.pickle_reason(tmp_path / "f.npy") is None


# --- MLflow model directories -------------------------------------------------------------------


@pytest.mark.parametrize("case", cm.DIR_CASES)
def test_crafted_mlflow_directories_are_refused_and_never_run(
    tmp_path: Path, marker: Path, case: str
) -> None:
    path = cm.malicious_dir(tmp_path / "model", marker, case)
    with pytest.raises(UnsafeModel) as info:
        model_load.load_dir(path, "model churn version 7")
    text = str(info.value)
    assert text.startswith("model churn version 7")
    assert cm.DIR_REASONS[case] in text
    assert not marker.exists()


def test_a_crafted_directory_runs_its_payload_through_mlflows_own_loader(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: MLflow (its switch on, as before) runs the trusted_exec payload."""
    import mlflow.sklearn

    monkeypatch.setenv(model_safety.PICKLE_SWITCH, "true")
    path = cm.malicious_dir(tmp_path / "model", marker, "trusted_exec")
    mlflow.sklearn.load_model(str(path))
    assert marker.exists()


def test_mlflows_switch_is_off_after_a_load_and_refuses_pickles(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.sklearn
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv(model_safety.PICKLE_SWITCH, "true")
    model_load.load_dir(cm.mlflow_dir(tmp_path / "ok"), "ok")
    assert os.environ[model_safety.PICKLE_SWITCH] == "false"
    assert MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get() is False
    bad = cm.malicious_dir(tmp_path / "bad", marker, "pickle_format")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(str(bad))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["flavors"].update(statsmodels={"data": "m"}), "statsmodels flavor"),
        (
            lambda d: d["flavors"]["python_function"].update(loader_module="mlflow.pyfunc.model"),
            "loads through 'mlflow.pyfunc.model'",
        ),
        (
            lambda d: d["flavors"]["python_function"].update(model_code_path="m.py"),
            "runs Python code shipped with the model",
        ),
        (lambda d: d["flavors"].pop("python_function"), "no python_function flavor"),
        (
            lambda d: d["flavors"]["sklearn"].update(pickled_model="../../etc/passwd"),
            "not a path inside the model",
        ),
        (
            lambda d: d["flavors"]["python_function"].update(predict_fn="__reduce__"),
            "predict_fn '__reduce__'",
        ),
        (
            lambda d: d["flavors"].update(
                xgboost={"model_class": "subprocess.Popen", "model_format": "json", "data": "m"}
            ),
            "model_class: subprocess.Popen",
        ),
    ],
)
def test_mlmodel_settings_are_refused_by_name(tmp_path: Path, edit, expected: str) -> None:
    path = cm.mlflow_dir(tmp_path / "model")
    cm.edit_mlmodel(path, edit)
    with pytest.raises(UnsafeModel, match=expected.replace(".", r"\.").replace("(", r"\(")):
        model_safety.check_model_dir(path, "model m version 1")


def test_a_genuine_directory_loads_natively_and_as_pyfunc(tmp_path: Path) -> None:
    path = cm.mlflow_dir(tmp_path / "model")
    safe = model_load.load_dir(path, "ok")
    X = cm.training_frame(10, seed=4)[["tenure", "monthly", "contract"]]
    expected = cm.pipeline().predict_proba(X)
    np.testing.assert_allclose(safe.native.predict_proba(X), expected)
    np.testing.assert_allclose(np.asarray(safe.pyfunc().predict(X)), expected)


# --- the allow-list -----------------------------------------------------------------------------


def test_the_allow_list_is_exact_class_names_only() -> None:
    for name in ALLOWED_TYPES:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
    assert not any(n.startswith("builtins.") or n.endswith(".") for n in ALLOWED_TYPES)
    assert "numpy.testing._private.utils.runstring" not in ALLOWED_TYPES


def test_the_packs_own_pipelines_need_nothing_outside_the_list() -> None:
    """The shipped specs' estimators and every oversampler, fitted in the pack's pipeline."""
    from skops.io import dumps, get_untrusted_types

    from airmlops_core import settings
    from airmlops_core.spec import load_specs
    from airmlops_core.train import estimator as training

    frame = skops_allowlist.frame()
    cases = [
        (s.estimator.class_path, s.task, dict(s.estimator.params), None)
        for s in load_specs(settings.project_dir() / "include" / "models")[0].values()
        if s.estimator is not None
    ]
    cases += [("sklearn.linear_model.LogisticRegression", "binary", {}, r) for r in ("smote",)]
    cases += [("sklearn.linear_model.LogisticRegression", "binary", {}, "smote_nc")]
    for cls, task, params, rebalance in cases:
        params = {k: v for k, v in params.items() if k not in ("max_iter", "n_estimators")}
        pipe = training.fit(skops_allowlist.spec_for(cls, task, params, rebalance), frame)
        outside = set(get_untrusted_types(data=dumps(pipe))) - ALLOWED_TYPES
        assert not outside, (cls, rebalance, outside)


# --- onboarding sources -------------------------------------------------------------------------


def test_model_files_must_be_plain_files_inside_the_data_directory(tmp_path: Path) -> None:
    base = tmp_path / "data"
    (base / "vendor").mkdir(parents=True)
    (base / "vendor" / "m.skops").write_bytes(b"x")
    assert model_source.confined_path("vendor/m.skops", base) == base / "vendor" / "m.skops"
    assert model_source.confined_path(base / "vendor" / "m.skops", base) == (
        base / "vendor" / "m.skops"
    )
    outside = tmp_path / "m.skops"
    outside.write_bytes(b"x")
    os.symlink(outside, base / "link.skops")
    os.symlink(tmp_path, base / "dirlink")
    refused = {
        "../m.skops": "contains '..'",
        "vendor/../../m.skops": "contains '..'",
        str(outside): "outside the data directory",
        "/etc/passwd": "outside the data directory",
        "link.skops": "link.skops is a symlink",
        "dirlink/m.skops": "dirlink is a symlink",
        f"file://{base}/vendor/m.skops": "scheme 'file:'",
        "s3://bucket/m.skops": "scheme 's3:'",
        "https://example.invalid/m.skops": "scheme 'https:'",
    }
    for given, why in refused.items():
        with pytest.raises(UnsafeModel, match=why.replace(".", r"\.")):
            model_source.confined_path(given, base)


def test_model_uris_are_the_registry_or_a_local_path() -> None:
    assert model_source.registry_uri("runs:/abc/model")
    assert model_source.registry_uri("models:/m/1")
    assert not model_source.registry_uri("vendor/model_dir")
    for uri, scheme in (("s3://b/m", "s3:"), ("http://h/m", "http:"), ("file:///m", "file:")):
        with pytest.raises(UnsafeModel, match=f"scheme '{scheme}'"):
            model_source.registry_uri(uri)
    with pytest.raises(UnsafeModel, match="scheme 'runs:'"):
        model_source.registry_uri("runs:abc")


# --- one loader ---------------------------------------------------------------------------------


def test_every_model_load_goes_through_the_one_checked_loader() -> None:
    """No module of the pack deserializes a model except tracking/model_load.py."""
    import re

    from paths import PROJECT_DIR

    loads = re.compile(r"mlflow\.\w+\.load_model|skops\.io\.loads?\(|\bpyfunc\.load_model")
    allowed = PROJECT_DIR / "include" / "airmlops_core" / "tracking" / "model_load.py"
    hits = [
        f"{path.relative_to(PROJECT_DIR)}: {m.group(0)}"
        for root in ("include", "plugins", "dags")
        for path in sorted((PROJECT_DIR / root).rglob("*.py"))
        if path != allowed
        for m in loads.finditer(path.read_text())
    ]
    assert hits == []
    assert loads.search(allowed.read_text())
