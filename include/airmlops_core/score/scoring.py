"""Bulk scoring: stream a partition through one model version, publish it atomically.

The score DAG calls, in order::

    partitions = list_partitions(input_uri, s3_client=s3)            # once per run
    version = resolve_champion(client, name)                         # once per run
    model = load_model(client, name, version)                        # once per task
    result = score_or_quarantine(model, uri, suite=..., row_key=..., logical_date=...,
                                 output_uri=output_uri(base, name, logical_date,
                                                       partition_name(uri)),
                                 quarantine_uri=...)                 # per partition
    write_manifest(base, results)                                    # once, after all

Streaming. A partition is read in chunks of `CHUNK_ROWS` rows (Parquet: ParquetFile.iter_batches
over the needed columns, pre-buffering off; CSV: pyarrow's streaming CSV reader with the
signature's types). The calling thread reads a chunk and copies it into the model's input;
`workers` threads (default: the usable CPUs, or $AIRMLOPS_SCORING_THREADS) predict chunks,
each with OpenMP and BLAS at one thread, so cores are filled by whole chunks instead of
per-tree parallel regions; finished chunks are written in input order, one output row group
each. Memory holds about three chunks plus the row group the Parquet reader is decoding (Arrow
decodes a whole column chunk at a time, so files with huge row groups cost more), whatever the
partition's size. The input's sha256 is computed by another thread while the first chunks are
predicted (S3 inputs: while downloading to a local temporary file); a local input that changes
while being scored is an error, so the hash always describes the bytes that were scored.

Publishing. Local: the Parquet file is written to a hidden temporary name in the destination
directory, fsynced and renamed (`data.write_local_atomic`), so readers see the previous file
or the complete new one, never a partial one; temporaries left by a killed writer are removed
by the next attempt. S3: the finished local file is uploaded as one object (single PUT or a
multipart upload, which becomes visible only when complete). Output bytes are deterministic:
fixed writer options, no timestamps, one row group per chunk, whatever the number of workers;
the same input, model version and logical date give byte-identical files, at a path that
depends only on (output base, model, logical date, partition), so a re-run overwrites instead
of duplicating.

Output rows: the row key (spec.row_key, or `row_index` when the spec has none), `prediction`,
for classifiers one `proba_<class>` column per class (classes in the model's order; names
sanitised, `proba_<i>` if that would collide), then `model_name`, `model_version`,
`input_sha256` and `logical_date` (UTC timestamp).

Model flavor and signature. `load_model` loads the native sklearn flavor and `LoadedModel`
enforces the model's MLflow signature itself, on the Arrow schema, once per partition: a
missing required column or a type that cannot be converted safely raises `ScoringError` naming
the file and the column; columns outside the signature are never read. The conversions follow
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
Models of other flavors (built elsewhere and onboarded, see airmlops_core.onboard) are
scored through `mlflow.pyfunc` (`PyfuncModel`) behind the same Arrow-level signature checks.

No Airflow imports: usable from tests, a CLI or any orchestrator.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import datetime as dt
import glob
import json
import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from airmlops_core.errors import (
    ChampionNotFound,
    DataError,
    ModelLoadError,
    NoPartitions,
    ScoringError,
)
from airmlops_core.io import data
from airmlops_core.io.scored import (
    INPUT_SHA256,
    LOGICAL_DATE,
    MODEL_NAME,
    MODEL_VERSION,
    PARTITION_EXTENSIONS,
    PREDICTION,
    ROW_INDEX,
    as_utc,
    logical_date_iso,
    manifest_uri,
    partition_name,
    proba_names,
)
from airmlops_core.quality import batch_checks, evidence
from airmlops_core.quality.check import make_result, wrong_delimiter
from airmlops_core.quality.results import CheckResult, Failure
from airmlops_core.quality.suite import READABLE_RULE, Suite
from airmlops_core.tracking import registry

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHUNK_ROWS = 131_072
CHECK_CHUNK_ROWS = 262_144
CSV_BLOCK_BYTES = 8 << 20
PARQUET_READ_BUFFER = 4 << 20
SIGNATURE_RULE = "model.signature"
# Fixed writer options: part of the byte-for-byte reproducibility of the outputs.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "write_page_checksum": True,
    "store_schema": False,
}
_DICT = pa.dictionary(pa.int32(), pa.string())
_GLOB = ("*", "?", "[")
_DELIMITERS = (";", "\t", "|")
_CSV_ERROR_RE = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?(.*)", re.DOTALL)


# --------------------------------------------------------------------------------------------
# Partitions and output layout


def _has_glob(text: str) -> bool:
    return any(c in text for c in _GLOB)


def _is_partition_file(name: str) -> bool:
    return not name.startswith((".", "_")) and name.lower().endswith(PARTITION_EXTENSIONS)


def list_partitions(input_uri: str, *, s3_client: Any | None = None) -> list[str]:
    """The partitions (Parquet/CSV files) at a location, sorted.

    Args:
        input_uri: a file; a directory (its direct .parquet/.pq/.csv files); a glob such as
            /data/batch-*.parquet; s3://bucket/key, s3://bucket/prefix/ (its direct files) or
            an S3 glob (`*` does not cross `/`). Names starting with "." or "_" (temporary
            files, _SUCCESS, manifests) are skipped. Relative paths are relative to the cwd.
        s3_client: a boto3 S3 client, for s3:// locations.

    Raises:
        DataError: nothing matches, or two partitions would get the same output name.
    """
    uri = str(input_uri).strip()
    if not uri:
        raise DataError("empty input location: pass a file, directory, glob or s3:// prefix")
    found = _list_s3(uri, s3_client) if data.is_s3(uri) else _list_local(uri)
    if not found:
        raise NoPartitions(
            f"{uri}: no partitions found (expected .parquet, .pq or .csv files "
            "not starting with '.' or '_')"
        )
    by_name: dict[str, list[str]] = {}
    for u in found:
        by_name.setdefault(partition_name(u), []).append(u)
    clashes = {n: us for n, us in by_name.items() if len(us) > 1}
    if clashes:
        raise DataError(
            f"{uri}: partitions would share an output name: {clashes}; "
            "score one directory per batch or rename the files"
        )
    return found


def _list_local(uri: str) -> list[str]:
    path = data.resolve_uri(uri, os.getcwd())
    if _has_glob(path):
        return sorted(
            p
            for p in glob.glob(path)
            if os.path.isfile(p) and _is_partition_file(os.path.basename(p))
        )
    p = Path(path)
    if p.is_dir():
        return sorted(str(c) for c in p.iterdir() if c.is_file() and _is_partition_file(c.name))
    if p.is_file():
        if not p.name.lower().endswith(PARTITION_EXTENSIONS):
            raise DataError(f"{uri}: not a partition file (expected {list(PARTITION_EXTENSIONS)})")
        return [str(p)]
    raise DataError(f"{uri}: no such file or directory")


def _s3_keys(client: Any, bucket: str, prefix: str, *, delimiter: bool) -> list[str]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = "/"
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    return keys


def _list_s3(uri: str, s3_client: Any | None) -> list[str]:
    client = data.need_client(uri, s3_client)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise DataError(f"{uri}: S3 URI without a bucket")
    try:
        if _has_glob(key):
            prefix = key[: min(key.index(c) for c in _GLOB if c in key)]
            depth = key.count("/")
            hits = [
                k
                for k in _s3_keys(client, bucket, prefix, delimiter=False)
                if k.count("/") == depth and fnmatchcase(k, key)
            ]
        elif not key or key.endswith("/"):
            hits = _s3_keys(client, bucket, key, delimiter=True)
        else:
            near = _s3_keys(client, bucket, key, delimiter=True)
            hits = [key] if key in near else _s3_keys(client, bucket, key + "/", delimiter=True)
    except data.s3_exceptions() as exc:
        raise data.s3_error(uri, exc) from exc
    return [f"s3://{bucket}/{k}" for k in sorted(hits) if _is_partition_file(k.rsplit("/", 1)[-1])]


# --------------------------------------------------------------------------------------------
# The model


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
    """Load one registered version with its input signature.

    Call it once per task with the version `resolve_champion` gave at the start of the run:
    an alias that moves mid-run does not change what the run scores with. Models with the
    sklearn flavor load natively; any other flavor (a model built elsewhere, onboarded with
    airmlops_core.onboard) through `mlflow.pyfunc` (see `load_local`).

    Raises:
        ModelLoadError: the version does not exist, cannot be loaded, or has no usable input
            signature.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    version = str(version)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelLoadError(
            f"model {name} version {version} is not in the registry at "
            f"{client.tracking_uri}: {exc.message}"
        ) from exc
    # resolved through this client: MLflow resolves a models:/ URI against the process-wide
    # registry URI whatever tracking_uri is passed, which may name another server
    source = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="airmlops-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=client.tracking_uri
        )
        return load_local(local, name, version)


