"""The model a run scores with: one registered version, its estimator and input signature.

`resolve_champion` pins the champion's version once per run; `load_model` loads that version
once per task. `load_model` loads the native sklearn flavor and `LoadedModel` enforces the
model's MLflow signature itself, on the Arrow schema, once per partition: a missing required
column or a type that cannot be converted safely raises `ScoringError` naming the file and the
column; columns outside the signature are never read. The conversions follow
`mlflow.models.utils._enforce_mlflow_datatype` (what `pyfunc.predict` and the public
`mlflow.models.validate_schema` apply) with one deliberate difference: integers are accepted
for `double` features when every value converts exactly (Arrow's safe cast checks |v| <= 2**53),
the cast `training.feature_frame` applied when the model was trained. MLflow refuses int64 ->
double unless every value is 0 or 1 (checked value by value in Python), so pyfunc rejects the
demo batches' int64 columns (tenure) that the models were trained on. Measured with
benchmarks/score_stream.py (HistGradientBoostingClassifier, 100 trees, 20 double features,
1M rows in 131,072-row chunks, one thread, CPU time, best of 3, 2 shared cores): pyfunc.predict
costs +0.7% over the native predict_proba, native + MLflow's `_enforce_schema` +0.7%, these
Arrow-level checks -0.5% (within the 1% resolution); the pyfunc overhead of 4-12% quoted in
the issue did not reproduce for an all-double signature. The native flavor is chosen because
it is at least as fast, keeps int -> double inputs usable, exposes `classes_` (deterministic
probability column names, the prediction derived from the probabilities without a second
pass) and lets worker threads call predict_proba with threads pinned to one.
Every load runs the model-safety check on the downloaded files first (`tracking.model_load`:
a refused version raises UnsafeModel, which fails the task at once); the sklearn flavor is
deserialized by skops with the pack's allow-list. Models of other checked flavors (built
elsewhere and onboarded, see airmlops_core.onboard) are scored through `mlflow.pyfunc`
(`PyfuncModel`) behind the same Arrow-level signature checks.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from airmlops_core.errors import ChampionNotFound, ModelLoadError, ScoringError
from airmlops_core.io.scored import proba_names
from airmlops_core.tracking import model_load, registry

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

_DELIMITERS = (";", "\t", "|")


def resolve_champion(client: MlflowClient, name: str, alias: str = "champion") -> str:
    """The concrete version behind `models:/<name>@<alias>`, resolved once per run.

    Raises:
        ChampionNotFound: no version carries the alias (or the model is not registered).
    """
    version = registry.alias_version(client, name, alias)
    if version is None:
        raise ChampionNotFound(
            f"model '{name}' has no '{alias}' version yet at {client.tracking_uri}: nothing "
            f"has been promoted, so there is nothing to score with. Promote a version first "
            f"(the {name}__validate DAG), then run scoring again."
        )
    return version


@dataclass(frozen=True)
class InputColumn:
    """One column of the model's input signature (`type` is an MLflow DataType name)."""

    name: str
    type: str
    required: bool = True


_ARROW_FOR = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "datetime": pa.timestamp("us"),
}


def _accepts(kind: str, t: pa.DataType) -> bool:
    """Can an Arrow column of type `t` feed a signature column of MLflow type `kind`?"""
    if pa.types.is_dictionary(t):
        t = t.value_type
    types = pa.types
    if types.is_null(t):
        return kind in ("double", "float", "string", "binary", "datetime")
    if kind == "double":
        return types.is_floating(t) or types.is_integer(t)
    if kind == "float":
        return (
            types.is_float32(t)
            or types.is_float16(t)
            or (types.is_integer(t) and t.bit_width <= 16)
        )
    if kind == "long":
        return types.is_integer(t) and not types.is_uint64(t)
    if kind == "integer":
        return types.is_integer(t) and t.bit_width <= (16 if types.is_unsigned_integer(t) else 32)
    if kind == "boolean":
        return types.is_boolean(t)
    if kind == "string":
        return types.is_string(t) or types.is_large_string(t)
    if kind == "binary":
        return types.is_binary(t) or types.is_large_binary(t) or types.is_fixed_size_binary(t)
    if kind == "datetime":
        return types.is_timestamp(t) or types.is_date(t)
    return False


