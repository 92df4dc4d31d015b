"""The drift path's glue: the scored window, labels joined on the row key, alert decisions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core import errors
from airmlops_core.drift import flow as drift_flow
from airmlops_core.io import data
from airmlops_core.io.labels import read_labels
from airmlops_core.io.store import Store
from airmlops_core.spec import load_spec
from airmlops_core.spec_monitoring import LiveRecording as Live
from paths import PROJECT_DIR as PROJECT

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def spec():
    return load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")


def scored_run(
    root: Path, spec, name: str, version: str, frame: pd.DataFrame, proba: np.ndarray
) -> None:
    """One scoring run's files as the score DAG lays them out: input, output, manifest."""
    src = data.write_frame(frame, str(root / "landing" / f"{name}.parquet"))
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "prediction": (proba > 0.5) * 1,
            "proba_0": 1 - proba,
            "proba_1": proba,
        }
    )
    run_dir = root / "scored" / spec.name / name
    dst = data.write_frame(out, str(run_dir / "part.parquet"))
    manifest = {
        "model_name": spec.name,
        "model_version": version,
        "partitions": [
            {
                "partition": "part",
                "status": "scored",
                "input_uri": src.uri,
                "input_sha256": src.sha256,
                "output_uri": dst.uri,
            }
        ],
    }
    (run_dir / "_manifest.json").write_text(json.dumps(manifest))


def test_window_joins_inputs_and_outputs_of_the_champion_only(spec, tmp_path, monkeypatch):
    from airmlops_dev import demo_data

    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    churn = demo_data.churn()
    rng = np.random.default_rng(0)
    scored_run(tmp_path, spec, "2026-01-01T00-00-00Z", "3", churn.iloc[:100], rng.random(100))
    scored_run(tmp_path, spec, "2026-01-02T00-00-00Z", "4", churn.iloc[100:300], rng.random(200))
    window, lineage = drift_flow.current_window(spec, "4", window_runs=5)
    assert len(window) == 200  # version 3's run is not the champion's
    assert list(window["customer_id"]) == list(churn["customer_id"].iloc[100:300])
    assert {"tenure", "contract", "proba_1", "prediction"} <= set(window.columns)
    assert lineage["skipped"] == []
    # only the last run when window_runs=1; a changed input is skipped, not silently used
    inp = Path(lineage["inputs"][0])
    data.write_frame(churn.iloc[100:300].assign(tenure=0), str(inp))
    window, lineage = drift_flow.current_window(spec, "4", window_runs=1)
    assert window.empty
    assert "sha256" in lineage["skipped"][0] or "changed" in lineage["skipped"][0]

    # labels arrive later: joined on the key, rows without a label left out
    labels = churn.iloc[100:150][["customer_id", "churn"]]
    data.write_frame(labels, str(tmp_path / "labels" / spec.name / "a.parquet"))
    full = churn.iloc[100:300].drop(columns=["churn"]).assign(proba_1=0.5)
    landed = read_labels(spec, Store()).frame
    joined = drift_flow.labelled(spec, full, landed)
    assert len(joined) == 50
    assert list(joined["churn"]) == list(labels["churn"])
    # a key scored in two runs is in the window twice: each row gets its label
    twice = drift_flow.labelled(spec, pd.concat([full, full], ignore_index=True), landed)
    assert len(twice) == 100
    assert list(twice["churn"]) == list(labels["churn"]) * 2


def checked(status: str = "drift", drifted: dict | None = None, degraded: bool = False) -> dict:
    return {
        "status": status,
        "drifted": {"tenure": "feature wasserstein 0.9"} if drifted is None else drifted,
        "degraded": degraded,
        "label_status": "no_labels",
        "label_drifted": {},
        "version": "4",
        "summary": "s",
        "performance": None,
        "report": "http://r",
    }


