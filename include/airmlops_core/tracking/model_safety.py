"""The one model-safety check: what the pack refuses to load, run on the very bytes it loads.

Every load of a model (onboarding, the score task, the model API, the validate gate, training's
own evaluation, rollback targets) goes through `tracking.model_load`, which calls this check on
the downloaded files right before deserializing them. Nothing is trusted from the model itself
or from a registry tag:

- **pickles**, in any protocol (0 to 5, with or without the PROTO header), under any name, in
  any file of a model directory, inside zip archives (PyTorch's format, a skops file's members)
  and inside gzip/bz2/xz/zlib wrappers (joblib's compressed pickles), found by their content
  (`pickletools.genops` reading the opcodes), plus NumPy `.npy` arrays of Python objects;
- **skops files** asking for a type outside `ALLOWED_TYPES`, the exact allow-list the pack
  derives from its own pipelines (`tracking.skops_allowlist`); the loader passes that list to
  skops, never the `skops_trusted_types` a model's MLmodel file declares;
- **MLmodel files** whose python_function loader is not one of `SAFE_LOADERS` with its own
  flavor section declaring a safe format (`mlflow.sklearn` needs an sklearn flavor with
  `serialization_format: skops`), a flavor outside those, a cloudpickled `python_model`, models
  from code, code paths, a model file outside the directory;
- **symlinks** anywhere inside a model directory.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickletools
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from airmlops_core.errors import UnsafeModel
from airmlops_core.tracking.skops_allowlist import ALLOWED_TYPES

# MLflow's own switch: False makes its flavors refuse pickle/cloudpickle and any sklearn
# deserialization (skops included, whose trust list MLflow would read from the model)
PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
SKOPS = "skops"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".sav", ".pt", ".pth", ".dill")
# python_function loader -> the flavor section it reads, and what that section must declare
SAFE_LOADERS = {
    "mlflow.sklearn": "sklearn",
    "mlflow.xgboost": "xgboost",
    "mlflow.lightgbm": "lightgbm",
    "mlflow.catboost": "catboost",
    "mlflow.onnx": "onnx",
    "mlflow.prophet": "prophet",
}
_XGB = "xgboost.sklearn."
FLAVOR_RULES: dict[str, dict[str, frozenset[str]]] = {
    "sklearn": {"serialization_format": frozenset({SKOPS})},
    "xgboost": {
        "model_class": frozenset(
            {"xgboost.core.Booster"}
            | {_XGB + c for c in ("XGBClassifier", "XGBRegressor", "XGBRFClassifier")}
            | {_XGB + c for c in ("XGBRFRegressor", "XGBRanker")}
        ),
        "model_format": frozenset({"json", "ubj", "xgb"}),
    },
    # any other class goes through MLflow's sklearn (pickle) path
    "lightgbm": {"model_class": frozenset({"lightgbm.basic.Booster"})},
    "catboost": {
        "model_type": frozenset({"CatBoost", "CatBoostClassifier", "CatBoostRegressor"}),
        "save_format": frozenset({"cbm", "json"}),
    },
    "onnx": {},
    "prophet": {},
}
PREDICT_FNS = frozenset({"predict", "predict_proba", "predict_log_proba"})
CONVERT_HINT = (
    "convert it to skops: `import skops.io; skops.io.dump(model, 'model.skops')` "
    "where the model was built, or log it with mlflow.sklearn.log_model(..., "
    "serialization_format='skops')"
)
SCAN_LIMIT = 64 << 20  # bytes read from a compressed or archived member
_MAX_DEPTH = 3
_NAME = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*\Z")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING"}
_STRINGS |= {"BINSTRING", "STRING"}
_NOOPS = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"}


def forbid_pickle() -> None:
    """Set MLflow's pickle switch off in this process (see PICKLE_SWITCH)."""
    os.environ[PICKLE_SWITCH] = "false"


# --------------------------------------------------------------------------------------------
# Pickles, by content


