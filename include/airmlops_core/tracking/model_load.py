"""The one way the pack loads a model: download, check the very bytes, then deserialize.

`load_dir` runs `model_safety.check_model_dir` on the local files about to be loaded, turns
MLflow's pickle switch off in this process (`model_safety.forbid_pickle`), and loads the sklearn
flavor with skops itself, passing the pack's allow-list (`ALLOWED_TYPES`), never the
`skops_trusted_types` of the model's own MLmodel file (MLflow's sklearn loader would, and with
the switch off refuses to load at all). Other checked flavors load through `mlflow.pyfunc`.
`load_version` and `load_uri` download first; `check_version` checks without loading (rollback
targets, a future environment promotion). A registry tag proves nothing: every load checks.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airmlops_core.errors import ModelLoadError, UnsafeModel
from airmlops_core.tracking import model_safety
from airmlops_core.tracking.model_safety import ALLOWED_TYPES, CheckedModel

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def version_label(name: str, version: str | int) -> str:
    """How messages name a registered version."""
    return f"model {name} version {version}"


class SkopsPyfunc:
    """The pyfunc implementation of a checked sklearn model (what `mlflow.pyfunc` calls)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        for fn in ("predict_proba", "predict_log_proba"):
            if hasattr(estimator, fn):
                setattr(self, fn, getattr(estimator, fn))

    def get_raw_model(self) -> Any:
        """The scikit-learn estimator."""
        return self.estimator

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The estimator's predict."""
        return self.estimator.predict(data)


@dataclass(frozen=True)
class SafeModel:
    """A checked and loaded model: its MLflow metadata and, for sklearn, the estimator."""

    checked: CheckedModel
    meta: Any  # mlflow.models.Model
    native: Any  # the scikit-learn estimator, None for another flavor

    def pyfunc(self) -> Any:
        """The model as an `mlflow.pyfunc.PyFuncModel` (signature enforcement in predict)."""
        import mlflow.pyfunc

        if self.native is not None:
            return mlflow.pyfunc.PyFuncModel(
                model_meta=self.meta,
                model_impl=SkopsPyfunc(self.native),
                predict_fn=self.checked.predict_fn,
            )
        model_safety.forbid_pickle()
        return mlflow.pyfunc.load_model(str(self.checked.path))


def load_skops(path: Path, where: str) -> tuple[Any, list[str]]:
    """Check and load a skops file with the pack's allow-list.

    Returns:
        (the object, the types beyond skops' defaults it needed).

    Raises:
        UnsafeModel: see model_safety.skops_types.
    """
    import skops.io

    needed = model_safety.skops_types(path, where)
    try:
        return skops.io.load(str(path), trusted=sorted(ALLOWED_TYPES)), needed
    except Exception as exc:  # noqa: BLE001 - a file skops cannot rebuild
        raise UnsafeModel(
            f"{where}: refused, skops could not load it: {type(exc).__name__}: {exc}"
        ) from exc


def load_dir(path: str | Path, where: str) -> SafeModel:
    """Check the MLflow model directory at `path`, then load it (module docstring).

    Raises:
        UnsafeModel: the check failed, naming `where` and why; nothing was deserialized.
    """
    from mlflow.models import Model

    model_safety.forbid_pickle()
    checked = model_safety.check_model_dir(path, where)
    native = None
    if checked.skops_file is not None:
        native, _ = load_skops(checked.skops_file, where)
    meta = Model.load(str(Path(path) / "MLmodel"))
    log.info("%s: passed the model-safety check (%s)", where, ", ".join(checked.flavors))
    return SafeModel(checked=checked, meta=meta, native=native)


def download_version(client: MlflowClient, name: str, version: str | int, dst: Path) -> Path:
    """Download one registered version's files into `dst` (through `client`'s server).

    Raises:
        ModelLoadError: the version does not exist or cannot be downloaded.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
        # resolved through this client: MLflow resolves a models:/ URI against the
        # process-wide registry URI whatever tracking_uri is passed
        source = client.get_model_version_download_uri(name, str(version))
    except MlflowException as exc:
        raise ModelLoadError(
            f"{version_label(name, version)} is not in the registry at "
            f"{client.tracking_uri}: {exc.message}"
        ) from exc
    got = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(dst), tracking_uri=client.tracking_uri
    )
    return Path(got)


def load_version(client: MlflowClient, name: str, version: str | int) -> SafeModel:
    """Download, check and load one registered version.

    Raises:
        ModelLoadError: not found or not downloadable. UnsafeModel: refused (named).
    """
    with tempfile.TemporaryDirectory(prefix="airmlops-model-") as tmp:
        local = download_version(client, name, version, Path(tmp))
        return load_dir(local, version_label(name, version))


def check_version(client: MlflowClient, name: str, version: str | int) -> CheckedModel:
    """Download one registered version and run the model-safety check, loading nothing.

    Raises:
        ModelLoadError: not found or not downloadable. UnsafeModel: refused (named).
    """
    with tempfile.TemporaryDirectory(prefix="airmlops-check-") as tmp:
        local = download_version(client, name, version, Path(tmp))
        return model_safety.check_model_dir(local, version_label(name, version))


def load_uri(uri: str, tracking_uri: str, where: str | None = None) -> SafeModel:
    """Download, check and load the MLflow model at `uri` (runs:/, models:/, a logged model).

    Raises:
        UnsafeModel: refused (named).
    """
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="airmlops-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        return load_dir(local, where or uri)
