"""`estimator.class` must name a scikit-learn estimator class: any other callable is refused
before it is called, so a spec cannot run a command through `estimator.params`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airmlops_core.errors import EstimatorError
from airmlops_core.spec import load_spec
from airmlops_core.train import estimator as training
from paths import PROJECT_DIR as PROJECT

CHURN_SPEC = PROJECT / "include" / "models" / "customer_churn.yaml"

HELPERS = '''
from pathlib import Path

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


def make(path):
    Path(path).write_text("a function ran")


class Plain:
    def __init__(self, path):
        Path(path).write_text("a class was instantiated")

    def fit(self, x, y):
        return self

    def predict(self, x):
        return x


class Custom(ClassifierMixin, BaseEstimator):
    """A user's own estimator: a BaseEstimator subclass, accepted."""

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, x, y):
        self.model_ = LogisticRegression(C=self.C).fit(x, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, x):
        return self.model_.predict(x)
'''


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the user's own (a function, a plain class, an estimator) on sys.path."""
    name = f"user_objects_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def with_estimator(cls: str, params: dict[str, object]):
    spec = load_spec(CHURN_SPEC)
    return spec.model_copy(
        update={
            "estimator": spec.estimator.model_copy(update={"class_path": cls, "params": params})
        }
    )


def test_the_hostile_params_do_run_a_command_when_called(tmp_path: Path) -> None:
    """The control: what the refused specs below would do if the class were called."""
    marker = tmp_path / "ran"
    subprocess.Popen(args=["touch", str(marker)]).wait()
    assert marker.exists()


@pytest.mark.parametrize(
    ("dotted", "params", "kind"),
    [
        ("subprocess.Popen", {"args": ["touch", "{marker}"]}, "is a class but not"),
        ("os.system", {"command": "touch {marker}"}, "is a builtin function"),
        ("builtins.eval", {}, "is a builtin function"),
        ("{helpers}.make", {"path": "{marker}"}, "is a function"),
        ("{helpers}.Plain", {"path": "{marker}"}, "is a class but not a scikit-learn estimator"),
        ("os.path", {}, "is a module object"),
    ],
)
def test_a_callable_that_is_not_an_estimator_class_is_refused_before_it_runs(
    helpers: str, tmp_path: Path, dotted: str, params: dict[str, object], kind: str
) -> None:
    marker = tmp_path / "ran"
    dotted = dotted.format(helpers=helpers)
    filled = {
        k: [a.format(marker=marker) for a in v]
        if isinstance(v, list)
        else str(v).format(marker=marker)
        for k, v in params.items()
    }
    spec = with_estimator(dotted, filled)
    with pytest.raises(EstimatorError) as info:
        training.build_pipeline(spec)
    message = str(info.value)
    assert message.startswith(f"estimator.class: '{dotted}' ")
    assert kind in message
    assert "sklearn.base.BaseEstimator" in message
    assert not marker.exists()


def test_an_estimator_class_of_the_users_own_is_accepted(helpers: str) -> None:
    est = training.build_estimator(with_estimator(f"{helpers}.Custom", {"C": 0.5}))
    assert type(est).__name__ == "Custom"
    assert est.C == 0.5
    assert training.estimator_class("sklearn.ensemble.RandomForestClassifier").__name__ == (
        "RandomForestClassifier"
    )


def test_validate_deep_reports_the_refused_class_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    models = tmp_path / "models"
    models.mkdir()
    raw = yaml.safe_load(CHURN_SPEC.read_text())
    raw["estimator"] = {"class": "subprocess.Popen", "params": {"args": ["touch", str(marker)]}}
    (models / "customer_churn.yaml").write_text(yaml.safe_dump(raw))
    shallow = subprocess.run(
        [sys.executable, "-m", "airmlops_core.cli", "validate", "--models-dir", str(models)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shallow.returncode == 0, shallow.stderr  # the schema alone cannot tell
    deep = subprocess.run(
        [
            sys.executable,
            "-m",
            "airmlops_core.cli",
            "validate",
            "--deep",
            "--models-dir",
            str(models),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert deep.returncode == 1
    assert (
        f"{models}/customer_churn.yaml: estimator.class: 'subprocess.Popen' is a class but not "
        "a scikit-learn estimator"
    ) in deep.stderr
    assert "0 valid, 1 invalid" in deep.stdout
    assert not marker.exists()