@dataclass(frozen=True)
class LoadedModel:
    """A model version ready to score: the native estimator and its input signature.

    Build it with `load_model` (from the registry) or `from_estimator`.
    """

    name: str
    version: str
    estimator: Any
    inputs: tuple[InputColumn, ...]
    classes: tuple[Any, ...] | None = None
    _classes_np: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_estimator(cls, name: str, version: str, estimator: Any, signature: Any) -> LoadedModel:
        """Wrap an in-memory estimator with an MLflow ModelSignature (or its input Schema).

        Raises:
            ModelLoadError: no column-based input signature, or unsupported column types.
        """
        schema = getattr(signature, "inputs", signature)
        if schema is None or not schema.has_input_names():
            raise ModelLoadError(
                f"model {name} version {version} has no column-based input "
                "signature; scoring needs one to check its input"
            )
        inputs = []
        for spec in schema.inputs:
            kind = getattr(spec.type, "name", str(spec.type))
            if kind not in _ARROW_FOR:
                raise ModelLoadError(
                    f"model {name} version {version}: input '{spec.name}' "
                    f"has type {spec.type}, which batch scoring does not "
                    f"support ({sorted(_ARROW_FOR)})"
                )
            inputs.append(InputColumn(spec.name, kind, bool(getattr(spec, "required", True))))
        classes = None
        classes_np = None
        if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
            classes_np = np.asarray(estimator.classes_)
            classes = tuple(classes_np.tolist())
        return cls(
            name=name,
            version=str(version),
            estimator=estimator,
            inputs=tuple(inputs),
            classes=classes,
            _classes_np=classes_np,
        )

    @property
    def is_classifier(self) -> bool:
        """True when the model gives class probabilities."""
        return self.classes is not None

    @property
    def proba_columns(self) -> list[str]:
        """Output column names of the class probabilities, in the model's class order."""
        return proba_names(self.classes) if self.classes is not None else []

    @property
    def prediction_type(self) -> pa.DataType:
        """Arrow type of the prediction column: the classes' type, float64 for a regressor."""
        if self._classes_np is None:
            return pa.float64()
        return pa.array(self._classes_np).type

    def arrow_types(self) -> dict[str, pa.DataType]:
        """Arrow types to parse CSV columns with: the signature's."""
        return {c.name: _ARROW_FOR[c.type] for c in self.inputs}

    def check_columns(self, schema: pa.Schema | Sequence[str], source: str) -> None:
        """Raise ScoringError naming every missing or wrongly typed signature column."""
        names = list(schema.names) if isinstance(schema, pa.Schema) else list(schema)
        missing = [c for c in self.inputs if c.required and c.name not in names]
        if missing:
            hint = ""
            if len(names) == 1 and any(s in names[0] for s in _DELIMITERS):
                hint = (
                    f"; the file has a single column {names[0][:60]!r}: is the delimiter "
                    "wrong? (CSV files must be comma-separated)"
                )
            listed = ", ".join(f"'{c.name}' ({c.type})" for c in missing)
            raise ScoringError(
                f"{source}: missing column(s) {listed} required by the signature of model "
                f"{self.name} version {self.version}{hint}",
                column=missing[0].name,
            )
        if not isinstance(schema, pa.Schema):
            return
        wrong = [
            (c, schema.field(c.name).type)
            for c in self.inputs
            if c.name in names and not _accepts(c.type, schema.field(c.name).type)
        ]
        if wrong:
            listed = "; ".join(
                f"column '{c.name}' is {t}, the model expects {c.type}" for c, t in wrong
            )
            raise ScoringError(
                f"{source}: wrong dtype for model {self.name} version {self.version}: {listed}",
                column=wrong[0][0].name,
            )

    def features(self, batch: pa.RecordBatch | pa.Table, source: str) -> pd.DataFrame:
        """The model's input frame from an Arrow chunk: signature columns, in signature
        order, converted safely (extra columns are dropped).

        Raises:
            ScoringError: a column is missing, has the wrong type, holds a value that does not
                convert exactly, or has missing values where the type cannot hold them.
        """
        import pandas as pd

        self.check_columns(batch.schema, source)
        cols = {
            c.name: _to_numpy(batch.column(c.name), c, source)
            for c in self.inputs
            if c.name in batch.schema.names
        }
        # Always a copy, never a view into the reader's buffers (so a decoded row group is
        # freed as soon as its chunks are converted). All-double inputs become one block,
        # copied column by column (contiguous) and used by sklearn as is (Fortran order).
        if cols and all(a.dtype == np.float64 for a in cols.values()):
            block = np.vstack(list(cols.values()))
            return pd.DataFrame(block.T, columns=list(cols), copy=False)
        return pd.DataFrame({k: np.array(v, copy=True) for k, v in cols.items()}, copy=False)

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, class probabilities or None). A classifier's prediction is the class
        with the highest probability (the first on ties), as sklearn's own predict."""
        if self._classes_np is not None:
            proba = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
            if proba.ndim != 2 or proba.shape[1] != len(self._classes_np):
                raise ModelLoadError(
                    f"model {self.name} version {self.version}: predict_proba "
                    f"gave shape {proba.shape} for {len(self._classes_np)} "
                    "classes"
                )
            return self._classes_np[np.argmax(proba, axis=1)], proba
        return np.asarray(self.estimator.predict(X), dtype=np.float64), None