def _pickle_ops(stream: Any) -> str | None:
    """What makes `stream` a pickle, read opcode by opcode, or None when it is not one.

    A pickle is what `pickle.load` would act on: a PROTO header, an import of a global (GLOBAL
    or INST with `module name` arguments, STACK_GLOBAL after two strings: protocol 0/1 and
    headerless streams) or a complete stream ending in STOP.
    """
    head = stream.read(2)
    if len(head) == 2 and head[0] == 0x80 and head[1] <= 5:
        return f"a pickle stream (protocol {head[1]})"
    recent: list[str] = []
    count = 0
    try:
        ops = pickletools.genops(_Rejoined(head, stream))  # type: ignore[arg-type]
        for op, arg, _ in ops:
            count += 1
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str) and _NAME.match(arg):
                glob = arg.replace(" ", ".")
                return f"a pickle stream importing {glob} (protocol 0/1, or no PROTO header)"
            if (
                op.name == "STACK_GLOBAL"
                and recent[-2:]
                and all(r in _STRINGS for r in recent[-2:])
            ):
                return "a pickle stream importing a global (STACK_GLOBAL, no PROTO header)"
            if op.name == "STOP":
                return "a complete pickle stream (no PROTO header)" if count > 1 else None
            if op.name not in _NOOPS:
                recent = [*recent[-1:], op.name]
    except Exception:  # noqa: BLE001 - not a pickle: genops stops at the first bad opcode
        return None
    return None


class _Rejoined:
    """`head` (already read) followed by the rest of `stream`: what genops and the
    decompressors read (read and readline only, no seeking)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            out, self._head = self._head + self._stream.read(), b""
            return out
        out, self._head = self._head[:size], self._head[size:]
        return out if len(out) == size else out + self._stream.read(size - len(out))

    def readline(self, size: int = -1) -> bytes:
        line = b""
        while not line.endswith(b"\n") and (size < 0 or len(line) < size):
            ch = self.read(1)
            if not ch:
                break
            line += ch
        return line


def _unwrap(head: bytes, stream: Any) -> tuple[str, Any] | None:
    """A compression wrapper's name and its decompressed stream, or None."""
    if head[:2] == b"\x1f\x8b":
        return "gzip", gzip.GzipFile(fileobj=stream, mode="rb")
    if head[:3] == b"BZh":
        return "bz2", bz2.BZ2File(stream)
    if head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"\x5d\x00\x00":
        return "xz/lzma", lzma.LZMAFile(stream)
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        try:
            return "zlib", io.BytesIO(
                zlib.decompressobj().decompress(stream.read(SCAN_LIMIT), SCAN_LIMIT)
            )
        except zlib.error:
            return None
    return None


def _npy_objects(head: bytes) -> bool:
    return head.startswith(b"\x93NUMPY") and b"'descr': '|O'" in head[:512]


def _stream_reason(stream: Any, depth: int) -> str | None:
    """Why the bytes of `stream` are (or hold) a pickle, or None (see pickle_reason)."""
    head = stream.read(512)
    if head.startswith(b"PK"):
        data = head + stream.read(SCAN_LIMIT)
        if zipfile.is_zipfile(io.BytesIO(data)):
            return _zip_reason(zipfile.ZipFile(io.BytesIO(data)), depth)
    if head.startswith(b"\x93NUMPY"):
        return (
            "a NumPy array of Python objects (stored as a pickle)" if _npy_objects(head) else None
        )
    if depth < _MAX_DEPTH and (wrapped := _unwrap(head, _Rejoined(head, stream))) is not None:
        kind, inner = wrapped
        try:
            reason = _stream_reason(inner, depth + 1)
        except (OSError, EOFError, lzma.LZMAError, zlib.error):
            reason = None
        return f"{kind}-compressed {reason}" if reason else None
    return _pickle_ops(_Rejoined(head, stream))