def load_local(path: str | Path, name: str, version: str) -> LoadedModel:
    """Load an MLflow model directory: the native sklearn flavor when it has one, else the
    pyfunc flavor behind `PyfuncModel` (predictions; probabilities when the model gives them).

    Raises:
        ModelLoadError: no sklearn or python_function flavor, no usable input signature.
    """
    import mlflow.sklearn
    from mlflow.models import Model

    meta = Model.load(str(path))
    if "sklearn" in meta.flavors:
        estimator = mlflow.sklearn.load_model(str(path))
    elif "python_function" in meta.flavors:
        estimator = PyfuncModel.load(path, meta)
    else:
        raise ModelLoadError(
            f"model {name} version {version} has neither an sklearn nor a "
            f"python_function flavor (flavors: {sorted(meta.flavors)})"
        )
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
    def load(path: str | Path, meta: Any) -> PyfuncModel:
        import mlflow.pyfunc

        loaded = mlflow.pyfunc.load_model(str(path))
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


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Staged:
    """A partition as a local file: where it came from, its hash, and what it holds."""

    uri: str
    path: Path
    digest: Future[str]  # hashed in the background while the file is read
    fmt: str
    stat: tuple[int, int, int] | None = None
    columns: list[str] = field(default_factory=list)
    rows: int | None = None  # from the Parquet footer; None for CSV

    @property
    def sha256(self) -> str:
        """Hex sha256 of the file's bytes (waits for the hashing thread)."""
        return self.digest.result()

    def check_unchanged(self) -> None:
        if self.stat is not None and _stat(self.path) != self.stat:
            raise ScoringError(
                f"{self.uri}: the file changed while it was being scored; "
                "nothing was published, run again"
            )


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@contextlib.contextmanager
def _stage(uri: str, s3_client: Any | None) -> Iterator[_Staged]:
    """Locate (local) or download (S3) a partition and hash its bytes.

    Raises:
        DataError: the file does not exist or has no known extension.
    """
    fmt = data.infer_format(uri, None)
    if not data.is_s3(uri):
        path = data.existing_file(data.resolve_uri(uri, os.getcwd()))
        before = _stat(path)
        # hashing (~1 s per GiB) overlaps with reading and predicting; the stat check at the
        # end proves the hashed bytes are the bytes that were read
        with ThreadPoolExecutor(1, thread_name_prefix="airmlops-hash") as hasher:
            yield _Staged(
                uri=uri,
                path=path,
                digest=hasher.submit(data.file_sha256, str(path)),
                fmt=fmt,
                stat=before,
            )
        return
    with tempfile.TemporaryDirectory(prefix="airmlops-stage-") as tmp:
        import hashlib

        path = Path(tmp) / uri.rsplit("/", 1)[-1]
        digest = hashlib.sha256()
        with path.open("wb") as fh:
            for chunk in data.iter_chunks(uri, s3_client):
                digest.update(chunk)
                fh.write(chunk)
        done: Future[str] = Future()
        done.set_result(digest.hexdigest())
        yield _Staged(uri=uri, path=path, digest=done, fmt=fmt)


