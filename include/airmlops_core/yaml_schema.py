"""Reviewed YAML files (model specs, expectation suites): read them, validate them, word errors.

One wording for every such file: a problem is a (field path, message) pair of a
`FileSchemaError`, e.g. `columns.tenure.maximum: unknown field` or
`source.uri: Input should be a valid string (got 3)`. Cheap to import (pydantic and yaml only).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from airmlops_core.errors import FileSchemaError

TOP_LEVEL = "(top level)"

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A section of a reviewed file: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def interval(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> str:
    """The allowed range as words: `in [0, 1]`, `in (0, 1]`, `> 0`, `>= 1`, `<= 1`."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return "a finite number"


def within(
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> bool:
    """Whether `value` is finite and lies in the range."""
    if not math.isfinite(value):
        return False
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    return hi is None or not (value > hi or (hi_open and value == hi))


def in_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> AfterValidator:
    """A range check for `Annotated[float, in_range(0, 1)]` whose error names the range:
    `monitoring.fdr: must be in (0, 1) (got 1.5)`; infinity and NaN never pass."""
    allowed = interval(lo, hi, lo_open=lo_open, hi_open=hi_open)

    def check(value: float) -> float:
        if not within(value, lo, hi, lo_open=lo_open, hi_open=hi_open):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


def read_yaml(path: Path, error: type[FileSchemaError]) -> Any:
    """The parsed YAML document in a file (None when it is empty).

    Raises:
        FileSchemaError: of type `error`, naming the file when it cannot be read, is not UTF-8
            text or is not valid YAML.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(path, [("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise error(path, [("(file)", f"not UTF-8 text: {exc.reason}")]) from exc
    except yaml.YAMLError as exc:
        raise error(path, [("(yaml)", f"not valid YAML: {exc}")]) from exc


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted field path (dict-key markers dropped)."""
    return ".".join(str(p) for p in loc if p != "[key]") or TOP_LEVEL


def describe(error: Any) -> str:
    """A pydantic error as one line, quoting the offending scalar value when there is one."""
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown field"
    value = error.get("input")
    if error["type"] not in ("missing", "extra_forbidden") and isinstance(
        value, str | int | float | bool
    ):
        msg += f" (got {value!r})"
    return msg


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every error of a pydantic validation as (field path, message)."""
    return [(field_path(e["loc"]), describe(e)) for e in exc.errors()]


def require_mapping(raw: Any, path: str | Path, error: type[FileSchemaError]) -> dict[str, Any]:
    """`raw` itself when it is a mapping of fields.

    Raises:
        FileSchemaError: of type `error`, naming what the document is instead.
    """
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else type(raw).__name__
        raise error(path, [(TOP_LEVEL, f"expected a mapping of fields, got {kind}")])
    return raw


def parse_model(model: type[M], raw: Any, path: str | Path, error: type[FileSchemaError]) -> M:
    """Validate a loaded document as `model`.

    Raises:
        FileSchemaError: of type `error`, naming `path`, each offending field and what is wrong.
    """
    require_mapping(raw, path, error)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(path, problems(exc)) from None


def require_file_name(path: Path, field: str, name: str, error: type[FileSchemaError]) -> None:
    """The file's own name field must equal its file name (without the extension).

    Raises:
        FileSchemaError: of type `error`, naming the field and both names.
    """
    if name != path.stem:
        raise error(path, [(field, f"'{name}' must equal the file name '{path.stem}'")])


# Numeric settings, by the range they must lie in (the error names field, value and range).
Share = Annotated[float, in_range(0, 1)]
OpenShare = Annotated[float, in_range(0, 1, lo_open=True, hi_open=True)]
NonNegative = Annotated[float, in_range(0)]
Finite = Annotated[float, in_range()]
Hours = Annotated[float, in_range(0, 24 * 365)]  # a cool-down; 0: none