def _zip_reason(zf: zipfile.ZipFile, depth: int) -> str | None:
    if depth >= _MAX_DEPTH:
        return "a zip archive nested too deep to check"
    for info in zf.infolist():
        if info.is_dir():
            continue
        if info.filename.lower().endswith(PICKLE_SUFFIXES):
            return f"a zip archive holding {info.filename} (a pickle/joblib extension)"
        with zf.open(info) as member:
            reason = _stream_reason(io.BytesIO(member.read(SCAN_LIMIT)), depth + 1)
        if reason:
            return f"a zip archive whose member {info.filename} is {reason}"
    return None


def pickle_reason(path: Path) -> str | None:
    """Why the file at `path` is, or holds, a pickle; None when it does not.

    By extension (PICKLE_SUFFIXES) and by content, whatever the name: see the module docstring.
    """
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        return f"its extension ({path.suffix}) is a pickle/joblib format"
    with path.open("rb") as fh:
        reason = _stream_reason(fh, 0)
    return f"its content is {reason}" if reason else None


def refuse_pickle(path: Path, where: str) -> None:
    """Raise UnsafeModel when `path` is or holds a pickle (see pickle_reason)."""
    reason = pickle_reason(path)
    if reason:
        raise UnsafeModel(
            f"{where}: refused, {reason}. Loading a pickle can execute arbitrary "
            f"code, so the pack never loads one; {CONVERT_HINT}"
        )


# --------------------------------------------------------------------------------------------
# skops files


def skops_types(path: Path, where: str) -> list[str]:
    """The types beyond skops' defaults that the skops file at `path` needs, all allowed.

    Raises:
        UnsafeModel: a pickle, not a skops file, or a type outside ALLOWED_TYPES (named).
    """
    from skops.io import get_untrusted_types

    refuse_pickle(path, where)
    if not zipfile.is_zipfile(path):
        raise UnsafeModel(
            f"{where}: refused, not a skops file (a skops file is a zip archive "
            f"with schema.json); {CONVERT_HINT}"
        )
    try:
        asked = get_untrusted_types(file=str(path))
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on a broken file
        raise UnsafeModel(
            f"{where}: refused, not a readable skops file: {type(exc).__name__}: {exc}"
        ) from exc
    outside = sorted(set(asked) - ALLOWED_TYPES)
    if outside:
        raise UnsafeModel(
            f"{where}: refused, the skops file asks to construct types outside the pack's "
            f"allow-list (tracking/skops_allowlist.py): {outside}. Loading them could "
            "execute code"
        )
    return sorted(asked)


# --------------------------------------------------------------------------------------------
# MLflow model directories


@dataclass(frozen=True)
class CheckedModel:
    """An MLflow model directory that passed `check_model_dir`."""

    path: Path
    flavors: tuple[str, ...]
    loader: str  # the python_function loader module, one of SAFE_LOADERS
    predict_fn: str
    skops_file: Path | None  # the sklearn flavor's file
    skops_types: tuple[str, ...]  # the types it needs from ALLOWED_TYPES


def plain_files(root: Path, where: str) -> Iterator[Path]:
    """Every file under `root`, refusing a symlink anywhere (the root included)."""
    if root.is_symlink():
        raise UnsafeModel(f"{where}: refused, the model directory is a symlink")
    for top, dirs, files in os.walk(root):
        for name in sorted([*dirs, *files]):
            p = Path(top) / name
            if p.is_symlink():
                raise UnsafeModel(
                    f"{where}: refused, {p.relative_to(root)} is a symlink (to "
                    f"{os.readlink(p)}); a model directory holds plain files only"
                )
            if name in files:
                yield p