def test_alert_once_suppress_repeats_then_recover() -> None:
    state, msg = drift_flow.alert_transition({}, checked(), cooldown_hours=24, now=T0)
    assert msg is not None
    assert "tenure (feature wasserstein 0.9)" in msg
    assert "http://r" in msg
    state, msg = drift_flow.alert_transition(
        state, checked(), cooldown_hours=24, now=T0 + dt.timedelta(hours=1)
    )
    assert msg is None  # same drift inside the cool-down
    state2, msg = drift_flow.alert_transition(
        state,
        checked(drifted={"tenure": "x", "contract": "y"}),
        cooldown_hours=24,
        now=T0 + dt.timedelta(hours=2),
    )
    assert msg is not None  # a different drift is news
    _, msg = drift_flow.alert_transition(
        state, checked(), cooldown_hours=24, now=T0 + dt.timedelta(hours=25)
    )
    assert msg is not None  # the same drift again after the cool-down
    state, msg = drift_flow.alert_transition(
        state2, checked("no_drift", {}), cooldown_hours=24, now=T0 + dt.timedelta(hours=3)
    )
    assert msg is not None
    assert "recovered" in msg
    _, msg = drift_flow.alert_transition(
        state, checked("no_drift", {}), cooldown_hours=24, now=T0 + dt.timedelta(hours=4)
    )
    assert msg is None
    _, msg = drift_flow.alert_transition({}, checked("not_enough_data", {}), cooldown_hours=24)
    assert msg is None
    bad_state, _ = drift_flow.alert_transition({}, checked(), cooldown_hours=24, now=T0)
    kept, msg = drift_flow.alert_transition(
        bad_state, checked("not_enough_data", {}), cooldown_hours=24, now=T0
    )
    assert msg is None  # too little data is no recovery
    assert kept == bad_state


def test_alert_orders_by_importance_and_names_barely_used_columns() -> None:
    ranked = {
        **checked(drifted={"tenure": "feature wasserstein 0.2", "noise": "feature psi 0.9"}),
        "ranked_by_importance": True,
        "barely_used": ["noise"],
    }
    _, msg = drift_flow.alert_transition({}, ranked, cooldown_hours=24, now=T0)
    assert msg is not None
    assert (
        "Drifted columns (the model's output first, then features by importance to the model): "
        "tenure (feature wasserstein 0.2); noise (feature psi 0.9)\n"
        "Barely used by the model (permutation importance under 1% of the top feature's): noise"
    ) in msg
    # without the importance table: today's text, no barely-used line
    _, msg = drift_flow.alert_transition({}, checked(), cooldown_hours=24, now=T0)
    assert msg is not None
    assert "Drifted columns: tenure (feature wasserstein 0.9)\nReport: http://r" in msg
    assert "Barely used" not in msg


def test_retrain_rule(spec) -> None:
    perf_only = spec  # default retrain_on: performance
    assert not drift_flow.should_retrain(perf_only, checked())
    assert drift_flow.should_retrain(perf_only, checked("no_drift", {}, degraded=True))
    both = spec.model_copy(
        update={
            "monitoring": spec.monitoring.model_copy(
                update={"retrain_on": ["drift", "performance"]}
            )
        }
    )
    assert drift_flow.should_retrain(both, checked())
    # the reason names the part of the rule that holds, not whatever else drifted
    decayed = {**checked(degraded=True), "performance": {"reason": "roc_auc 0.67 vs 0.73"}}
    assert drift_flow.retrain_reason(perf_only, decayed) == (
        "v4 performance decay: roc_auc 0.67 vs 0.73"
    )
    assert drift_flow.retrain_reason(both, decayed) == (
        "v4 performance decay: roc_auc 0.67 vs 0.73; drifted tenure"
    )
    assert drift_flow.retrain_reason(both, checked()) == "v4 drifted tenure"
    assert drift_flow.retrain_reason(perf_only, checked()) is None


