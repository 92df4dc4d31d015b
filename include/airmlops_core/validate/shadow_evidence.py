"""Production evidence of a challenger scored in the shadow of the champion.

With `promotion.shadow_runs: N`, a challenger that passes the holdout gate is not promoted
yet: the gate gives it the alias `shadow` and waits (`start_wait`). Every score run then also
scores its partitions with that version into `<scoring.output>/_shadow/v<version>/...`
(`score.shadow`) and tags its MLflow score run with the shadow version, the shadow manifest
and whether every partition was shadow-scored. After N such runs the score DAG emits the
candidate Asset again, and the gate reads the outputs back (`gather`): for the same rows of
the same runs,

- `agreement`: the share of rows whose hard predictions are equal (classifiers);
- `mean_abs_diff`: the mean absolute difference of the class probabilities (classifiers,
  over every class column) or of the predictions (regression);
- prediction drift of the challenger's shadow output against its own holdout reference
  profile (`stats.drift`; evidence, not a blocking check);
- where labels have landed for those rows (`io.labels`), the paired comparison of champion
  and challenger on them (`stats.comparison.compare`, the holdout's machinery).

`ShadowEvidence.blocking` says what rejects: agreement below `promotion.shadow_min_agreement`,
or a paired interval on the production rows that lies wholly below zero (worse).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from airmlops_core.errors import DataError, NoReference
from airmlops_core.io import data
from airmlops_core.io.scored import PREDICTION, PROBA_PREFIX, ROW_INDEX, proba_names
from airmlops_core.spec import ModelSpec
from airmlops_core.stats import comparison, drift
from airmlops_core.stats.comparison import Comparison
from airmlops_core.stats.metrics import encode_labels
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import TAG_PREFIX, experiment_name
from airmlops_core.train import reference

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# tags of a score run that scored a shadow version
SHADOW_VERSION_TAG = f"{TAG_PREFIX}shadow_version"
SHADOW_STATUS_TAG = f"{TAG_PREFIX}shadow_status"  # COMPLETE, or "failed"
SHADOW_MANIFEST_TAG = f"{TAG_PREFIX}shadow_manifest_uri"
MANIFEST_TAG = f"{TAG_PREFIX}manifest_uri"  # the production manifest (score.flow.publish_step)
COMPLETE = "complete"
# tags of the waiting version
WAITING_TAG = f"{TAG_PREFIX}shadow_waiting"  # "<runs done>/<runs needed>", then "done"
HANDOFF_TAG = f"{TAG_PREFIX}shadow_handoff"  # the score run that emitted the candidate again
MIN_LABELLED_ROWS = 30
"""Fewer labelled production rows than this: no paired comparison (too few to say worse)."""


class ShadowRun(TypedDict):
    """One finished score run that shadow-scored every partition it scored."""

    run_id: str
    manifest_uri: str
    shadow_manifest_uri: str


def completed_runs(client: Any, model: str, version: str) -> list[ShadowRun]:
    """The finished score runs that shadow-scored `version` completely, oldest first."""
    if not str(version).isdigit():
        raise ValueError(f"'{version}' is not a model version number")
    exp = client.get_experiment_by_name(experiment_name(model))
    if exp is None:
        return []
    flt = (
        f"tags.`{SHADOW_VERSION_TAG}` = '{version}' and tags.`{SHADOW_STATUS_TAG}` = "
        f"'{COMPLETE}' and attributes.status = 'FINISHED'"
    )
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=flt,
        max_results=1000,
        order_by=["attributes.start_time ASC"],
    )
    return [
        {
            "run_id": r.info.run_id,
            "manifest_uri": r.data.tags[MANIFEST_TAG],
            "shadow_manifest_uri": r.data.tags[SHADOW_MANIFEST_TAG],
        }
        for r in found
        if MANIFEST_TAG in r.data.tags and SHADOW_MANIFEST_TAG in r.data.tags
    ]


# --------------------------------------------------------------------------------------------
# The figures (pure)


def agreement(champion_pred: Any, challenger_pred: Any) -> float:
    """The share of rows whose hard predictions are equal (compared as text, so 1 == "1").

    Raises:
        ValueError: different lengths, or no rows.
    """
    a = np.asarray(champion_pred).astype(str)
    b = np.asarray(challenger_pred).astype(str)
    if a.shape != b.shape or not a.size:
        raise ValueError(f"agreement needs two equal, non-empty arrays (got {a.shape}, {b.shape})")
    return float(np.mean(a == b))


def mean_abs_difference(champion_out: Any, challenger_out: Any) -> float:
    """Mean absolute difference of two outputs (vectors, or probability matrices cell by cell).

    Raises:
        ValueError: different shapes, or no rows.
    """
    a = np.asarray(champion_out, dtype=float)
    b = np.asarray(challenger_out, dtype=float)
    if a.shape != b.shape or not a.size:
        raise ValueError(f"two equal, non-empty outputs needed (got {a.shape}, {b.shape})")
    return float(np.mean(np.abs(a - b)))


def metric_output(spec: ModelSpec, frame: pd.DataFrame, classes: list[Any]) -> np.ndarray:
    """What the gate's metric reads from a scored output: P(positive) (binary), the probability
    matrix (multiclass) or the prediction (regression)."""
    if spec.task == "binary":
        return frame[proba_names(classes)[1]].to_numpy(dtype=float)
    if spec.task == "multiclass":
        return frame[proba_names(classes)].to_numpy(dtype=float)
    return frame[PREDICTION].to_numpy(dtype=float)


def production_comparison(
    spec: ModelSpec,
    classes: list[Any],
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    labels: pd.DataFrame,
) -> tuple[Comparison | None, int]:
    """The paired comparison (stats.comparison.compare, the gate's settings) on the shadowed
    rows whose labels have landed (`labels`: row key and target, `io.labels.read_labels`), and
    how many there were (None below MIN_LABELLED_ROWS)."""
    if not spec.row_key or labels.empty:
        return None, 0
    keyed = champion[[spec.row_key]].reset_index(names="_pos")
    rows = keyed.merge(labels, on=spec.row_key, how="inner").sort_values("_pos")
    if len(rows) < MIN_LABELLED_ROWS:
        return None, len(rows)
    pos = rows["_pos"].to_numpy()
    y_raw = rows[spec.target].to_numpy()
    y = encode_labels(y_raw, classes) if spec.is_classifier else y_raw
    comp = comparison.compare(
        y,
        metric_output(spec, champion.iloc[pos], classes),
        metric_output(spec, challenger.iloc[pos], classes),
        spec.gate_metric,
        margin=spec.promotion.margin,
        n_boot=spec.promotion.n_boot,
        level=spec.promotion.level,
        seed=spec.split.seed,
    )
    return comp, len(rows)


# --------------------------------------------------------------------------------------------
# The evidence and what it blocks


@dataclass(frozen=True)
class ShadowEvidence:
    """The production evidence of one shadowed challenger (JSON-able via `to_dict`)."""

    runs: int
    rows: int
    agreement: float | None
    mean_abs_diff: float | None
    min_agreement: float | None
    drift: dict[str, Any] | None
    comparison: Comparison | None
    labelled_rows: int
    notes: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[str]:
        """Why the evidence rejects the challenger (empty: it does not)."""
        out = []
        if self.rows == 0:
            out.append(
                f"shadow: no production row was scored by both champion and challenger in "
                f"{self.runs} shadow run(s)"
            )
        if (
            self.min_agreement is not None
            and self.agreement is not None
            and self.agreement < self.min_agreement
        ):
            out.append(
                f"shadow: agreement with the champion {self.agreement:.4f} on {self.rows:,} "
                f"production rows is below promotion.shadow_min_agreement {self.min_agreement:g}"
            )
        if self.comparison is not None and self.comparison.interval.high < 0:
            out.append(
                f"shadow: on {self.labelled_rows:,} labelled production rows "
                f"{self.comparison.reason}"
            )
        return out

    @property
    def passed(self) -> bool:
        return not self.blocking

    def summary(self) -> str:
        """One sentence with every figure."""
        parts = [f"{self.runs} shadow run(s), {self.rows:,} production rows"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.4f}")
        if self.mean_abs_diff is not None:
            parts.append(f"mean absolute difference {self.mean_abs_diff:.4g}")
        if self.drift is not None:
            parts.append(f"prediction drift vs its holdout: {self.drift['status']}")
        if self.comparison is not None:
            iv = self.comparison.interval
            parts.append(
                f"{iv.metric} on {self.labelled_rows:,} labelled rows {iv.diff:+.4g} "
                f"({100 * iv.level:g}% CI {iv.low:.4g} to {iv.high:.4g})"
            )
        else:
            parts.append(f"{self.labelled_rows:,} labelled rows (no paired comparison)")
        return "shadow: " + ", ".join(parts)

    def reasons(self) -> list[str]:
        return self.blocking or [self.summary()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "rows": self.rows,
            "agreement": self.agreement,
            "mean_abs_diff": self.mean_abs_diff,
            "min_agreement": self.min_agreement,
            "drift": self.drift,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "labelled_rows": self.labelled_rows,
            "notes": list(self.notes),
            "passed": self.passed,
        }

    def metrics(self) -> dict[str, float]:
        """The figures as MLflow metrics (shadow.*)."""
        out = {"shadow.runs": float(self.runs), "shadow.rows": float(self.rows)}
        out["shadow.labelled_rows"] = float(self.labelled_rows)
        if self.agreement is not None:
            out["shadow.agreement"] = self.agreement
        if self.mean_abs_diff is not None:
            out["shadow.mean_abs_diff"] = self.mean_abs_diff
        if self.comparison is not None:
            iv = self.comparison.interval
            out |= {
                "shadow.improvement": iv.diff,
                "shadow.improvement_ci_low": iv.low,
                "shadow.improvement_ci_high": iv.high,
            }
        return out


# --------------------------------------------------------------------------------------------
# Reading the shadow runs back


def _manifest(uri: str, s3_client: Any) -> dict[str, Any]:
    return dict(json.loads(data.read_bytes(uri, s3_client=s3_client)))


def _outputs(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    cols = [key, PREDICTION, *sorted(c for c in frame.columns if c.startswith(PROBA_PREFIX))]
    return frame[[c for c in cols if c in frame.columns]]


def paired_outputs(
    spec: ModelSpec, runs: list[ShadowRun], *, s3_client: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The champion's and the challenger's outputs of the same rows, aligned by position, and
    the partitions left out (why). Both outputs of a partition come from the same input file
    in the same order; a pair whose key columns differ is left out, never re-matched."""
    import pandas as pd

    key = spec.row_key or ROW_INDEX
    champs, challs, skipped = [], [], []
    for run in runs:
        try:
            prod = _manifest(run["manifest_uri"], s3_client)
            shadow = _manifest(run["shadow_manifest_uri"], s3_client)
        except (DataError, ValueError) as exc:
            skipped.append(f"run {run['run_id']}: {exc}")
            continue
        prod_out = {
            p["partition"]: p["output_uri"] for p in prod["partitions"] if p["status"] == "scored"
        }
        for part in shadow["partitions"]:
            name = part["partition"]
            if part["status"] != "scored" or name not in prod_out:
                continue
            try:
                champ = _outputs(data.read_frame(prod_out[name], s3_client=s3_client), key)
                chall = _outputs(data.read_frame(part["output_uri"], s3_client=s3_client), key)
            except DataError as exc:
                skipped.append(f"{name} (run {run['run_id']}): {exc}")
                continue
            if not champ[key].reset_index(drop=True).equals(chall[key].reset_index(drop=True)):
                skipped.append(f"{name} (run {run['run_id']}): the two outputs' rows differ")
                continue
            champs.append(champ)
            challs.append(chall)
    if not champs:
        return pd.DataFrame(), pd.DataFrame(), skipped
    return (
        pd.concat(champs, ignore_index=True),
        pd.concat(challs, ignore_index=True),
        skipped,
    )


def prediction_drift(
    spec: ModelSpec, client: Any, version: str, challenger: pd.DataFrame
) -> dict[str, Any]:
    """The challenger's shadow output against its own holdout reference profile."""
    profile = reference.version_profile(client, spec, version)
    names = profile.names(("prediction",))
    current = challenger[[c for c in names if c in challenger.columns]]
    if spec.is_classifier and PREDICTION in current.columns:
        current = current.assign(**{PREDICTION: current[PREDICTION].astype("str")})
    result = drift.check_drift(
        profile, current, config=reference.drift_config(spec), roles=("prediction",)
    )
    return {"status": result.status, "drifted": result.drifted, "reason": result.reason}


def gather(
    spec: ModelSpec,
    client: Any,
    version: str,
    classes: Any,
    runs: list[ShadowRun],
    *,
    s3_client: Any = None,
    labels: pd.DataFrame | None = None,
) -> ShadowEvidence:
    """Every figure of the shadow runs of `version` (`classes`: the challenger's classes_;
    `labels`: the landed labels, `io.labels.read_labels`; None: none)."""
    champion, challenger, notes = paired_outputs(spec, runs, s3_client=s3_client)
    rows = len(challenger)
    agree = mad = None
    drift_ev, comp, labelled = None, None, 0
    if rows:
        probas = [c for c in challenger.columns if c.startswith(PROBA_PREFIX)]
        if spec.is_classifier:
            agree = agreement(champion[PREDICTION], challenger[PREDICTION])
            if probas and list(champion.columns) == list(challenger.columns):
                mad = mean_abs_difference(champion[probas], challenger[probas])
            else:
                notes.append("champion and challenger have different probability columns")
        else:
            mad = mean_abs_difference(champion[PREDICTION], challenger[PREDICTION])
        try:
            drift_ev = prediction_drift(spec, client, version, challenger)
        except (NoReference, ValueError) as exc:
            notes.append(f"prediction drift not measured: {exc}")
        try:
            known = [] if classes is None else list(classes)
            if labels is not None:
                comp, labelled = production_comparison(spec, known, champion, challenger, labels)
        except (KeyError, ValueError) as exc:
            notes.append(f"paired comparison on production rows not made: {exc}")
    ev = ShadowEvidence(
        runs=len(runs),
        rows=rows,
        agreement=agree,
        mean_abs_diff=mad,
        min_agreement=spec.promotion.shadow_min_agreement,
        drift=drift_ev,
        comparison=comp,
        labelled_rows=labelled,
        notes=notes,
    )
    log.info("%s version %s: %s", spec.name, version, ev.summary())
    return ev


# --------------------------------------------------------------------------------------------
# Waiting, and the end of the wait


def start_wait(client: Any, spec: ModelSpec, version: str, done: int, tags: dict[str, str]) -> None:
    """Record the holdout gate's evidence on `version`, how many shadow runs it has, and point
    the alias `shadow` at it (a newer waiting challenger replaces an older one)."""
    for key, value in tags.items():
        client.set_model_version_tag(spec.name, version, key, value)
    client.set_model_version_tag(
        spec.name, version, WAITING_TAG, f"{done}/{spec.promotion.shadow_runs}"
    )
    client.set_registered_model_alias(spec.name, registry.SHADOW, version)


def end_wait(client: Any, model: str, version: str) -> None:
    """The gate decided `version`: it leaves the shadow (alias removed if it still has it)."""
    if registry.alias_version(client, model, registry.SHADOW) == str(version):
        client.delete_registered_model_alias(model, registry.SHADOW)
        client.set_model_version_tag(model, version, WAITING_TAG, "done")
