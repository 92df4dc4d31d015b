"""The reference profile logged with every trained version: what drift checks compare against.

Features and label from the training fold, predictions from the holdout output, stored as an
artifact of the training run (monitoring/drift_reference.zip), so a check never depends on a
file that may have moved. Classifiers also get their holdout calibration
(monitoring/calibration.json, `stats.estimate.Calibration`): the drift DAG estimates
performance before labels only for a version whose holdout says its probabilities are
frequencies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from airmlops_core.errors import NoReference
from airmlops_core.io import scored
from airmlops_core.io.scored import PREDICTION
from airmlops_core.spec import ModelSpec
from airmlops_core.stats.estimate import CALIBRATION_ARTIFACT, Calibration, calibration
from airmlops_core.stats.metrics import encode_labels
from airmlops_core.stats.profile import PROFILE_ARTIFACT, ReferenceProfile, build_reference
from airmlops_core.stats.verdict import DriftConfig
from airmlops_core.train.estimator import feature_frame


def prediction_frame(spec: ModelSpec, model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """The model's output as the score DAG writes it: prediction (+ proba_<class>)."""
    if not spec.is_classifier:
        return pd.DataFrame({PREDICTION: model.predict(X)})
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    out = pd.DataFrame(proba, columns=scored.proba_names(classes))
    out[PREDICTION] = [classes[i] for i in proba.argmax(axis=1)]
    return out


def build_profile(
    spec: ModelSpec, train: pd.DataFrame, predictions: pd.DataFrame
) -> ReferenceProfile:
    """Features and label from the training fold; predictions from the holdout output."""
    feats = build_reference(
        train, numeric=spec.features.numeric, categorical=spec.features.categorical, role="feature"
    )
    label = build_reference(
        train.assign(**{spec.target: train[spec.target].astype("str")})
        if spec.is_classifier
        else train,
        numeric=[] if spec.is_classifier else [spec.target],
        categorical=[spec.target] if spec.is_classifier else [],
        role="label",
    )
    numeric = [c for c in predictions.columns if c != PREDICTION or not spec.is_classifier]
    preds = build_reference(
        predictions.assign(**{PREDICTION: predictions[PREDICTION].astype("str")})
        if spec.is_classifier
        else predictions,
        numeric=numeric,
        categorical=[PREDICTION] if spec.is_classifier else [],
        role="prediction",
    )
    return feats.merge(label).merge(preds)


def log_reference(
    spec: ModelSpec, model: Any, train: pd.DataFrame, holdout: pd.DataFrame
) -> ReferenceProfile:
    """Build the profile and log it to the active MLflow run (artifact PROFILE_ARTIFACT), with
    a classifier's holdout calibration (CALIBRATION_ARTIFACT)."""
    import mlflow

    predictions = prediction_frame(spec, model, feature_frame(spec, holdout))
    profile = build_profile(spec, train, predictions)
    with tempfile.TemporaryDirectory() as tmp:
        path = profile.save(Path(tmp) / PROFILE_ARTIFACT)
        mlflow.log_artifact(str(path), artifact_path="monitoring")
    if spec.is_classifier:
        classes = list(model.classes_)
        proba = predictions[scored.proba_names(classes)].to_numpy()
        log_calibration(calibration(encode_labels(holdout[spec.target], classes), proba))
    return profile


def log_calibration(calib: Calibration) -> None:
    """Log the holdout calibration to the active MLflow run: monitoring/CALIBRATION_ARTIFACT and
    the metrics holdout_calibration_ece, holdout_brier."""
    import mlflow

    mlflow.log_dict(calib.to_dict(), f"monitoring/{CALIBRATION_ARTIFACT}")
    mlflow.log_metrics({"holdout_calibration_ece": calib.ece, "holdout_brier": calib.brier})


def version_profile(client: Any, spec: ModelSpec, version: str) -> ReferenceProfile:
    """The reference profile logged with `version`'s training run.

    Raises:
        NoReference: the run has no profile (a version trained before it existed, or built
            elsewhere).
    """
    import mlflow

    mv = client.get_model_version(spec.name, version)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id,
                artifact_path=f"monitoring/{PROFILE_ARTIFACT}",
                dst_path=tmp,
                tracking_uri=client.tracking_uri,
            )
            return ReferenceProfile.load(local)
    except (OSError, mlflow.exceptions.MlflowException) as exc:
        raise NoReference(
            f"{spec.name} version {version} (run {mv.run_id}) has no reference "
            f"profile monitoring/{PROFILE_ARTIFACT}: retrain it with this "
            f"pack to monitor it ({exc})"
        ) from exc


def drift_config(spec: ModelSpec) -> DriftConfig:
    """The drift decision rule of the spec's `monitoring` section."""
    m = spec.monitoring
    return DriftConfig(
        fdr=m.fdr,
        min_rows=m.min_rows,
        min_wasserstein=m.min_wasserstein,
        min_psi=m.min_psi,
        min_js=m.min_js,
    )