def _inspect(staged: _Staged) -> None:
    """Read the header (CSV) or footer (Parquet): column names and, for Parquet, rows."""
    if staged.fmt == "parquet":
        try:
            with pq.ParquetFile(staged.path) as pf:
                staged.columns = [
                    n for n in pf.schema_arrow.names if not n.startswith("__index_level_")
                ]
                staged.rows = pf.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ScoringError(f"{staged.uri}: not a readable Parquet file: {exc}") from exc
        return
    try:
        with staged.path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh))
    except StopIteration:
        raise ScoringError(f"{staged.uri}: empty CSV file (no header)") from None
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{staged.uri}: not UTF-8 text: {exc}") from exc
    except (csv.Error, OSError) as exc:
        raise ScoringError(f"{staged.uri}: not a readable CSV file: {exc}") from exc
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ScoringError(f"{staged.uri}: CSV header repeats column(s) {dupes}")
    staged.columns = header


def _read_error(staged: _Staged, exc: Exception, read: Sequence[str]) -> ScoringError:
    """A reader exception as a ScoringError naming the file (and the column, for CSV)."""
    kind = "Parquet" if staged.fmt == "parquet" else "CSV"
    text = str(exc).strip()
    if staged.fmt == "csv":
        m = _CSV_ERROR_RE.search(text)
        if m:
            idx, row, what = int(m.group(1)), m.group(2), m.group(3).strip()
            column = read[idx] if idx < len(read) else None
            where = f" (row {row})" if row else ""
            if "UTF8" in what or "UTF-8" in what:  # an encoding problem, not the column's type
                return ScoringError(
                    f"{staged.uri}: column '{column}'{where} is not UTF-8 text: {what}"
                )
            return ScoringError(f"{staged.uri}: column '{column}'{where}: {what}", column=column)
        if "UTF8" in text or "UTF-8" in text:
            return ScoringError(f"{staged.uri}: not UTF-8 text: {text}")
    return ScoringError(f"{staged.uri}: not a readable {kind} file: {text}")