def _inside(root: Path, rel: Any, where: str, what: str) -> Path:
    """`root/rel` when it is a plain path inside `root`."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise UnsafeModel(f"{where}: refused, {what} {rel!r} is not a path inside the model")
    return root / rel


def _flavor_problem(name: str, conf: Any) -> str | None:
    if not isinstance(conf, dict):
        return f"the {name} flavor section is not a mapping"
    if conf.get("code"):
        return f"the {name} flavor adds code paths ({conf['code']}) to sys.path when loaded"
    for key, allowed in FLAVOR_RULES[name].items():
        value = conf.get(key, "pickle" if key == "serialization_format" else None)
        if value not in allowed:
            return (
                f"its {name} flavor declares {key}: {value} (allowed: {sorted(allowed)}); "
                + ("pickle and cloudpickle execute code when loaded" if name == "sklearn" else "")
            ).rstrip("; ")
    return None


def _pyfunc_problem(conf: Any) -> str | None:
    if not isinstance(conf, dict):
        return "it has no python_function flavor"
    if conf.get("model_code_path"):
        code = conf["model_code_path"]
        return f"its python_function flavor runs Python code shipped with the model ({code})"
    if conf.get("python_model"):
        held = conf.get("python_model")
        return f"its python_function flavor holds a cloudpickled python_model ({held})"
    if conf.get("code"):
        return f"its python_function flavor adds code paths ({conf['code']}) to sys.path"
    loader = conf.get("loader_module")
    if loader not in SAFE_LOADERS:
        return (
            f"its python_function flavor loads through '{loader}', not one of the loaders the "
            f"pack checks ({sorted(SAFE_LOADERS)})"
        )
    if conf.get("predict_fn", "predict") not in PREDICT_FNS:
        fn = conf.get("predict_fn")
        return f"its python_function predict_fn '{fn}' is not one of {sorted(PREDICT_FNS)}"
    return None


def check_model_dir(path: str | Path, where: str) -> CheckedModel:
    """Check a local MLflow model directory right before it is loaded (module docstring).

    Raises:
        UnsafeModel: naming the flavor, setting, type or file, and `where` (the version).
    """
    root = Path(path)
    files = list(plain_files(root, where))
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise UnsafeModel(f"{where}: refused, not an MLflow model (no MLmodel file)")
    try:
        meta = yaml.safe_load(mlmodel.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UnsafeModel(
            f"{where}: refused, its MLmodel file is not readable YAML: {exc}"
        ) from exc
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict):
        raise UnsafeModel(f"{where}: refused, its MLmodel file declares no flavors")

    def refuse(problem: str) -> UnsafeModel:
        return UnsafeModel(f"{where}: refused, {problem}. Loading it could execute code")

    pyfunc = flavors.get("python_function")
    problem = _pyfunc_problem(pyfunc)
    if problem:
        raise refuse(problem)
    assert isinstance(pyfunc, dict)
    loader = str(pyfunc["loader_module"])
    unknown = sorted(set(flavors) - {"python_function", *FLAVOR_RULES})
    if unknown:
        raise refuse(f"its {unknown[0]} flavor is not one the pack loads safely")
    own = SAFE_LOADERS[loader]
    if own not in flavors:
        raise refuse(
            f"its python_function loader is {loader} but the model has no {own} flavor "
            "section (MLflow would fall back to unpickling)"
        )
    for name, conf in flavors.items():
        if name != "python_function" and (problem := _flavor_problem(name, conf)):
            raise refuse(problem)
    for key in ("model_path", "data"):
        if pyfunc.get(key) is not None:
            _inside(root, pyfunc[key], where, f"python_function {key}")
    for file in files:
        reason = pickle_reason(file)
        if reason:
            raise UnsafeModel(
                f"{where}: refused, the model's file {file.relative_to(root)} is a pickle: "
                f"{reason}. Loading a pickle can execute arbitrary code; {CONVERT_HINT}"
            )
    skops_file, needed = None, []
    if own == "sklearn":
        skops_file = _inside(root, flavors["sklearn"].get("pickled_model"), where, "sklearn file")
        if not skops_file.is_file():
            raise refuse(f"its sklearn file {skops_file.name} is missing")
        needed = skops_types(skops_file, f"{where} ({skops_file.name})")
    return CheckedModel(
        path=root,
        flavors=tuple(sorted(flavors)),
        loader=loader,
        predict_fn=str(pyfunc.get("predict_fn", "predict")),
        skops_file=skops_file,
        skops_types=tuple(needed),
    )
