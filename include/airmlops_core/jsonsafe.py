"""One JSON sanitiser for everything the pack logs, tags or hands between tasks."""

from __future__ import annotations

import json
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as plain JSON-able Python: non-finite floats and NaT/NaN become None, numpy
    scalars and arrays become Python, dates become ISO strings, anything else its str()."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, pandas Series
    if callable(tolist):
        try:
            return jsonable(tolist())
        except (ValueError, TypeError):
            pass
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        try:
            return str(iso())
        except (ValueError, TypeError):
            return None  # NaT
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """Compact, strict JSON (no NaN) of `jsonable(value)`."""
    return json.dumps(jsonable(value), separators=(",", ":"), allow_nan=False, **kwargs)