def test_bias_over_the_labelled_window_matches_a_groupby(spec) -> None:
    """Group metrics of the champion's predictions per sensitive feature, checked against a
    plain pandas computation; gaps above fairness_max_gap become alert lines."""
    rng = np.random.default_rng(3)
    n = 4_000
    senior = rng.random(n) < 0.2
    churn = (rng.random(n) < np.where(senior, 0.4, 0.2)).astype(int)
    pred = (rng.random(n) < np.where(senior, 0.5, 0.15)).astype(int)  # flags seniors more
    labels = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "churn": churn,
            "prediction": pred,
            "senior_citizen": senior.astype(int),
            "female": rng.integers(0, 2, n),
        }
    )
    reports = {r.feature: r for r in drift_flow.bias(spec, labels)}
    assert set(reports) == set(spec.sensitive_features) == {"female", "senior_citizen"}
    by_hand = labels.groupby(labels["senior_citizen"].astype(str)).apply(
        lambda g: pd.Series(
            {
                "selection_rate": g["prediction"].mean(),
                "true_positive_rate": g.loc[g["churn"] == 1, "prediction"].mean(),
                "false_positive_rate": g.loc[g["churn"] == 0, "prediction"].mean(),
                "count": float(len(g)),
            }
        )
    )
    got = reports["senior_citizen"]
    for group, row in by_hand.iterrows():
        for metric, value in row.items():
            assert got.by_group[group][metric] == pytest.approx(value, abs=1e-12)
    gap = by_hand["selection_rate"].max() - by_hand["selection_rate"].min()
    assert got.gaps["selection_rate"] == pytest.approx(gap, abs=1e-12)

    metrics = drift_flow.bias_metrics(list(reports.values()))
    assert metrics["bias.senior_citizen.selection_rate_gap"] == pytest.approx(gap, abs=1e-12)
    assert metrics["bias.senior_citizen.1.count"] == senior.sum()

    assert drift_flow.bias_over_limit(spec, list(reports.values())) == {}  # no limit set
    strict = spec.model_copy(
        update={"promotion": spec.promotion.model_copy(update={"fairness_max_gap": 0.2})}
    )
    over = drift_flow.bias_over_limit(strict, list(reports.values()))
    assert "selection_rate by senior_citizen" in over
    assert not any(k.endswith("by female") for k in over)  # no real gap by gender

    # an alert names it, and the same bias again inside the cool-down stays quiet
    biased = {**checked("no_drift", {}), "bias_over_limit": over}
    state, msg = drift_flow.alert_transition({}, biased, cooldown_hours=24, now=T0)
    assert msg is not None
    assert "Bias: selection_rate gap" in msg
    drifting_gap = {k: v.replace("gap", "gap (new value)") for k, v in over.items()}
    _, msg = drift_flow.alert_transition(
        state,
        {**biased, "bias_over_limit": drifting_gap},
        cooldown_hours=24,
        now=T0 + dt.timedelta(hours=1),
    )
    assert msg is None
    assert drift_flow.bias(spec, labels.drop(columns=["female", "senior_citizen"])) == []


def label_drift(status: str = "no_drift", drifted: dict | None = None) -> dict:
    """A check where the landed labels drifted from the training labels."""
    return {
        **checked(status, {} if drifted is None else drifted),
        "label_status": "drift",
        "label_drifted": {"churn": "label js 0.31, psi 0.42"},
    }


def test_label_drift_alerts_once_names_the_label_then_recovers() -> None:
    state, msg = drift_flow.alert_transition({}, label_drift(), cooldown_hours=24, now=T0)
    assert msg is not None
    assert "Label drift (landed labels vs training): churn (label js 0.31, psi 0.42)" in msg
    assert "Drifted columns: none" in msg  # the features did not move
    state, msg = drift_flow.alert_transition(
        state, label_drift(), cooldown_hours=24, now=T0 + dt.timedelta(hours=1)
    )
    assert msg is None  # the same label drift inside the cool-down
    # label drift on top of an existing feature drift is news
    feat_state, _ = drift_flow.alert_transition({}, checked(), cooldown_hours=24, now=T0)
    _, msg = drift_flow.alert_transition(
        feat_state,
        label_drift("drift", None) | {"drifted": checked()["drifted"]},
        cooldown_hours=24,
        now=T0 + dt.timedelta(hours=1),
    )
    assert msg is not None
    assert "Label drift" in msg
    # a window too small for feature verdicts still alerts on label drift
    _, msg = drift_flow.alert_transition({}, label_drift("not_enough_data"), cooldown_hours=24)
    assert msg is not None
    # labels back to normal: recovery
    _, msg = drift_flow.alert_transition(
        state, checked("no_drift", {}), cooldown_hours=24, now=T0 + dt.timedelta(hours=2)
    )
    assert msg is not None
    assert "recovered" in msg
    # a state written before label drift existed keeps its fingerprint: no spurious alert
    old_state, _ = drift_flow.alert_transition({}, checked(), cooldown_hours=24, now=T0)
    assert "label_drift" not in old_state["fingerprint"]