def _to_numpy(column: pa.Array | pa.ChunkedArray, col: InputColumn, source: str) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not _accepts(col.type, arr.type):
        raise ScoringError(
            f"{source}: column '{col.name}' is {arr.type}, the model expects {col.type}",
            column=col.name,
        )
    if col.type in ("long", "integer", "boolean") and arr.null_count:
        raise ScoringError(
            f"{source}: column '{col.name}' has {arr.null_count} missing "
            f"value(s), but the model expects {col.type}, which cannot hold "
            "missing values",
            column=col.name,
        )
    target = _ARROW_FOR[col.type]
    if col.type == "datetime":
        target = pa.timestamp("ns")
    if col.type in ("string", "binary"):
        return arr.to_numpy(zero_copy_only=False)  # object array, None for missing
    if arr.type != target:
        try:
            arr = arr.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ScoringError(
                f"{source}: column '{col.name}' ({column.type}) does not "
                f"convert exactly to {col.type}: {exc}",
                column=col.name,
            ) from exc
    return arr.to_numpy(zero_copy_only=False)


def load_model(client: MlflowClient, name: str, version: str | int) -> LoadedModel:
    """Load one registered version with its input signature, after the model-safety check.

    Call it once per task with the version `resolve_champion` gave at the start of the run:
    an alias that moves mid-run does not change what the run scores with. The downloaded
    files are checked right before they are loaded (`tracking.model_load`); a version that
    fails is refused whatever its tags say. Models with the sklearn flavor load natively; any
    other checked flavor (a model built elsewhere, onboarded with airmlops_core.onboard)
    through `mlflow.pyfunc` (see `load_local`).

    Raises:
        ModelLoadError: the version does not exist, cannot be loaded, or has no usable input
            signature.
        UnsafeModel: the version failed the model-safety check (named, with why).
    """
    version = str(version)
    with tempfile.TemporaryDirectory(prefix="airmlops-model-") as tmp:
        local = model_load.download_version(client, name, version, Path(tmp))
        return load_local(local, name, version)


