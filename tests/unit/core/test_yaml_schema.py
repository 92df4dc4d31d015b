"""Tests of airmlops_core.yaml_schema: one reading and one wording for every reviewed YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from airmlops_core import yaml_schema
from airmlops_core.errors import FileSchemaError, SpecError, SuiteError
from airmlops_core.quality.suite import Suite, load_suite
from airmlops_core.spec import load_spec
from airmlops_core.yaml_schema import StrictModel

SPEC = {
    "name": "m1",
    "task": "binary",
    "source": {"kind": "file", "uri": "demo/x.parquet"},
    "target": "y",
    "features": {"numeric": ["a"]},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    "metrics": {"primary": "roc_auc"},
}
SUITE = {"model": "m1", "target": "y", "columns": {"a": {"dtype": "float64"}, "y": {}}}


def problems(load: object, path: Path, body: object) -> list[tuple[str, str]]:
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    with pytest.raises(FileSchemaError) as info:
        load(path)  # type: ignore[operator]
    return info.value.problems


@pytest.mark.parametrize(
    ("spec_body", "suite_body", "spec_field", "suite_field"),
    [
        (  # a typo of a top-level field
            {**SPEC, "descripton": "x"},
            {**SUITE, "descripton": "x"},
            "descripton",
            "descripton",
        ),
        (  # a typo of a nested field
            {**SPEC, "split": {"seed": 1, "sead": 2}},
            {**SUITE, "row_count": {"min": 1, "mni": 2}},
            "split.sead",
            "row_count.mni",
        ),
        (  # a value of the wrong type is quoted the same way
            {**SPEC, "split": {"seed": "abc"}},
            {**SUITE, "row_count": {"min": "abc"}},
            "split.seed",
            "row_count.min",
        ),
    ],
)
def test_the_same_typo_reads_the_same_in_a_spec_and_a_suite(
    tmp_path: Path, spec_body: dict, suite_body: dict, spec_field: str, suite_field: str
) -> None:
    (spec_dir := tmp_path / "models").mkdir()
    (suite_dir := tmp_path / "expectations").mkdir()
    in_spec = problems(load_spec, spec_dir / "m1.yaml", spec_body)
    in_suite = problems(load_suite, suite_dir / "m1.yaml", suite_body)
    assert [f for f, _ in in_spec] == [spec_field]
    assert [f for f, _ in in_suite] == [suite_field]
    assert [m for _, m in in_spec] == [m for _, m in in_suite]


def test_unknown_field_wording(tmp_path: Path) -> None:
    found = problems(load_spec, tmp_path / "m1.yaml", {**SPEC, "colour": "red"})
    assert found == [("colour", "unknown field")]
    found = problems(load_suite, tmp_path / "m1.yaml", {**SUITE, "colour": "red"})
    assert found == [("colour", "unknown field")]


@pytest.mark.parametrize("load", [load_spec, load_suite])
@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"name: [unclosed\n", "(yaml)", "not valid YAML"),
        (b"\xff\xfe not text", "(file)", "not UTF-8 text"),
        (b"", "(top level)", "expected a mapping of fields, got empty"),
        (b"- a list\n", "(top level)", "expected a mapping of fields, got list"),
    ],
)
def test_unreadable_files_read_the_same(
    tmp_path: Path, load: object, raw: bytes, field: str, message: str
) -> None:
    path = tmp_path / "m1.yaml"
    path.write_bytes(raw)
    with pytest.raises(FileSchemaError) as info:
        load(path)  # type: ignore[operator]
    assert str(path) in str(info.value)
    [(got_field, got_message)] = info.value.problems
    assert (got_field, message in got_message) == (field, True), info.value


def test_read_yaml_missing_file_and_error_type(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as info:
        yaml_schema.read_yaml(tmp_path / "nope.yaml", SuiteError)
    assert info.value.problems[0][0] == "(file)"
    assert "cannot read" in info.value.problems[0][1]
    assert "invalid expectation suite" in str(info.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    assert yaml_schema.read_yaml(empty, SpecError) is None


class _Inner(StrictModel):
    level: int = 0


class _Outer(StrictModel):
    name: str
    inner: _Inner = _Inner()
    by_key: dict[int, str] = {}


def test_problems_paths_and_messages() -> None:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(
            {"inner": {"level": "high", "extra": 1}, "by_key": {"x": "a"}, "other": True}
        )
    assert sorted(yaml_schema.problems(info.value)) == [
        (
            "by_key.x",
            "Input should be a valid integer, unable to parse string as an integer (got 'x')",
        ),
        ("inner.extra", "unknown field"),
        (
            "inner.level",
            "Input should be a valid integer, unable to parse string as an integer (got 'high')",
        ),
        ("name", "Field required"),
        ("other", "unknown field"),
    ]


def test_parse_model_and_file_name(tmp_path: Path) -> None:
    path = tmp_path / "m1.yaml"
    with pytest.raises(SuiteError) as info:
        yaml_schema.parse_model(Suite, {"model": "m1", "columns": {}}, path, SuiteError)
    assert info.value.problems == [("columns", "at least one column is required")]
    assert yaml_schema.parse_model(_Outer, {"name": "a"}, path, SpecError) == _Outer(name="a")
    yaml_schema.require_file_name(path, "name", "m1", SpecError)
    with pytest.raises(SpecError, match="'m2' must equal the file name 'm1'"):
        yaml_schema.require_file_name(path, "name", "m2", SpecError)


@pytest.mark.parametrize(
    ("bounds", "words", "inside", "outside"),
    [
        ((0, 1, False, False), "in [0, 1]", [0, 0.5, 1], [-0.001, 1.001]),
        ((0, 1, True, True), "in (0, 1)", [0.001, 0.999], [0, 1]),
        ((0, 1, True, False), "in (0, 1]", [1], [0]),
        ((0, None, False, False), ">= 0", [0, 1e300], [-1e-9]),
        ((0, None, True, False), "> 0", [1e-9], [0]),
        ((None, 1, False, False), "<= 1", [-1e300, 1], [1.5]),
        ((None, None, False, False), "a finite number", [-5, 0, 5], []),
    ],
)
def test_ranges_say_what_is_allowed_and_refuse_infinity_and_nan(
    bounds: tuple, words: str, inside: list, outside: list
) -> None:
    lo, hi, lo_open, hi_open = bounds
    assert yaml_schema.interval(lo, hi, lo_open=lo_open, hi_open=hi_open) == words
    for value in inside:
        assert yaml_schema.within(value, lo, hi, lo_open=lo_open, hi_open=hi_open), value
    for value in [*outside, float("inf"), float("-inf"), float("nan")]:
        assert not yaml_schema.within(value, lo, hi, lo_open=lo_open, hi_open=hi_open), value
