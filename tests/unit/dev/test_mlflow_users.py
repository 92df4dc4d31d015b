"""The model API's read-only MLflow user, on a real MLflow server configured as docker-compose.yml
configures its `mlflow` service (same flags, same basic_auth.ini), set up by the `mlflow-init`
service's own command and environment. Then the reader is attacked: everything the model API
needs works, every write it could try is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests
import yaml

from airmlops_core.tracking import model_load
from airmlops_dev import mlflow_users
from mlflow_server import SERVER_ENV, MlflowServer
from paths import PROJECT_DIR as ROOT

pytestmark = pytest.mark.integration

MODEL = "churn"
COMPOSE_URL = "http://mlflow:5000"
VAR_REF = re.compile(r"\$\{([A-Za-z_]\w*)(?::?[-?]([^}]*))?\}")
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
LOOPBACK_HOST = "127.0.0.1"


def _compose_services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]


def _substitute(text: str, values: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}, from ``values``."""
    return VAR_REF.sub(lambda m: values.get(m[1], m[2] or ""), text)


class ComposeMlflow(MlflowServer):
    """`mlflow server` with docker-compose.yml's flags and docker/mlflow/basic_auth.ini, on
    loopback, SQLite and local artifacts instead of PostgreSQL and S3."""

    name = "compose-mlflow"

    def __init__(self, root: Path, admin_password: str) -> None:
        super().__init__(root)
        self.admin_password = admin_password

    def prepare(self) -> None:
        super().prepare()
        ini = (ROOT / "docker" / "mlflow" / "basic_auth.ini").read_text(encoding="utf-8")
        ini, n = re.subn(
            r"^database_uri = .*$",
            f"database_uri = sqlite:///{self.base_dir / 'auth.db'}",
            ini,
            flags=re.M,
        )
        assert n == 1
        (self.base_dir / "basic_auth.ini").write_text(ini)

    def argv(self) -> list[str]:
        command = [str(a) for a in _compose_services()["mlflow"]["command"]]
        assert command[:2] == ["mlflow", "server"]
        local = {"--host": LOOPBACK_HOST, "--port": str(self.port), "--workers": "1"}
        argv = [str(Path(sys.executable).parent / "mlflow"), "server"]
        for arg in command[2:]:
            flag, eq, _ = arg.partition("=")
            if flag == "--artifacts-destination":
                continue  # S3 in compose; a local directory here (environment)
            argv.append(f"{flag}={local[flag]}" if eq and flag in local else arg)
        return argv

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in MLFLOW_ENV}
        return {
            **env,
            **SERVER_ENV,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.base_dir / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{self.db_path}",
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.base_dir / "artifacts"),
        }


class Registry(NamedTuple):
    url: str
    admin: tuple[str, str]
    reader: tuple[str, str]
    version: str


def run_mlflow_init(url: str, admin_password: str, reader_password: str) -> str:
    """docker-compose.yml's mlflow-init: its command and environment, against ``url``."""
    service = _compose_services()["mlflow-init"]
    values = {"MLFLOW_ADMIN_PASSWORD": admin_password, "MLFLOW_READER_PASSWORD": reader_password}
    env = {k: _substitute(str(v), values) for k, v in service["environment"].items()}
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"].replace(COMPOSE_URL, url)
    env["PYTHONPATH"] = str(ROOT / "dev")  # as in the container: the dev package only
    env["PATH"] = os.environ["PATH"]
    command = [str(a) for a in service["command"]]
    assert command[0] == "python"
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for password in (admin_password, reader_password):
        assert password not in result.stdout + result.stderr
    return result.stdout


