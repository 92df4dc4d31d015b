"""What the pack refuses to load: anything that would run code from a model built elsewhere.

Pickle and joblib files (by extension and by content), skops files asking for types outside
`TRUSTED_PREFIXES`, MLflow models whose flavor deserializes with pickle/cloudpickle or imports
code shipped with the model, and any pickle among a model directory's files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from airmlops_core.errors import OnboardError, UnsafeModel

# skops may construct these (module prefixes) when loading a model file: scikit-learn, NumPy
# and SciPy types (and imbalanced-learn's pipelines), what the pack's own trained pipelines
# hold (training.trusted_types). Anything else (os.system, builtins.eval, a vendor's class)
# is refused, named.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "imblearn.")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".sav", ".pt", ".pth", ".dill")
# MLflow's python_function loaders that read no pickle when their flavor says so (checked
# below per flavor); a custom loader module or a code directory is code from the model.
SAFE_LOADERS = {
    "mlflow.sklearn",
    "mlflow.xgboost",
    "mlflow.lightgbm",
    "mlflow.catboost",
    "mlflow.onnx",
    "mlflow.prophet",
}
PICKLE_FLAVORS = {
    "statsmodels",
    "pmdarima",
    "paddle",
    "pytorch",
    "fastai",
    "h2o",
    "diviner",
    "spacy",
    "sentence_transformers",
    "langchain",
    "llama_index",
    "dspy",
}
CONVERT_HINT = (
    "convert it to skops: `import skops.io; skops.io.dump(model, 'model.skops')` "
    "where the model was built, or log it with mlflow.sklearn.log_model(..., "
    "serialization_format='skops')"
)


def _pickle_header(head: bytes) -> bool:
    """A pickle stream of protocol 2 to 5 starts with PROTO (0x80) and the protocol byte."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def pickle_reason(path: Path) -> str | None:
    """Why `path` is (or holds) a pickle, or None: extension, pickle header, or a zip archive
    with pickled members (PyTorch's format) or without skops' schema."""
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        return f"its extension ({path.suffix}) is a pickle/joblib format"
    with path.open("rb") as fh:
        head = fh.read(4)
    if _pickle_header(head):
        return f"its content is a pickle stream (protocol {head[1]} header 0x80)"
    if head[:2] == b"\x1f\x8b" and name.endswith((".skops", ".gz")):
        return "it is gzip-compressed (joblib's compressed pickle)"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pickled = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
            if pickled:
                return f"the archive holds pickled members {pickled[:5]}"
            if name.endswith(".skops") and "schema.json" not in names:
                return "it is a zip archive without skops' schema.json (not a skops file)"
    return None


def refuse_pickle(path: Path, where: str) -> None:
    """Raise UnsafeModel when `path` is a pickle (see pickle_reason)."""
    reason = pickle_reason(path)
    if reason:
        raise UnsafeModel(
            f"{where}: refused, {reason}. Loading a pickle can execute arbitrary "
            f"code, so the pack never loads one; {CONVERT_HINT}"
        )


def untrusted_types(path: Path) -> list[str]:
    """Types a skops file asks to construct that are outside TRUSTED_PREFIXES."""
    from skops.io import get_untrusted_types

    try:
        asked = get_untrusted_types(file=str(path))
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on a broken file
        raise OnboardError(
            f"{path}: not a readable skops file: {type(exc).__name__}: {exc}"
        ) from exc
    return sorted(t for t in asked if not t.startswith(TRUSTED_PREFIXES))


def check_mlflow_model(path: Path, where: str) -> list[str]:
    """Refuse an MLflow model directory whose loading would unpickle or import its code.

    Returns:
        The model's flavors.

    Raises:
        UnsafeModel: naming the flavor setting or the file.
        OnboardError: not an MLflow model directory.
    """
    from mlflow.models import Model

    try:
        meta = Model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a missing or broken MLmodel file
        raise OnboardError(
            f"{where}: not an MLflow model (no readable MLmodel file): {exc}"
        ) from exc
    flavors = meta.flavors
    sk = flavors.get("sklearn")
    if sk is not None and sk.get("serialization_format", "pickle") != "skops":
        raise UnsafeModel(
            f"{where}: refused, its sklearn flavor is serialized with "
            f"{sk.get('serialization_format', 'pickle')}, which can execute "
            f"arbitrary code when loaded; {CONVERT_HINT}"
        )
    unsafe = sorted(set(flavors) & PICKLE_FLAVORS)
    if unsafe:
        raise UnsafeModel(
            f"{where}: refused, the {unsafe[0]} flavor loads its model with "
            "pickle, which can execute arbitrary code; export it to a safe "
            "format (skops, ONNX, the library's own JSON/text format)"
        )
    pyfunc = flavors.get("python_function")
    if pyfunc is not None:
        if pyfunc.get("model_code_path") or pyfunc.get("code"):
            raise UnsafeModel(
                f"{where}: refused, its python_function flavor runs Python code "
                f"shipped with the model ({pyfunc.get('model_code_path') or 'code/'}"
                ") when loaded; onboard a model in a serialized format instead"
            )
        if pyfunc.get("python_model"):
            raise UnsafeModel(
                f"{where}: refused, its python_function flavor holds a "
                f"cloudpickled python_model ({pyfunc.get('python_model')}), "
                "which can execute arbitrary code when loaded"
            )
        loader = pyfunc.get("loader_module")
        if loader and loader not in SAFE_LOADERS:
            raise UnsafeModel(
                f"{where}: refused, its python_function flavor loads through "
                f"'{loader}', which is not one of MLflow's loaders known to read "
                f"no pickle ({sorted(SAFE_LOADERS)})"
            )
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        reason = pickle_reason(file)
        if reason:
            rel = file.relative_to(path)
            raise UnsafeModel(
                f"{where}: refused, the model's file {rel} is a pickle: {reason}. "
                "Loading a pickle can execute arbitrary code"
            )
    return sorted(flavors)