def test_retrain_on_label_drift(spec) -> None:
    def rule(*on: str):
        return spec.model_copy(
            update={"monitoring": spec.monitoring.model_copy(update={"retrain_on": list(on)})}
        )

    assert drift_flow.retrain_reason(rule("drift", "performance"), label_drift()) is None
    assert drift_flow.retrain_reason(rule("label_drift"), label_drift()) == (
        "v4 label drift: churn (label js 0.31, psi 0.42)"
    )
    assert drift_flow.retrain_reason(rule("label_drift"), checked()) is None
    both_drift = label_drift("drift", checked()["drifted"])
    assert drift_flow.retrain_reason(rule("drift", "label_drift"), both_drift) == (
        "v4 drifted tenure; label drift: churn (label js 0.31, psi 0.42)"
    )


def s3_scored_run(
    store, client, base: str, spec, name: str, version: str, frame: pd.DataFrame, proba
) -> dict:
    """One scoring run laid out on S3 as the score DAG does; returns the manifest."""
    src = data.write_frame(frame, f"{base}/landing/{name}.parquet", s3_client=client)
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "prediction": (proba > 0.5) * 1,
            "proba_0": 1 - proba,
            "proba_1": proba,
        }
    )
    run = f"{base}/scored/{spec.name}/{name}"
    dst = data.write_frame(out, f"{run}/part.parquet", s3_client=client)
    manifest = {
        "model_name": spec.name,
        "model_version": version,
        "logical_date": name,
        "partitions": [
            {
                "partition": "part",
                "status": "scored",
                "input_uri": src.uri,
                "input_sha256": src.sha256,
                "output_uri": dst.uri,
            }
        ],
    }
    store.write_json(f"{run}/_manifest.json", manifest)
    return manifest


def test_drift_window_finds_scored_runs_on_s3(spec, s3, s3_store, s3_prefix) -> None:
    """With scoring.output on S3, the window is read from S3 (no local folder involved) and
    equals an independent pandas join of the same files."""
    from airmlops_dev import demo_data

    base = s3_prefix.rstrip("/")
    on_s3 = spec.model_copy(
        update={"scoring": spec.scoring.model_copy(update={"output": f"{base}/scored"})}
    )
    churn = demo_data.churn()
    rng = np.random.default_rng(1)
    runs = [
        ("2026-01-01T00-00-00Z", churn.iloc[:300], rng.random(300)),
        (
            "2026-01-02T00-00-00Z",
            churn.iloc[300:700].sample(frac=1, random_state=2),
            rng.random(400),
        ),
        ("2026-01-03T00-00-00Z", churn.iloc[700:900], rng.random(200)),
    ]
    for name, frame, proba in runs:
        s3_scored_run(s3_store, s3.client, base, on_s3, name, "4", frame, proba)
    window, lineage = drift_flow.current_window(on_s3, "4", window_runs=2, store=s3_store)

    # independently: whole files, pandas merge, concatenated in run order
    feats = [on_s3.row_key, *on_s3.features.all]
    extras = [c for c in on_s3.columns if c not in feats and c != on_s3.target]
    parts = []
    for _name, frame, proba in runs[1:]:
        out = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(), "proba_1": proba})
        parts.append(frame[feats + extras].merge(out, on="customer_id", how="inner"))
    expected = pd.concat(parts, ignore_index=True)
    assert lineage["rows"] == len(window) == 600
    assert [r["rows"] for r in lineage["runs"]] == [400, 200]
    assert lineage["skipped"] == []
    assert "note" not in lineage
    assert list(window["customer_id"]) == list(expected["customer_id"])  # run and row order
    np.testing.assert_allclose(window["proba_1"].to_numpy(), expected["proba_1"].to_numpy())
    for col in on_s3.features.numeric:
        assert window[col].mean() == pytest.approx(expected[col].astype(float).mean())
    for col in on_s3.features.categorical:
        assert window[col].astype(str).value_counts().to_dict() == (
            expected[col].astype(str).value_counts().to_dict()
        )
    assert all(u.startswith("s3://") for u in lineage["inputs"])


