"""The spec schema: demo specs load, and every kind of bad spec names file, field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airmlops_core.errors import SpecError
from airmlops_core.spec import load_spec, load_specs, spec_hash

GOOD = {
    "name": "m1",
    "task": "binary",
    "source": {"kind": "file", "uri": "demo/x.parquet"},
    "target": "y",
    "row_key": "id",
    "features": {"numeric": ["a", "b"], "categorical": ["c"]},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0}},
    "metrics": {"primary": "roc_auc", "floors": {"roc_auc": 0.7}},
}


def write(tmp_path: Path, body: object, name: str = "m1") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return path


def with_(path: str, value: object) -> dict:
    """GOOD with one (dotted) field replaced; value None deletes it."""
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, leaf = path.split(".")
    node = spec
    for p in parents:
        node = node[p]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


def test_demo_specs_are_valid(models_dir: Path) -> None:
    specs, errors = load_specs(models_dir)
    assert errors == {}
    assert {"flight_delay", "diamond_price", "customer_churn"} <= set(specs)
    churn = specs["customer_churn"]
    assert churn.sensitive_features == ["female", "senior_citizen"]
    assert churn.columns[0] == "customer_id"
    assert "churn" in churn.columns
    assert specs["diamond_price"].stratify is False  # regression never stratifies


def test_good_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.features.all == ["a", "b", "c"]
    assert spec.estimator.class_path == "sklearn.linear_model.LogisticRegression"
    assert spec.source.resolved_format == "parquet"


def test_a_search_section_loads_with_its_defaults(tmp_path: Path) -> None:
    body = with_(
        "estimator.search", {"space": {"tol": [0.1, 0.01], "class_weight": [None, "balanced"]}}
    )
    search = load_spec(write(tmp_path, body)).estimator.search
    assert search is not None
    assert (search.method, search.cv, search.budget_seconds, search.scoring) == (
        "grid",
        3,
        None,
        None,
    )
    assert search.candidates == 4
    assert search.space["class_weight"] == [None, "balanced"]


BAD_CASES = [
    ("missing task", with_("task", None), "task", "Field required"),
    ("unknown task", with_("task", "ranking"), "task", "'binary', 'multiclass' or 'regression'"),
    ("bad name", with_("name", "Bad-Name"), "name", "lowercase"),
    ("unknown field", {**GOOD, "colour": "red"}, "colour", "unknown field"),
    ("typo in nested field", with_("source.urii", "x.csv"), "source.urii", "unknown field"),
    ("file source without uri", with_("source.uri", None), "source", "needs 'uri'"),
    (
        "s3 source not s3 uri",
        with_("source", {"kind": "s3", "uri": "/tmp/x.csv"}),
        "source",
        "s3://",
    ),
    (
        "sql without conn",
        with_("source", {"kind": "sql", "query": "select 1"}),
        "source",
        "'query' and 'conn_id'",
    ),
    ("unknown format", with_("source.uri", "data.xlsx"), "source", "cannot tell the format"),
    (
        "no features",
        with_("features", {"numeric": [], "categorical": []}),
        "features",
        "at least one",
    ),
    (
        "feature in both lists",
        with_("features", {"numeric": ["a"], "categorical": ["a"]}),
        "features",
        "both numeric and categorical",
    ),
    ("duplicate feature", with_("features.numeric", ["a", "a"]), "features", "twice"),
    ("target is a feature", with_("target", "a"), "(top level)", "also listed as a feature"),
    ("row key is a feature", with_("row_key", "b"), "(top level)", "row_key 'b'"),
    (
        "estimator not dotted",
        with_("estimator.class", "LogisticRegression"),
        "estimator.class",
        "dotted import path",
    ),
    (
        "params not a mapping",
        with_("estimator.params", [1, 2]),
        "estimator.params",
        "valid dictionary",
    ),
    (
        "metric for wrong task",
        with_("metrics.floors", {"rmse": 3.0}),
        "(top level)",
        "does not apply to task 'binary'",
    ),
    (
        "floor not a number",
        with_("metrics.floors", {"roc_auc": "high"}),
        "metrics.floors.roc_auc",
        "valid number",
    ),
    (
        "test_size out of range",
        with_("split", {"test_size": 1.5}),
        "split.test_size",
        "must be in (0, 1) (got 1.5)",
    ),
    (
        "search without space",
        with_("estimator.search", {"method": "grid"}),
        "estimator.search.space",
        "Field required",
    ),
    (
        "search space empty",
        with_("estimator.search", {"space": {}}),
        "estimator.search.space",
        "at least 1",
    ),
    (
        "search values empty",
        with_("estimator.search", {"space": {"tol": []}}),
        "estimator.search.space.tol",
        "at least 1 item",
    ),
    (
        "search space too large",
        with_("estimator.search", {"space": {"tol": list(range(15)), "max_iter": list(range(15))}}),
        "estimator.search.space",
        "225 candidates (the product of the list lengths); at most 200",
    ),
    (
        "search value twice",
        with_("estimator.search", {"space": {"tol": [0.1, 0.1]}}),
        "estimator.search.space",
        "tol lists these values twice: 0.1",
    ),
    (
        "search key with the pipeline prefix",
        with_("estimator.search", {"space": {"model__tol": [0.1]}}),
        "estimator.search.space",
        "without the pipeline's 'model__' prefix",
    ),
    (
        "search key not a name",
        with_("estimator.search", {"space": {"max-iter": [1]}}),
        "estimator.search.space",
        "['max-iter']",
    ),
    (
        "searched and fixed",
        with_("estimator.search", {"space": {"C": [0.1, 1.0]}}),
        "estimator",
        "search.space and params both set ['C']",
    ),
    (
        "search method unknown",
        with_("estimator.search", {"method": "random", "space": {"tol": [1]}}),
        "estimator.search.method",
        "'grid' or 'halving'",
    ),
    (
        "search cv out of range",
        with_("estimator.search", {"cv": 1, "space": {"tol": [1]}}),
        "estimator.search.cv",
        "must be in [2, 20] (got 1)",
    ),
    (
        "search budget not positive",
        with_("estimator.search", {"budget_seconds": 0, "space": {"tol": [1]}}),
        "estimator.search.budget_seconds",
        "must be in (0, 604800] (got 0)",
    ),
    (
        "search budget with halving",
        with_(
            "estimator.search", {"method": "halving", "budget_seconds": 60, "space": {"tol": [1]}}
        ),
        "estimator.search",
        "budget_seconds applies to method 'grid' only",
    ),
    (
        "search scoring for the wrong task",
        with_("estimator.search", {"scoring": "rmse", "space": {"tol": [1]}}),
        "(top level)",
        "metric 'rmse' does not apply to task 'binary'",
    ),
    (
        "search field unknown",
        with_("estimator.search", {"n_iter": 5, "space": {"tol": [1]}}),
        "estimator.search.n_iter",
        "unknown field",
    ),
    ("bad cron", with_("schedules", {"train": "every day"}), "schedules.train", "cron"),
    (
        "cron with 6 fields",
        with_("schedules", {"train": "0 0 * * * *"}),
        "schedules.train",
        "5-field",
    ),
    ("features wrong type", with_("features", "a,b"), "features", "valid dictionary"),
    (
        "sensitive is target",
        {**GOOD, "sensitive_features": ["y"]},
        "(top level)",
        "cannot be a sensitive feature",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_spec_names_file_field_and_problem(
    tmp_path: Path, body: dict, field: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert str(path) in text
    assert any(f == field and message in m for f, m in info.value.problems), text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "got empty"),
        ("- a\n- b\n", "got list"),
        ("name: [unclosed\n", "not valid YAML"),
        ("just a string", "got str"),
    ],
)
def test_unparseable_files(tmp_path: Path, raw: str, message: str) -> None:
    path = write(tmp_path, raw)
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "m1.yaml"
    path.write_bytes(b"name: m1\ndescription: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


def test_name_must_match_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, name="other")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems == [("name", "'m1' must equal the file name 'other'")]


def test_bad_spec_never_hides_good_ones(tmp_path: Path) -> None:
    write(tmp_path, GOOD, name="m1")
    write(tmp_path, with_("name", "m2") | {"task": "nope"}, name="m2")
    write(tmp_path, "{{{", name="m3")
    (tmp_path / "_draft.yaml").write_text("ignored: true")
    specs, errors = load_specs(tmp_path)
    assert list(specs) == ["m1"]
    assert sorted(Path(p).name for p in errors) == ["m2.yaml", "m3.yaml"]


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    body = with_("task", "nope") | {"split": {"test_size": 0}, "colour": 1}
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    fields = {f for f, _ in info.value.problems}
    assert {"task", "split.test_size", "colour"} <= fields


def test_spec_hash_tracks_content() -> None:
    assert spec_hash(b"a") == spec_hash(b"a")
    assert spec_hash(b"a") != spec_hash(b"b")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**GOOD, "promotion": {"metric": "rmse"}}, "(top level)", "does not apply"),
        ({**GOOD, "promotion": {"level": 1.5}}, "promotion.level", "must be in (0.5, 1)"),
        ({**GOOD, "promotion": {"n_boot": 10}}, "promotion.n_boot", "must be in [200, 20000]"),
        ({**GOOD, "promotion": {"segments": ["y"]}}, "(top level)", "promotion segment"),
        ({**GOOD, "data_checks": {"suit": "x"}}, "data_checks.suit", "unknown field"),
        (
            {**GOOD, "promotion": {"human_approval": True, "approval_timeout_hours": 0}},
            "promotion.approval_timeout_hours",
            "greater than 0",
        ),
        (
            {**GOOD, "promotion": {"human_approval": True, "approval_timeout_hours": 721}},
            "promotion.approval_timeout_hours",
            "less than or equal to 720",
        ),
        (
            {**GOOD, "promotion": {"human_approval": True, "reviewers": ["ann", "ann"]}},
            "promotion.reviewers",
            "twice: ['ann']",
        ),
        (
            {**GOOD, "promotion": {"human_approval": True, "reviewers": [" "]}},
            "promotion.reviewers",
            "an empty one",
        ),
        (
            {**GOOD, "promotion": {"reviewers": ["ann"], "approval_timeout_hours": 4}},
            "promotion",
            "approval_timeout_hours, reviewers apply with human_approval: true only",
        ),
    ],
)
def test_bad_promotion_settings(tmp_path: Path, body: dict, field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    assert any(f == field and message in m for f, m in info.value.problems), str(info.value)


def test_approval_defaults_and_settings(tmp_path: Path) -> None:
    plain = load_spec(write(tmp_path, {**GOOD, "promotion": {"human_approval": True}}))
    assert plain.promotion.approval_timeout_hours == 72.0
    assert plain.promotion.reviewers == []
    set_ = load_spec(
        write(
            tmp_path,
            {
                **GOOD,
                "promotion": {
                    "human_approval": True,
                    "approval_timeout_hours": 0.5,
                    "reviewers": ["ann", "bo"],
                },
            },
        )
    )
    assert (set_.promotion.approval_timeout_hours, set_.promotion.reviewers) == (0.5, ["ann", "bo"])


def test_promotion_defaults_and_segment_columns(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            {
                **GOOD,
                "promotion": {"segments": ["region"]},
                "sensitive_features": ["region", "gender"],
            },
        )
    )
    assert spec.gate_metric == "roc_auc"
    assert spec.promotion.margin == 0.0
    assert spec.columns[-2:] == ["region", "gender"]


EXTERNAL = {
    "name": "m1",
    "task": "binary",
    "target": "y",
    "row_key": "id",
    "features": {"numeric": ["a", "b"], "categorical": ["c"]},
    "external": {
        "reference": {"uri": "vendor/reference.parquet"},
        "origin": "vendor X / team Y notebook",
    },
}


def test_external_spec_loads_without_training_fields(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, EXTERNAL))
    assert spec.is_external
    assert spec.external is not None
    assert spec.external.reference.resolved_format == "parquet"
    assert spec.external.origin == "vendor X / team Y notebook"
    assert spec.source is None
    assert spec.estimator is None
    assert spec.gate_metric == "roc_auc"  # default per task when metrics is left out
    assert spec.metrics.floors == {}
    regression = load_spec(write(tmp_path, {**EXTERNAL, "task": "regression"}))
    assert regression.gate_metric == "rmse"
    chosen = load_spec(write(tmp_path, {**EXTERNAL, "metrics": {"primary": "f1"}}))
    assert chosen.gate_metric == "f1"
    assert not load_spec(write(tmp_path, GOOD)).is_external


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {**EXTERNAL, "estimator": GOOD["estimator"]},
            "(top level)",
            "do not apply, remove them: estimator (the model is built elsewhere)",
        ),
        (
            {**EXTERNAL, "source": GOOD["source"]},
            "(top level)",
            "source (the reference dataset is external.reference)",
        ),
        ({**EXTERNAL, "split": {"test_size": 0.3}}, "(top level)", "split (nothing is trained"),
        ({**EXTERNAL, "rebalance": {"method": "random_over"}}, "(top level)", "rebalance ("),
        (
            {**EXTERNAL, "retrain": {"window": "expanding"}},
            "(top level)",
            "retrain (there is no retrain DAG)",
        ),
        (
            {**EXTERNAL, "promotion": {"human_approval": True}},
            "(top level)",
            "promotion (there is no promotion gate",
        ),
        (
            {**EXTERNAL, "schedules": {"train": "@daily", "score": "@daily"}},
            "(top level)",
            "schedules.train (nothing is trained here)",
        ),
        ({**EXTERNAL, "schedules": {"retrain": "@daily"}}, "(top level)", "schedules.retrain"),
        (
            {**EXTERNAL, "alerts": {"deadlines": {"train": 30, "score": 30}}},
            "(top level)",
            "alerts.deadlines.train (there is no train DAG)",
        ),
        (
            {**EXTERNAL, "metrics": {"primary": "roc_auc", "floors": {"roc_auc": 0.7}}},
            "(top level)",
            "metrics.floors (there is no promotion gate",
        ),
        (
            {**EXTERNAL, "metrics": {"primary": "rmse"}},
            "(top level)",
            "metric 'rmse' does not apply to task 'binary'",
        ),
        ({**EXTERNAL, "external": {"origin": "vendor X"}}, "external.reference", "Field required"),
        (
            {**EXTERNAL, "external": {"reference": {"uri": "r.parquet"}}},
            "external.origin",
            "Field required",
        ),
        (
            {**EXTERNAL, "external": {"reference": {"uri": "r.xlsx"}, "origin": "vendor X"}},
            "external.reference",
            "cannot tell the format",
        ),
        (
            {
                **EXTERNAL,
                "external": {"reference": {"uri": "r.csv"}, "origin": "vendor X", "pickle": True},
            },
            "external.pickle",
            "unknown field",
        ),
        (
            with_("estimator", None),
            "(top level)",
            "estimator required: a model trained here needs them (a model built elsewhere has an "
            "`external:` section instead",
        ),
        (with_("source", None), "(top level)", "source required"),
        (with_("metrics", None), "metrics", "Field required"),
    ],
)
def test_bad_external_and_trained_specs(
    tmp_path: Path, body: dict, field: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    assert any(f == field and message in m for f, m in info.value.problems), str(info.value)


def test_external_spec_lists_every_meaningless_field_at_once(tmp_path: Path) -> None:
    body = {
        **EXTERNAL,
        "estimator": GOOD["estimator"],
        "split": {"seed": 1},
        "schedules": {"retrain": "@daily"},
    }
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    [(_, message)] = info.value.problems
    for field in ("estimator", "split", "schedules.retrain"):
        assert f"{field} (" in message
    assert "schedules.train" not in message


# Every numeric setting and the range it must lie in: (section, field, spec overrides, a value
# just outside, the words of the range). The message names field, value and range.
REGRESSION = {"task": "regression", "metrics": {"primary": "rmse"}, "split": {"stratify": False}}
RANGES = [
    ("split", "test_size", {}, 1.0, "in (0, 1)"),
    ("split", "test_size", {}, 0, "in (0, 1)"),
    ("split", "seed", {}, -1, "in [0, 4294967295]"),
    ("rebalance", "k_neighbors", {"rebalance": {"method": "smote_nc"}}, 0, "in [1, 100]"),
    ("rebalance", "k_neighbors", {"rebalance": {"method": "smote_nc"}}, 101, "in [1, 100]"),
    ("rebalance", "sampling_strategy", {"rebalance": {"method": "smote_nc"}}, 1.5, "in (0, 1]"),
    ("rebalance", "sampling_strategy", {"rebalance": {"method": "smote_nc"}}, 0.0, "in (0, 1]"),
    ("promotion", "level", {}, 0.5, "in (0.5, 1)"),
    ("promotion", "level", {}, 1.0, "in (0.5, 1)"),
    ("promotion", "n_boot", {}, 199, "in [200, 20000]"),
    ("promotion", "n_boot", {}, 20001, "in [200, 20000]"),
    ("promotion", "fairness_tolerance", {}, -0.01, "in [0, 1]"),
    ("promotion", "fairness_tolerance", {}, 1.01, "in [0, 1]"),
    ("promotion", "fairness_max_gap", {}, 1.5, "in [0, 1]"),
    ("promotion", "margin", {}, float("inf"), "a finite number"),
    ("promotion", "max_overfit_gap", {}, -0.01, ">= 0"),
    ("promotion", "max_overfit_gap", {}, float("nan"), ">= 0"),
    ("promotion", "cv_folds", {}, 1, "in [2, 20]"),
    ("promotion", "cv_folds", {}, 21, "in [2, 20]"),
    ("scoring", "chunk_rows", {}, 999, "in [1000, 10000000]"),
    ("scoring", "chunk_rows", {}, 10_000_001, "in [1000, 10000000]"),
    ("monitoring", "fdr", {}, 0.0, "in (0, 1)"),
    ("monitoring", "fdr", {}, 1.0, "in (0, 1)"),
    ("monitoring", "min_rows", {}, 1, ">= 2"),
    ("monitoring", "min_wasserstein", {}, -0.1, ">= 0"),
    ("monitoring", "min_psi", {}, -0.1, ">= 0"),
    ("monitoring", "min_js", {}, 1.1, "in [0, 1]"),
    ("monitoring", "window_runs", {}, 0, "in [1, 100]"),
    ("monitoring", "window_runs", {}, 101, "in [1, 100]"),
    ("monitoring", "max_metric_drop", {}, -0.01, ">= 0"),
    ("monitoring", "max_metric_drop", {}, float("nan"), ">= 0"),
    ("monitoring", "calibration_max_ece", {}, 0.0, "in (0, 1]"),
    ("monitoring", "calibration_max_ece", {}, 1.5, "in (0, 1]"),
    ("monitoring", "estimated_drop_max", {}, -0.01, "in [0, 1]"),
    ("monitoring", "estimated_drop_max", {}, 1.01, "in [0, 1]"),
    ("monitoring", "cooldown_hours", {}, -1, "in [0, 8760]"),
    ("monitoring", "cooldown_hours", {}, 8761, "in [0, 8760]"),
    ("retrain", "max_rows", {}, 99, ">= 100"),
    ("retrain", "cooldown_hours", {}, -0.5, "in [0, 8760]"),
    ("retrain", "cooldown_hours", {}, float("inf"), "in [0, 8760]"),
]


@pytest.mark.parametrize(
    ("section", "field", "extra", "value", "allowed"),
    RANGES,
    ids=[f"{r[0]}.{r[1]}={r[3]}" for r in RANGES],
)
def test_numeric_setting_out_of_range_names_field_value_and_range(
    tmp_path: Path, section: str, field: str, extra: dict, value: float, allowed: str
) -> None:
    body = {**GOOD, **extra}
    body[section] = {**body.get(section, {}), field: value}
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    want = f"must be {allowed} (got {value!r})"
    assert any(f == f"{section}.{field}" and want in m for f, m in info.value.problems), (
        info.value.problems
    )


@pytest.mark.parametrize(
    ("section", "field", "extra", "value", "allowed"),
    RANGES,
    ids=[f"{r[0]}.{r[1]}={r[3]}" for r in RANGES],
)
def test_numeric_setting_at_its_bound_loads(
    tmp_path: Path, section: str, field: str, extra: dict, value: float, allowed: str
) -> None:
    """The check can fail the other way too: the closest allowed value loads."""
    inside = {
        "in (0, 1)": 0.5,
        "in [0, 4294967295]": 0,
        "in [1, 100]": 1 if value < 1 else 100,
        "in (0, 1]": 1.0,
        "in (0.5, 1)": 0.99,
        "in [200, 20000]": 200 if value < 200 else 20000,
        "in [0, 1]": 0.0 if value < 0 else 1.0,
        "a finite number": -0.5,
        "in [1000, 10000000]": 1000 if value < 1000 else 10_000_000,
        ">= 2": 2,
        ">= 0": 0.0,
        "in [0, 8760]": 0.0 if value < 0 else 8760,
        ">= 100": 100,
        "in [2, 20]": 2 if value < 2 else 20,
    }[allowed]
    body = {**GOOD, **extra}
    body[section] = {**body.get(section, {}), field: inside}
    if section == "retrain":
        body[section] |= {"window": "sliding", "max_rows": 100}
    spec = load_spec(write(tmp_path, body))
    assert getattr(getattr(spec, section), field) == inside


FLOORS = [
    ("binary", "roc_auc", 1.75, "in [0, 1]"),
    ("binary", "roc_auc", -0.1, "in [0, 1]"),
    ("binary", "pr_auc", 1.01, "in [0, 1]"),
    ("binary", "accuracy", 2.0, "in [0, 1]"),
    ("binary", "f1", -0.5, "in [0, 1]"),
    ("binary", "log_loss", -0.1, ">= 0"),
    ("regression", "rmse", -1.0, ">= 0"),
    ("regression", "mae", -0.01, ">= 0"),
    ("regression", "r2", 1.2, "<= 1"),
]


@pytest.mark.parametrize(("task", "metric", "floor", "allowed"), FLOORS)
def test_metric_floor_outside_its_metric_range_is_refused(
    tmp_path: Path, task: str, metric: str, floor: float, allowed: str
) -> None:
    body = {**GOOD, **(REGRESSION if task == "regression" else {})}
    body["metrics"] = {"primary": metric, "floors": {metric: floor}}
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    assert ("metrics.floors", f"{metric} must be {allowed} (got {floor!r})") in (
        info.value.problems
    ), info.value.problems
    body["metrics"]["floors"] = {metric: 0.0 if floor < 0 else (1.0 if metric != "r2" else 0.99)}
    assert load_spec(write(tmp_path, body)).metrics.floors  # a floor inside the range loads


def test_a_floor_of_r2_may_be_negative_and_rmse_unbounded_above(tmp_path: Path) -> None:
    body = {**GOOD, **REGRESSION}
    body["metrics"] = {"primary": "r2", "floors": {"r2": -3.0, "rmse": 1e6}}
    assert load_spec(write(tmp_path, body)).metrics.floors == {"r2": -3.0, "rmse": 1e6}


@pytest.mark.parametrize(
    ("metric", "margin", "ok"),
    [
        ("roc_auc", 1.0, False),
        ("roc_auc", -1.0, False),
        ("roc_auc", 0.99, True),
        ("rmse", 50, True),
    ],
)
def test_promotion_margin_within_what_the_gate_metric_can_differ_by(
    tmp_path: Path, metric: str, margin: float, ok: bool
) -> None:
    body = {**GOOD, **(REGRESSION if metric == "rmse" else {})}
    body["metrics"] = {"primary": metric}
    body["promotion"] = {"margin": margin}
    path = write(tmp_path, body)
    if ok:
        assert load_spec(path).promotion.margin == margin
        return
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert any(
        f"promotion.margin must be in (-1, 1) for {metric} (got {margin!r})" in m
        for _, m in info.value.problems
    ), info.value.problems


@pytest.mark.parametrize("deadline", [0, -5, 10081])
def test_deadline_out_of_range_names_the_pipeline(tmp_path: Path, deadline: float) -> None:
    body = {**GOOD, "alerts": {"deadlines": {"train": deadline}}}
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    assert ("alerts.deadlines.train", f"must be in (0, 10080] (got {deadline!r})") in (
        info.value.problems
    )


def test_a_numeric_window_must_not_end_before_it_starts(tmp_path: Path) -> None:
    body = with_("source.window", {"column": "month", "start": 9, "end": 1})
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, body))
    assert ("source.window", "start (9) is after end (1): no row would match") in (
        info.value.problems
    )
    assert load_spec(write(tmp_path, with_("source.window", {"column": "m", "start": 1, "end": 1})))


def test_card_section_loads_and_defaults_to_the_spec_owner(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, GOOD)).card.intended_use is None
    body = {
        **GOOD,
        "card": {"intended_use": " Rank customers ", "limitations": ["Telco only"]},
    }
    card = load_spec(write(tmp_path, body)).card
    assert (card.intended_use, card.owner, card.limitations) == (
        "Rank customers",
        None,
        ["Telco only"],
    )


@pytest.mark.parametrize(
    ("card", "field", "message"),
    [
        ({"intended_use": "   "}, "card.intended_use", "must not be blank"),
        ({"intended_use": "x" * 2001}, "card.intended_use", "at most 2000 characters"),
        ({"owner": ""}, "card.owner", "must not be blank"),
        ({"limitations": ["ok", " "]}, "card.limitations.1", "must not be blank"),
        ({"limitations": ["x"] * 31}, "card.limitations", "at most 30 items"),
        ({"limitations": "one string"}, "card.limitations", "valid list"),
        ({"purpose": "x"}, "card.purpose", "unknown field"),
    ],
)
def test_bad_card_section_names_the_field(
    tmp_path: Path, card: dict, field: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, {**GOOD, "card": card}))
    assert any(f == field and message in m for f, m in info.value.problems), info.value.problems


def test_alerts_channel_is_refused_with_the_reason(tmp_path: Path) -> None:
    """`alerts.channel` was never read (the webhook fixes the channel): a spec that still sets
    it is told so, instead of believing its alerts go there."""
    path = write(tmp_path, {**GOOD, "alerts": {"channel": "#ml-alerts", "conn_id": "slack"}})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert any(
        f == "alerts" and "webhook of connection 'conn_id' fixes the channel" in m
        for f, m in info.value.problems
    ), str(info.value)
    assert load_spec(write(tmp_path, {**GOOD, "alerts": {"conn_id": "slack"}})).alerts.conn_id == (
        "slack"
    )


def test_retrain_on_accepts_label_drift_and_nothing_unknown(tmp_path: Path) -> None:
    ok = load_spec(write(tmp_path, with_("monitoring", {"retrain_on": ["label_drift", "drift"]})))
    assert ok.monitoring.retrain_on == ["label_drift", "drift"]
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, with_("monitoring", {"retrain_on": ["labels"]})))
    assert any(f.startswith("monitoring.retrain_on") for f, _ in info.value.problems)


def test_labels_section_loads_and_names_bad_fields(tmp_path: Path) -> None:
    sql = {"kind": "sql", "conn_id": "warehouse", "query": "select id, y from outcomes"}
    assert load_spec(write(tmp_path, {**GOOD, "labels": sql})).labels.query == sql["query"]
    assert load_spec(write(tmp_path, GOOD)).labels.kind == "file"  # default: <data>/labels/<m>/
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, {**GOOD, "labels": {"kind": "s3", "uri": "labels/"}}))
    assert any(
        f == "labels" and "kind 's3' needs an s3:// uri" in m for f, m in info.value.problems
    ), str(info.value)


def test_live_recording_and_sources_load_with_range_checks(tmp_path: Path) -> None:
    """`monitoring.live` sets the model API's recording; `monitoring.sources` picks the drift
    windows (batch by default); online without live, or a rate outside [0, 1], is refused."""
    assert load_spec(write(tmp_path, GOOD)).monitoring.sources == ["batch"]
    assert load_spec(write(tmp_path, GOOD)).monitoring.live is None
    body = {"live": {"sample_rate": 0.25, "retention_days": 7}, "sources": ["batch", "online"]}
    ok = load_spec(write(tmp_path, with_("monitoring", body))).monitoring
    assert ok.live is not None
    assert (ok.live.sample_rate, ok.live.retention_days, ok.sources) == (
        0.25,
        7,
        ["batch", "online"],
    )
    bad = [
        ({"live": {"sample_rate": 1.5}}, "monitoring.live.sample_rate", "[0, 1]"),
        ({"live": {"retention_days": 0}}, "monitoring.live.retention_days", "[1, 3650]"),
        ({"sources": ["online"]}, "monitoring", "set live"),
        ({"sources": []}, "monitoring.sources", "each once"),
        ({"sources": ["stream"]}, "monitoring.sources", ""),
    ]
    for monitoring, field, words in bad:
        with pytest.raises(SpecError) as info:
            load_spec(write(tmp_path, with_("monitoring", monitoring)))
        assert any(f.startswith(field) and words in m for f, m in info.value.problems), str(
            info.value
        )