def _batches(
    staged: _Staged, columns: Sequence[str], types: Mapping[str, pa.DataType], chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """The partition's `columns` in record batches of `chunk_rows` rows (the last one
    shorter); at least one batch (empty, with the schema, for an empty file)."""
    read = [c for c in staged.columns if c in set(columns)]  # file order
    try:
        if staged.fmt == "parquet":
            # pre_buffer off + a read buffer: column chunks are streamed, not read whole
            with pq.ParquetFile(
                staged.path, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER
            ) as pf:
                schema = pa.schema([pf.schema_arrow.field(c) for c in read])
                yield from _rebatch(
                    pf.iter_batches(batch_size=chunk_rows, columns=read, use_threads=True),
                    chunk_rows,
                    schema,
                )
            return
        reader = pacsv.open_csv(
            staged.path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=","),
            convert_options=pacsv.ConvertOptions(
                include_columns=read,
                column_types={c: t for c, t in types.items() if c in read},
                strings_can_be_null=True,
            ),
        )
        yield from _rebatch(reader, chunk_rows, reader.schema)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _read_error(staged, exc, read) from exc


def _rebatch(
    batches: Iterable[pa.RecordBatch], rows: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly `rows` rows (the last shorter), so
    output row groups do not depend on how a reader happens to cut its input."""
    buf: list[pa.RecordBatch] = []
    held = 0
    emitted = False
    for b in batches:
        if b.num_rows == 0:
            continue
        buf.append(b)
        held += b.num_rows
        while held >= rows:
            table = pa.Table.from_batches(buf)
            yield _one_batch(table.slice(0, rows))
            emitted = True
            rest = table.slice(rows)
            buf, held = rest.to_batches(), rest.num_rows
    if held:
        yield _one_batch(pa.Table.from_batches(buf))
    elif not emitted:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).to_batches()[0]


# --------------------------------------------------------------------------------------------
# Gate


def check_partition(
    input_uri: str,
    suite: Suite,
    *,
    row_key: str | None = None,
    s3_client: Any | None = None,
    chunk_rows: int = CHECK_CHUNK_ROWS,
) -> CheckResult:
    """Check one partition against the model's batch suite, chunk by chunk.

    See `batch_checks` for how rules are split between chunks and the whole table. An
    unreadable file (truncated, not UTF-8, wrong delimiter, a value that does not parse as the
    suite's dtype) is a failed result naming the file, not an exception.

    Raises:
        DataError: the file does not exist.
    """
    with _stage(input_uri, s3_client) as staged:
        return _check_staged(staged, suite, row_key, chunk_rows)


def _check_staged(
    staged: _Staged, suite: Suite, row_key: str | None, chunk_rows: int
) -> CheckResult:
    import pandas as pd

    checked = batch_checks.batch_suite(suite, row_key)
    try:
        _inspect(staged)
    except ScoringError as exc:
        return _failed(checked, staged.uri, str(exc))
    reason = wrong_delimiter(pd.DataFrame(columns=staged.columns), checked)
    if staged.fmt == "csv" and reason is not None:
        return _failed(checked, staged.uri, f"{staged.uri}: {reason}")
    check = batch_checks.StreamingCheck(
        checked, staged.uri, staged.columns, tolerated=[suite.target] if suite.target else []
    )
    try:
        for batch in _batches(staged, check.columns, batch_checks.csv_types(checked), chunk_rows):
            check.add(batch)
    except ScoringError as exc:
        column = exc.column if exc.column in checked.columns else None
        check.fail_read(str(exc), column=column)
    return check.result()


def _failed(
    suite: Suite,
    uri: str,
    reason: str,
    rule: str = READABLE_RULE,
    column: str | None = None,
) -> CheckResult:
    expected = (
        "a readable Parquet/CSV file"
        if rule == READABLE_RULE
        else "input that matches the model's signature"
    )
    failure = Failure(
        rule=rule,
        expectation="read",
        column=column,
        severity="block",
        observed=reason,
        expected=expected,
    )
    return make_result(suite, [failure], rows=0, evaluated=0, batch=True, source=uri)


# --------------------------------------------------------------------------------------------
# Scoring


def peak_rss_mib() -> float:
    """Peak resident memory of this process's address space, in MiB.

    Linux: VmHWM from /proc/self/status. Not ru_maxrss: that keeps the high-water mark across
    fork and exec, so a task forked from a big supervisor (or a child started from a big
    parent) would report the parent's memory. Elsewhere: ru_maxrss.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


class _Constants:
    """The lineage columns of one partition for any chunk length, without Python loops.

    Strings are dictionary arrays (one value, n int32 indices: 4 bytes a row instead of 64 for
    the hash); the file does not store the Arrow schema, so readers see plain strings.
    """

    def __init__(self, model: LoadedModel, sha256: str, logical_date: dt.datetime) -> None:
        self.values = [pa.array([model.name]), pa.array([model.version]), pa.array([sha256])]
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self.micros = (logical_date - epoch) // dt.timedelta(microseconds=1)

    def arrays(self, n: int) -> list[pa.Array]:
        idx = pa.array(np.zeros(n, dtype=np.int32))
        stamps = pa.array(np.full(n, self.micros, dtype=np.int64)).view(
            pa.timestamp("us", tz="UTC")
        )
        return [pa.DictionaryArray.from_arrays(idx, v) for v in self.values] + [stamps]


def _output_schema(model: LoadedModel, key: pa.Field) -> pa.Schema:
    taken = {
        PREDICTION,
        MODEL_NAME,
        MODEL_VERSION,
        INPUT_SHA256,
        LOGICAL_DATE,
        *model.proba_columns,
    }
    if key.name in taken:
        raise ScoringError(
            f"row key '{key.name}' clashes with an output column ({sorted(taken)})", column=key.name
        )
    return pa.schema(
        [
            key,
            pa.field(PREDICTION, model.prediction_type),
            *(pa.field(c, pa.float64()) for c in model.proba_columns),
            pa.field(MODEL_NAME, _DICT),
            pa.field(MODEL_VERSION, _DICT),
            pa.field(INPUT_SHA256, _DICT),
            pa.field(LOGICAL_DATE, pa.timestamp("us", tz="UTC")),
        ]
    )


def default_workers() -> int:
    """Prediction threads per task: $AIRMLOPS_SCORING_THREADS, else the CPUs this process may
    use. Set the variable to cores / concurrent tasks when several tasks share a machine."""
    env = os.environ.get("AIRMLOPS_SCORING_THREADS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _one_thread_each() -> contextlib.AbstractContextManager[Any]:
    """BLAS at one thread while chunks are predicted in parallel (restored afterwards)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _one_openmp_thread() -> None:
    """Worker-thread initializer: OpenMP's thread count is per calling thread, so each worker
    predicts its chunk on one core (no per-tree barriers; workers fill the cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return
    threadpool_limits(limits=1, user_api="openmp")


def _score_into(
    sink: IO[bytes] | str,
    model: LoadedModel,
    staged: _Staged,
    *,
    row_key: str | None,
    logical_date: dt.datetime,
    chunk_rows: int,
    types: Mapping[str, pa.DataType],
    workers: int,
) -> int:
    """Stream the staged partition through the model into a Parquet sink; return rows.

    The calling thread reads a chunk, converts it to the model's input (a copy, so the
    reader's decoded row group is released early), hands it to one of `workers` prediction
    threads, and writes finished chunks in input order (at most workers + 1 in flight). The
    input hash is only needed at the first write, so hashing overlaps with the first
    predictions. Output bytes do not depend on `workers`.
    """
    wanted = [c.name for c in model.inputs if c.name in staged.columns]
    if row_key and row_key not in wanted:
        wanted.append(row_key)
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    consts: _Constants | None = None
    rows = 0

    def predict(X: Any) -> list[pa.Array]:
        pred, proba = model.predict(X)
        cols = [pa.array(pred, type=model.prediction_type)]
        if proba is not None:
            cols += [pa.array(np.ascontiguousarray(proba[:, i])) for i in range(proba.shape[1])]
        return cols

    def write(key: pa.Array, predicted: list[pa.Array]) -> None:
        nonlocal consts
        assert writer is not None
        assert schema is not None
        if consts is None:
            consts = _Constants(model, staged.sha256, logical_date)
        writer.write_batch(
            pa.RecordBatch.from_arrays([key, *predicted, *consts.arrays(len(key))], schema=schema)
        )

    pending: collections.deque[tuple[pa.Array, Future[list[pa.Array]]]] = collections.deque()
    pool = ThreadPoolExecutor(
        max(1, workers), thread_name_prefix="airmlops-score", initializer=_one_openmp_thread
    )
    try:
        with _one_thread_each():
            for batch in _batches(staged, wanted, types, chunk_rows):
                n = batch.num_rows
                if n == 0:
                    continue
                if row_key:
                    key = batch.column(row_key)
                    if pa.types.is_dictionary(key.type):
                        key = key.dictionary_decode()
                    key = pa.concat_arrays([key])  # a copy: no view into the row group
                else:
                    key = pa.array(np.arange(rows, rows + n, dtype=np.int64))
                if writer is None:
                    schema = _output_schema(model, pa.field(row_key or ROW_INDEX, key.type))
                    dictionary = [MODEL_NAME, MODEL_VERSION, INPUT_SHA256]
                    if model.is_classifier:
                        dictionary.append(PREDICTION)  # a few classes: tiny RLE pages
                    writer = pq.ParquetWriter(
                        sink, schema, use_dictionary=dictionary, **PARQUET_OPTIONS
                    )
                X = model.features(batch, staged.uri)
                del batch
                pending.append((key, pool.submit(predict, X)))
                del X, key
                while len(pending) > workers:
                    done_key, future = pending.popleft()
                    write(done_key, future.result())
                rows += n
            while pending:
                done_key, future = pending.popleft()
                write(done_key, future.result())
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if writer is None or rows == 0:
        raise ScoringError(f"{staged.uri}: empty partition (0 rows): nothing to score")
    writer.close()
    return rows


def _remove_stale_temps(path: Path) -> None:
    """Temporaries of `data.write_local_atomic` left by a killed writer of this file."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            log.info("removed %s left by an interrupted write", tmp)


def _publish(uri: str, write: Any, s3_client: Any | None) -> tuple[str, str]:
    """Write a file through `write(sink)` and make it visible at `uri` in one step.

    Returns:
        (the published URI, the sha256 of its bytes).
    """
    if data.is_s3(uri):
        bucket, key = data.split_s3(uri)
        client = data.need_client(uri, s3_client)
        with tempfile.TemporaryDirectory(prefix="airmlops-out-") as tmp:
            local = Path(tmp) / "out"
            with local.open("wb") as fh:
                write(fh)
            digest = data.file_sha256(str(local))
            try:
                client.upload_file(str(local), bucket, key)
            except _upload_exceptions() as exc:
                raise data.s3_error(uri, exc) from exc
        return uri, digest
    path = data.local_path(data.resolve_uri(uri, os.getcwd()))
    _remove_stale_temps(path)
    try:
        digest = data.write_local_atomic(str(path), path, write)
    except OSError as exc:
        raise DataError(f"{uri}: cannot write: {exc}") from exc
    return str(path), digest


def _upload_exceptions() -> tuple[type[Exception], ...]:
    from boto3.exceptions import S3UploadFailedError

    return (*data.s3_exceptions(), S3UploadFailedError)


def _remove(uri: str, s3_client: Any | None) -> bool:
    """Delete a published output (a partition quarantined on a re-run); True if it existed."""
    if data.is_s3(uri):
        bucket, key = data.split_s3(uri)
        client = data.need_client(uri, s3_client)
        try:
            client.head_object(Bucket=bucket, Key=key)
        except data.s3_exceptions():
            return False
        client.delete_object(Bucket=bucket, Key=key)
        return True
    path = data.local_path(data.resolve_uri(uri, os.getcwd()))
    if path.is_file():
        path.unlink()
        return True
    return False


def score_partition(
    model: LoadedModel,
    input_uri: str,
    output_uri: str,
    *,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None = None,
    chunk_rows: int = CHUNK_ROWS,
    column_types: Mapping[str, pa.DataType] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Score one partition in chunks and publish the Parquet output atomically.

    Args:
        model: from `load_model` (one resolved version for the whole run).
        input_uri: a .parquet/.pq/.csv file, local or s3://.
        output_uri: where the scores go (see `output_uri`); overwritten on a re-run.
        row_key: the input column identifying a row (spec.row_key), copied to the output;
            None writes the row's position in the partition as `row_index`.
        logical_date: the run's logical date (datetime or ISO string; naive means UTC).
        s3_client: a boto3 S3 client for s3:// input or output.
        chunk_rows: rows per chunk (and per output row group; part of the output bytes).
        column_types: Arrow types for CSV columns outside the signature (the row key).
        workers: threads predicting chunks in parallel (default `default_workers()`); each
            calls the estimator's predict with OpenMP and BLAS at one thread. Use 1 for an
            estimator whose predict is not thread-safe.

    Returns:
        A JSON-able dict for XCom/lineage: status, partition, input_uri, input_sha256,
        output_uri, output_sha256, rows_in, rows_out, quarantined_rows (0), model_name,
        model_version, logical_date, seconds, rows_per_second, peak_rss_mib (the process's
        peak resident memory so far, see `peak_rss_mib`).

    Raises:
        ScoringError: unreadable or empty input, a missing column, a wrong dtype; nothing is
            published and an earlier output at `output_uri` is left as it was.
        DataError: the input does not exist, or the output cannot be written.
    """
    start = time.perf_counter()
    with _stage(input_uri, s3_client) as staged:
        return _score_staged(
            model,
            staged,
            output_uri,
            row_key=row_key,
            logical_date=logical_date,
            s3_client=s3_client,
            chunk_rows=chunk_rows,
            column_types=column_types,
            start=start,
            workers=workers,
        )


def _score_staged(
    model: LoadedModel,
    staged: _Staged,
    out_uri: str,
    *,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None,
    chunk_rows: int,
    column_types: Mapping[str, pa.DataType] | None,
    start: float,
    workers: int | None = None,
) -> dict[str, Any]:
    if not staged.columns:
        _inspect(staged)
    if staged.fmt == "parquet":
        with pq.ParquetFile(staged.path) as pf:
            model.check_columns(pf.schema_arrow, staged.uri)
    else:
        model.check_columns(staged.columns, staged.uri)
    if row_key and row_key not in staged.columns:
        raise ScoringError(
            f"{staged.uri}: row key column '{row_key}' is missing (columns: {staged.columns[:30]})",
            column=row_key,
        )
    if staged.rows == 0:
        raise ScoringError(f"{staged.uri}: empty partition (0 rows): nothing to score")
    when = as_utc(logical_date)
    types = {**(column_types or {}), **model.arrow_types()}
    counted: dict[str, int] = {}

    def write(sink: IO[bytes]) -> None:
        counted["rows"] = _score_into(
            sink,
            model,
            staged,
            row_key=row_key,
            logical_date=when,
            chunk_rows=chunk_rows,
            types=types,
            workers=workers or default_workers(),
        )
        rows_in = staged.rows if staged.rows is not None else counted["rows"]
        if counted["rows"] != rows_in:
            raise ScoringError(
                f"{staged.uri}: read {counted['rows']} rows but the file holds "
                f"{rows_in}; nothing published"
            )
        staged.check_unchanged()

    published, digest = _publish(out_uri, write, s3_client)
    rows = counted["rows"]
    seconds = time.perf_counter() - start
    log.info(
        "scored %s (%d rows, sha256 %s) with %s v%s -> %s (sha256 %s) in %.1fs",
        staged.uri,
        rows,
        staged.sha256[:12],
        model.name,
        model.version,
        published,
        digest[:12],
        seconds,
    )
    return {
        "status": "scored",
        "partition": partition_name(staged.uri),
        "input_uri": staged.uri,
        "input_sha256": staged.sha256,
        "output_uri": published,
        "output_sha256": digest,
        "rows_in": rows,
        "rows_out": rows,
        "quarantined_rows": 0,
        "model_name": model.name,
        "model_version": model.version,
        "logical_date": logical_date_iso(when),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / max(seconds, 1e-9), 1),
        "peak_rss_mib": peak_rss_mib(),
    }


def score_or_quarantine(
    model: LoadedModel,
    input_uri: str,
    *,
    suite: Suite,
    output_uri: str,
    quarantine_uri: str,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None = None,
    chunk_rows: int = CHUNK_ROWS,
    check_chunk_rows: int = CHECK_CHUNK_ROWS,
    workers: int | None = None,
) -> dict[str, Any]:
    """Gate one partition with the batch suite, then score it, or quarantine it.

    The input is staged (and hashed) once for both passes. A partition that fails the gate, or
    that the model's signature rejects, is not scored: it is quarantined with its evidence
    (`evidence.quarantine`: result.json + report.html, plus the input's bytes as
    input.<ext>), any output an earlier attempt published for it is removed, and the result
    says why. Other partitions are unaffected: the caller decides how the run ends.

    Args:
        quarantine_uri: a directory or s3:// prefix for this partition's evidence.
        Others: as `score_partition`; `suite` is the model's suite (the label is dropped here).

    Returns:
        `score_partition`'s dict plus "check" (warnings, summary), or for a rejected partition:
        status "quarantined", rows_in, quarantined_rows, failed_rules, message,
        quarantine_uri, output_uri None.
    """
    start = time.perf_counter()
    with _stage(input_uri, s3_client) as staged:
        result = _check_staged(staged, suite, row_key, check_chunk_rows)
        if result.success:
            types = batch_checks.csv_types(batch_checks.batch_suite(suite, row_key))
            try:
                out = _score_staged(
                    model,
                    staged,
                    output_uri,
                    row_key=row_key,
                    logical_date=logical_date,
                    s3_client=s3_client,
                    chunk_rows=chunk_rows,
                    column_types=types,
                    start=start,
                    workers=workers,
                )
            except ScoringError as exc:
                checked = batch_checks.batch_suite(suite, row_key)
                result = dataclasses.replace(
                    _failed(checked, staged.uri, str(exc), SIGNATURE_RULE, exc.column),
                    rows=result.rows,
                )
            else:
                out["check"] = {
                    "success": True,
                    "warnings": len(result.warnings),
                    "summary": result.summary(),
                }
                return out
        return _quarantine(
            model,
            staged,
            result,
            output_uri=output_uri,
            quarantine_uri=quarantine_uri,
            logical_date=logical_date,
            s3_client=s3_client,
            start=start,
        )


def _copy_input(staged: _Staged, dest: str, s3_client: Any | None) -> str:
    """The input's exact bytes next to the evidence (streamed, atomic)."""
    if data.is_s3(dest):
        bucket, key = data.split_s3(dest)
        try:
            data.need_client(dest, s3_client).upload_file(str(staged.path), bucket, key)
        except _upload_exceptions() as exc:
            raise data.s3_error(dest, exc) from exc
        return dest
    path = data.local_path(dest)

    def write(sink: IO[bytes]) -> None:
        with staged.path.open("rb") as src:
            shutil.copyfileobj(src, sink, 1 << 20)

    data.write_local_atomic(dest, path, write)
    return str(path)


def _quarantine(
    model: LoadedModel,
    staged: _Staged,
    result: CheckResult,
    *,
    output_uri: str,
    quarantine_uri: str,
    logical_date: str | dt.datetime,
    s3_client: Any | None,
    start: float,
) -> dict[str, Any]:
    q = evidence.quarantine(None, staged.uri, result, quarantine_uri, s3_client=s3_client)
    ext = Path(staged.path.name).suffix.lower() or f".{staged.fmt}"
    copied = _copy_input(staged, data.join_uri(q["uri"], f"input{ext}"), s3_client)
    removed = _remove(output_uri, s3_client)
    rules = ", ".join(result.failed_rules) or "no blocking failure"
    message = (
        f"{staged.uri} was not scored with {model.name} version {model.version}: it "
        f"failed {rules}; quarantined at {q['uri']}"
        + (f" (removed the output {output_uri} of an earlier attempt)" if removed else "")
        + f". {result.summary()}"
    )
    log.warning(message)
    return {
        "status": "quarantined",
        "partition": partition_name(staged.uri),
        "input_uri": staged.uri,
        "input_sha256": staged.sha256,
        "output_uri": None,
        "output_sha256": None,
        "rows_in": result.rows,
        "rows_out": 0,
        "quarantined_rows": result.rows,
        "failed_rules": result.failed_rules,
        "message": message,
        "quarantine_uri": q["uri"],
        "quarantined_input": copied,
        "model_name": model.name,
        "model_version": model.version,
        "logical_date": logical_date_iso(logical_date),
        "seconds": round(time.perf_counter() - start, 3),
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------------------------
# Manifest

_MANIFEST_FIELDS = (
    "partition",
    "status",
    "input_uri",
    "input_sha256",
    "output_uri",
    "output_sha256",
    "rows_in",
    "rows_out",
    "quarantined_rows",
    "failed_rules",
    "quarantine_uri",
)


def write_manifest(
    output_base: str, results: Sequence[Mapping[str, Any]], *, s3_client: Any | None = None
) -> dict[str, Any]:
    """Write the run's manifest next to its outputs (atomically, deterministic bytes).

    Args:
        output_base: the same base the outputs were written under.
        results: every partition's result dict (scored and quarantined) of one run.

    Returns:
        The manifest (model, version, logical date, partitions sorted by name, totals) and
        its "uri".

    Raises:
        ValueError: no results, results of different runs/versions, or a partition twice.
    """
    if not results:
        raise ValueError("write_manifest: no partition results")
    keys = {(r["model_name"], r["model_version"], r["logical_date"]) for r in results}
    if len(keys) != 1:
        raise ValueError(f"write_manifest: results mix models/versions/dates: {sorted(keys)}")
    names = [r["partition"] for r in results]
    if len(set(names)) != len(names):
        raise ValueError(
            f"write_manifest: partitions listed twice: "
            f"{sorted({n for n in names if names.count(n) > 1})}"
        )
    model, version, date = keys.pop()
    parts = [
        {k: r.get(k) for k in _MANIFEST_FIELDS}
        for r in sorted(results, key=lambda r: r["partition"])
    ]
    manifest = {
        "model_name": model,
        "model_version": version,
        "logical_date": date,
        "partitions": parts,
        "totals": {
            "partitions": len(parts),
            "scored": sum(p["status"] == "scored" for p in parts),
            "quarantined": sum(p["status"] == "quarantined" for p in parts),
            "rows_in": sum(int(p["rows_in"] or 0) for p in parts),
            "rows_out": sum(int(p["rows_out"] or 0) for p in parts),
            "quarantined_rows": sum(int(p["quarantined_rows"] or 0) for p in parts),
        },
    }
    uri = manifest_uri(output_base, model, date)
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    written = evidence.write_text(uri, text, s3_client=s3_client, content_type="application/json")
    return {**manifest, "uri": written}