def test_drift_window_reports_where_it_found_nothing(spec, s3_store, s3_prefix) -> None:
    nowhere = spec.model_copy(
        update={"scoring": spec.scoring.model_copy(update={"output": f"{s3_prefix}scored"})}
    )
    window, lineage = drift_flow.current_window(nowhere, "4", window_runs=3, store=s3_store)
    assert window.empty
    assert lineage["note"].startswith(f"{s3_prefix}scored/{spec.name}: no scoring manifests")
    missing = spec.model_copy(
        update={"scoring": spec.scoring.model_copy(update={"output": "s3://no-such-out/scored"})}
    )
    with pytest.raises(errors.DataError, match="s3://no-such-out/scored.*bucket does not exist"):
        drift_flow.current_window(missing, "4", window_runs=3, store=s3_store)


def test_window_without_a_row_key_joins_on_the_row_index(spec, tmp_path, monkeypatch) -> None:
    from airmlops_dev import demo_data

    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    keyless = spec.model_copy(update={"row_key": None})
    churn = demo_data.churn().iloc[:250]
    proba = np.random.default_rng(5).random(250)
    src = data.write_frame(churn, str(tmp_path / "landing" / "b.parquet"))
    out = pd.DataFrame({"row_index": np.arange(250)[::-1], "prediction": 0, "proba_1": proba[::-1]})
    run_dir = tmp_path / "scored" / spec.name / "2026-01-01T00-00-00Z"
    dst = data.write_frame(out, str(run_dir / "p.parquet"))  # rows in another order
    part = {"partition": "p", "status": "scored", "input_uri": src.uri,
            "input_sha256": src.sha256, "output_uri": dst.uri}  # fmt: skip
    Store().write_json(
        str(run_dir / "_manifest.json"),
        {"model_name": spec.name, "model_version": "1", "partitions": [part]},
    )
    window, _ = drift_flow.current_window(keyless, "1", window_runs=1)
    assert list(window["row_index"]) == list(range(250))
    np.testing.assert_allclose(window["proba_1"].to_numpy(), proba)
    assert list(window["tenure"]) == list(churn["tenure"])


def test_an_alert_names_its_source_and_each_source_keeps_its_own_state() -> None:
    online = {**checked(drifted={"a": "feature psi 2", "b": "feature psi 3"}), "source": "online"}
    state, msg = drift_flow.alert_transition({}, online, cooldown_hours=24, now=T0)
    assert msg is not None
    assert msg.startswith(":warning: online: drift in v4")
    assert "a (feature psi 2); b (feature psi 3)" in msg
    calm = {**checked("no_drift", {}), "source": "online"}
    _, msg = drift_flow.alert_transition(state, calm, cooldown_hours=24, now=T0)
    assert msg is not None
    assert msg.startswith(":large_green_circle: online: drift of v4 recovered")
    assert drift_flow.state_key("m", "batch") == "airmlops_drift_m"  # as before sources
    assert drift_flow.state_key("m", "online") == "airmlops_drift_m__online"


def test_online_window_reads_the_champions_recent_records_and_prunes_old_ones(
    spec, tmp_path, monkeypatch
):
    from airmlops_core.io import live

    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    spec = spec.model_copy(
        update={
            "monitoring": spec.monitoring.model_copy(
                update={"live": Live(window_hours=24, retention_days=10)}
            )
        }
    )
    base = live.live_base(spec.name)
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)

    def records(at: dt.datetime, version: str, n: int, seq: int) -> str:
        rows = pd.DataFrame(
            {
                "recorded_at": pd.Series([at] * n).astype("datetime64[us, UTC]"),
                "model_version": [version] * n,
                "tenure": np.arange(n, dtype=float),
            }
        )
        uri = live.file_uri(base, at.date(), "w1", seq)
        data.write_frame(rows, uri)
        return uri

    recent = records(now - dt.timedelta(hours=2), "4", 30, 1)
    records(now - dt.timedelta(hours=3), "3", 7, 2)  # another version
    records(now - dt.timedelta(hours=30), "4", 5, 3)  # before the window
    old = records(now - dt.timedelta(days=12), "4", 5, 4)  # past retention
    window, lineage = drift_flow.online_window(spec, "4", Store(), now=now)
    assert len(window) == 30
    assert recent in lineage["inputs"]
    assert not Path(old).exists()
    assert "note" not in lineage
    empty, lineage = drift_flow.online_window(spec, "9", Store(), now=now)
    assert empty.empty
    assert "no live records of v9" in lineage["note"]
