"""Build-time metrics and evaluation plots for a fitted model on a holdout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from airmlops_core.spec import LOWER_IS_BETTER, ModelSpec
from airmlops_core.train.estimator import feature_frame


def classification_metrics(y_true: Any, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, F1, accuracy and log loss; binary metrics use the second class as positive.

    Multiclass: one-vs-rest macro ROC AUC, macro F1, macro-averaged PR AUC.
    """
    y = np.asarray(y_true)
    pred = classes[np.argmax(proba, axis=1)]
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }
    if len(classes) == 2:
        pos = proba[:, 1]
        y_pos = (y == classes[1]).astype(int)
        out["roc_auc"] = skm.roc_auc_score(y_pos, pos) if 0 < y_pos.sum() < len(y_pos) else math.nan
        out["pr_auc"] = skm.average_precision_score(y_pos, pos)
        out["f1"] = skm.f1_score(y_pos, (pred == classes[1]).astype(int))
    else:
        out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
        onehot = (y[:, None] == classes[None, :]).astype(int)
        out["pr_auc"] = skm.average_precision_score(onehot, proba, average="macro")
        out["f1"] = skm.f1_score(y, pred, average="macro")
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: Any, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R2."""
    y = np.asarray(y_true, dtype="float64")
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": float(skm.r2_score(y, pred)),
    }


def evaluate(spec: ModelSpec, model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    """The spec's task metrics of `model` on `holdout`."""
    return evaluate_xy(spec, model, feature_frame(spec, holdout), holdout[spec.target])


def evaluate_xy(spec: ModelSpec, model: Any, X: pd.DataFrame, y: Any) -> dict[str, float]:
    """The spec's task metrics of `model` on input columns `X` (`feature_frame`) and labels `y`."""
    if spec.is_classifier:
        return classification_metrics(y, model.predict_proba(X), np.asarray(model.classes_))
    return regression_metrics(y, model.predict(X))


def floor_failures(spec: ModelSpec, metrics: dict[str, float]) -> list[str]:
    """Human-readable reasons each metric floor is missed (empty when all pass)."""
    failures = []
    for name, floor in spec.metrics.floors.items():
        value = metrics.get(name, math.nan)
        ok = value <= floor if name in LOWER_IS_BETTER else value >= floor
        if not ok or math.isnan(value):
            op = "<=" if name in LOWER_IS_BETTER else ">="
            failures.append(f"{name}={value:.4f} misses the floor {op} {floor}")
    return failures


def plots(spec: ModelSpec, model: Any, holdout: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write evaluation plots (ROC + confusion matrix, or residuals) as PNGs; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    out_dir.mkdir(parents=True, exist_ok=True)
    X = feature_frame(spec, holdout)
    y = holdout[spec.target].to_numpy()
    paths: list[Path] = []
    if spec.is_classifier:
        classes = np.asarray(model.classes_)
        proba = model.predict_proba(X)
        if len(classes) == 2:
            fig, ax = plt.subplots(figsize=(5, 4))
            RocCurveDisplay.from_predictions(y == classes[1], proba[:, 1], ax=ax, name=spec.name)
            ax.set_title(f"{spec.name}: ROC on holdout")
            paths.append(save_figure(fig, out_dir / "roc_curve.png"))
        fig, ax = plt.subplots(figsize=(5, 4))
        ConfusionMatrixDisplay.from_predictions(y, classes[np.argmax(proba, axis=1)], ax=ax)
        ax.set_title(f"{spec.name}: confusion matrix")
        paths.append(save_figure(fig, out_dir / "confusion_matrix.png"))
    else:
        pred = model.predict(X)
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        axes[0].scatter(pred, y - pred, s=4, alpha=0.3)
        axes[0].axhline(0, color="black", lw=1)
        axes[0].set_xlabel("predicted")
        axes[0].set_ylabel("residual")
        axes[1].hist(y - pred, bins=50)
        axes[1].set_xlabel("residual")
        fig.suptitle(f"{spec.name}: residuals on holdout")
        paths.append(save_figure(fig, out_dir / "residuals.png"))
    return paths


def save_figure(fig: Any, path: Path) -> Path:
    """Write `fig` as the evaluation plots are written (tight layout, 90 dpi) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