def _as(user: tuple[str, str]) -> None:
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The compose MLflow with a champion the admin registered and the reader mlflow-init made."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    saved = {k: os.environ.get(k) for k in MLFLOW_ENV}
    admin = ("admin", "adm-" + secrets.token_urlsafe(18))
    reader = ("model-api", "rd1-" + secrets.token_urlsafe(18))
    with ComposeMlflow(tmp_path_factory.mktemp("compose-mlflow"), admin[1]) as server:
        try:
            out = run_mlflow_init(server.url, admin[1], reader[1])
            assert "reader 'model-api' created" in out
            _as(admin)  # the pack's tasks: train and register a champion
            mlflow.set_tracking_uri(server.url)
            # an earlier test's active experiment (mlflow keeps its id process-wide) does not
            # exist on this server
            mlflow.set_experiment("compose-reader-check")
            model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    registered_model_name=MODEL,
                    serialization_format="skops",
                )
            version = str(info.registered_model_version)
            mlflow.MlflowClient(server.url).set_registered_model_alias(MODEL, "champion", version)
            yield Registry(server.url, admin, reader, version)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _denied(action: Any) -> int:
    """The HTTP status MLflow refused ``action`` with (fails if it was allowed)."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as excinfo:
        action()
    match = re.search(r"error code (\d+)", str(excinfo.value))
    return int(match[1]) if match else excinfo.value.get_http_status_code()


def test_the_reader_loads_the_champion_like_the_model_api(
    registry: Registry, tmp_path: Path
) -> None:
    import mlflow

    _as(registry.reader)
    client = mlflow.MlflowClient(registry.url)
    mv = client.get_model_version_by_alias(MODEL, "champion")
    assert str(mv.version) == registry.version
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{MODEL}/{mv.version}",
        dst_path=str(tmp_path),
        tracking_uri=registry.url,
        registry_uri=registry.url,
    )
    # loaded as the model API loads it: the model-safety check, then skops with the pack's list
    model = model_load.load_dir(path, "the champion").pyfunc()
    assert list(model.predict([[0.0], [3.0]])) == [0, 1]
    assert client.get_run(mv.run_id).info.run_id == mv.run_id  # lineage is readable


def test_the_reader_cannot_change_or_create_anything(registry: Registry) -> None:
    import mlflow

    _as(registry.reader)
    client = mlflow.MlflowClient(registry.url)
    run_id = client.get_model_version(MODEL, registry.version).run_id
    experiment_id = client.get_run(run_id).info.experiment_id
    attempts = {
        "move the champion alias": lambda: client.set_registered_model_alias(
            MODEL, "champion", registry.version
        ),
        "delete the alias": lambda: client.delete_registered_model_alias(MODEL, "champion"),
        "tag the version": lambda: client.set_model_version_tag(
            MODEL, registry.version, "gate.decision", "promote"
        ),
        "delete the version": lambda: client.delete_model_version(MODEL, registry.version),
        "register a version": lambda: client.create_model_version(MODEL, "runs:/x/model", run_id),
        # a model no spec has registered yet: its creator would own it and set its champion
        "squat a new registered model": lambda: client.create_registered_model("not_yet_trained"),
        "create an experiment": lambda: client.create_experiment("reader-experiment"),
        "create a run": lambda: client.create_run(experiment_id),
        "log to the champion's run": lambda: client.log_param(run_id, "tampered", "1"),
    }
    statuses = {name: _denied(action) for name, action in attempts.items()}
    assert set(statuses.values()) == {403}, statuses
    assert client.get_registered_model(MODEL).aliases == {"champion": registry.version}
    search = client.search_registered_models()
    assert [m.name for m in search] == [MODEL]  # nothing was created


def test_the_reader_cannot_give_itself_rights(registry: Registry) -> None:
    url = registry.url
    user = registry.reader[0]
    for path, body in (
        ("/api/2.0/mlflow/users/update-admin", {"username": user, "is_admin": True}),
        ("/api/2.0/mlflow/users/create", {"username": "mine", "password": "p" * 16}),
        (
            "/api/3.0/mlflow/users/permissions/grant",
            {
                "username": user,
                "resource_type": "registered_model",
                "resource_id": "*",
                "permission": "MANAGE",
            },
        ),
    ):
        method = requests.patch if "update-admin" in path else requests.post
        resp = method(url + path, json=body, auth=registry.reader, timeout=30)
        assert resp.status_code == 403, (path, resp.status_code, resp.text[:200])
    search = f"{url}/api/2.0/mlflow/registered-models/search"
    assert requests.get(search, timeout=30).status_code == 401
    wrong = (user, "wrong-" + registry.reader[1])
    assert requests.get(search, auth=wrong, timeout=30).status_code == 401


def test_mlflow_init_rotates_the_password_and_undoes_drift(registry: Registry) -> None:
    """A rerun (every `docker compose up`) applies a rotated password and puts the reader back
    to exactly READ, whatever was granted to it meanwhile."""
    from mlflow.server.auth.client import AuthServiceClient

    _as(registry.admin)
    admin = AuthServiceClient(registry.url)
    user = registry.reader[0]
    admin.revoke_user_permission(user, "registered_model", "*")
    admin.grant_user_permission(user, "registered_model", "*", "MANAGE")
    admin.update_user_admin(user, True)
    search = f"{registry.url}/api/2.0/mlflow/registered-models/search"
    # the server remembers a verified credential (auth_cache_ttl_seconds): warm it, then rotate
    assert requests.get(search, auth=registry.reader, timeout=30).status_code == 200
    new_password = "rd2-" + secrets.token_urlsafe(18)
    out = run_mlflow_init(registry.url, registry.admin[1], new_password)
    assert "reader 'model-api' updated" in out
    assert "demoted: model-api" in out
    assert "revoked: MANAGE registered_model *" in out
    assert "granted: READ registered_model *" in out
    grants = {
        (g["resource_type"], g["resource_pattern"], g["permission"])
        for g in mlflow_users.list_permissions(registry.url, user)
    }
    assert grants == {("registered_model", "*", "READ"), ("experiment", "*", "READ")}
    assert requests.get(search, auth=registry.reader, timeout=30).status_code == 401  # old one
    assert requests.get(search, auth=(user, new_password), timeout=30).status_code == 200
    alias = f"{registry.url}/api/2.0/mlflow/registered-models/alias"
    body = {"name": MODEL, "alias": "champion", "version": registry.version}
    assert requests.post(alias, json=body, auth=(user, new_password), timeout=30).status_code == (
        403
    )
    # the other tests keep using the reader: give it its first password back
    run_mlflow_init(registry.url, registry.admin[1], registry.reader[1])


def test_mlflow_init_refuses_the_admins_name_and_missing_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in (*MLFLOW_ENV, "MLFLOW_READER_USER", "MLFLOW_READER_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    assert mlflow_users.main([]) == 2
    assert "MLFLOW_READER_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password-x")
    monkeypatch.setenv("MLFLOW_READER_USER", "admin")
    monkeypatch.setenv("MLFLOW_READER_PASSWORD", "reader-password-x")
    assert mlflow_users.main([]) == 2
    assert "the admin's name" in capsys.readouterr().err
