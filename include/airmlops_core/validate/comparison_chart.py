"""The gate's champion-versus-challenger picture, logged with the validate run.

Left: both ROC curves on the same holdout (binary models; other tasks get the right panel
only). Right: the paired bootstrap distribution of the challenger's improvement, the very
resamples the gate's interval comes from (`stats.comparison.paired_differences` with the
gate's seed and count), with the interval, the margin and zero marked.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from airmlops_core.stats import comparison

CHART_ARTIFACT_DIR = "plots"
CHART_NAME = "champion_vs_challenger.png"
CHAMPION_COLOUR = "#0969da"
CHALLENGER_COLOUR = "#cf222e"
BOOTSTRAP_COLOUR = "#8250df"


def artifact_path() -> str:
    """Where the chart sits among the validate run's artifacts."""
    return f"{CHART_ARTIFACT_DIR}/{CHART_NAME}"


def artifact_url(run_url: str) -> str:
    """The chart in the MLflow UI: the run page's artifact view of it."""
    return f"{run_url.rstrip('/')}/artifacts/{artifact_path()}"


def plot(
    y: Any,
    champion_out: Any,
    challenger_out: Any,
    comp: comparison.Comparison,
    *,
    binary: bool,
    n_boot: int,
    seed: int,
    title: str,
    out_dir: Path,
) -> Path:
    """Write the chart as `out_dir`/CHART_NAME and return its path.

    Args:
        y: The holdout's encoded targets.
        champion_out: The champion's output (P(positive) for a binary model).
        challenger_out: The challenger's output, same rows.
        comp: The gate's comparison (its interval gives the metric, count and bounds).
        binary: Draw the ROC panel (outputs are P(positive)).
        n_boot: The number of resamples the gate drew.
        seed: The seed the gate resampled with.
        title: The figure's title.
        out_dir: Where to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iv = comp.interval
    diffs = comparison.paired_differences(
        y, champion_out, challenger_out, iv.metric, n_boot=n_boot, seed=seed
    )
    panels = 2 if binary else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.8), squeeze=False)
    if binary:
        _roc_panel(axes[0][0], y, champion_out, challenger_out)
    _bootstrap_panel(axes[0][-1], diffs, comp)
    fig.suptitle(title)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHART_NAME
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _roc_panel(ax: Any, y: Any, champion_out: Any, challenger_out: Any) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    for label, out, colour in (
        ("champion", champion_out, CHAMPION_COLOUR),
        ("challenger", challenger_out, CHALLENGER_COLOUR),
    ):
        fpr, tpr, _ = roc_curve(y, out)
        auc = roc_auc_score(y, out)
        ax.plot(fpr, tpr, color=colour, linewidth=2.5, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="#8c959f", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the same holdout")
    ax.legend(loc="lower right")


def _bootstrap_panel(ax: Any, diffs: np.ndarray, comp: comparison.Comparison) -> None:
    iv = comp.interval
    ax.hist(diffs, bins=40, color=BOOTSTRAP_COLOUR)
    ax.axvspan(iv.low, iv.high, color=BOOTSTRAP_COLOUR, alpha=0.12)
    ax.axvline(0.0, color="#24292f", linewidth=1)
    ax.axvline(comp.margin, color=CHALLENGER_COLOUR, linestyle="--", linewidth=1.5)
    ax.set_xlabel(f"challenger - champion {iv.metric} (positive: challenger better)")
    ax.set_ylabel("resamples")
    ax.set_title(
        f"{iv.n_boot} paired resamples\n{iv.level:.0%} interval "
        f"[{iv.low:+.4f}, {iv.high:+.4f}], margin {comp.margin:g}"
    )


def log_chart(
    y: Any,
    out_champ: Any,
    out_chall: Any,
    comp: comparison.Comparison,
    *,
    binary: bool,
    n_boot: int,
    seed: int,
    title: str,
    run_id: str,
    tracking_uri: str,
) -> str:
    """Draw the chart, log it to the active validate run `run_id`; its URL in the MLflow UI."""
    import mlflow

    from airmlops_core.tracking import runs as tracking

    with tempfile.TemporaryDirectory() as tmp:
        path = plot(
            y,
            out_champ,
            out_chall,
            comp,
            binary=binary,
            n_boot=n_boot,
            seed=seed,
            title=title,
            out_dir=Path(tmp),
        )
        mlflow.log_artifact(str(path), artifact_path=CHART_ARTIFACT_DIR)
    run = mlflow.get_run(run_id)
    return artifact_url(tracking.run_url(tracking_uri, run.info.experiment_id, run_id))