def load_local(path: str | Path, name: str, version: str) -> LoadedModel:
    """Check and load an MLflow model directory: the native sklearn flavor when it has one,
    else the pyfunc flavor behind `PyfuncModel` (predictions; probabilities when the model
    gives them).

    Raises:
        UnsafeModel: the model-safety check refused it; nothing was deserialized.
        ModelLoadError: no usable input signature.
    """
    safe = model_load.load_dir(path, model_load.version_label(name, version))
    meta = safe.meta
    estimator = safe.native if safe.native is not None else PyfuncModel.wrap(safe.pyfunc(), meta)
    if meta.signature is None:
        raise ModelLoadError(
            f"model {name} version {version} was logged without a signature; "
            "scoring needs one to check its input"
        )
    model = LoadedModel.from_estimator(name, version, estimator, meta.signature)
    log.info(
        "loaded %s version %s (%s, %d inputs%s)",
        name,
        version,
        type(estimator).__name__,
        len(model.inputs),
        f", classes {list(model.classes)}" if model.classes else "",
    )
    return model


class PyfuncModel:
    """A model of any MLflow flavor, scored through `mlflow.pyfunc`, as predict/predict_proba.

    `predict` is the pyfunc prediction. Class probabilities exist only when the flavor gives
    them: the model's output signature names one column per class (the pyfunc output is then
    a frame of probabilities; integer-like names become int classes), or the underlying model
    has `predict_proba` and `classes_`. Without them the instance is a `PyfuncModel` without
    `predict_proba`, which `LoadedModel` treats as a regressor (numeric predictions).
    """

    def __init__(self, pyfunc_model: Any) -> None:
        self.pyfunc_model = pyfunc_model

    @staticmethod
    def wrap(loaded: Any, meta: Any) -> PyfuncModel:
        """Wrap a loaded `mlflow.pyfunc.PyFuncModel` (`meta`: its MLflow Model); see the class."""
        raw = None
        with contextlib.suppress(Exception):
            raw = loaded.get_raw_model()
        if raw is not None and hasattr(raw, "predict_proba") and hasattr(raw, "classes_"):
            return _PyfuncClassifier(loaded, classes=np.asarray(raw.classes_), raw=raw)
        outputs = meta.signature.outputs if meta.signature is not None else None
        names = outputs.input_names() if outputs is not None and outputs.has_input_names() else []
        if len(names) >= 2:
            classes = [int(n) if re.fullmatch(r"-?\d+", str(n)) else n for n in names]
            return _PyfuncClassifier(loaded, classes=np.asarray(classes), columns=list(names))
        return PyfuncModel(loaded)

    def predict(self, X: Any) -> np.ndarray:
        """The pyfunc prediction as a 1-d array (the first column of a 2-d output)."""
        out = self.pyfunc_model.predict(X)
        arr = out.to_numpy() if hasattr(out, "to_numpy") else np.asarray(out)
        return arr.reshape(len(X), -1)[:, 0] if arr.ndim > 1 else arr


class _PyfuncClassifier(PyfuncModel):
    """A pyfunc model that gives class probabilities (see PyfuncModel)."""

    def __init__(
        self,
        pyfunc_model: Any,
        *,
        classes: np.ndarray,
        raw: Any = None,
        columns: list[str] | None = None,
    ) -> None:
        super().__init__(pyfunc_model)
        self.classes_ = classes
        self.raw = raw
        self.columns = columns

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.raw is not None:
            return np.asarray(self.raw.predict_proba(X), dtype=np.float64)
        out = self.pyfunc_model.predict(X)
        if hasattr(out, "columns") and self.columns is not None:
            missing = [c for c in self.columns if c not in out.columns]
            if missing:
                raise ModelLoadError(
                    f"pyfunc output lacks the class columns {missing} its "
                    f"signature names (got {list(out.columns)})"
                )
            out = out[self.columns]
        return np.asarray(out, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])
