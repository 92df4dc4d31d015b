"""`airmlops`: validate specs, draft suites, onboard external models.

The local stack and demo commands come from `airmlops_dev.cli` when that package is installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from airmlops_core import dag_files, errors, settings
from airmlops_core.errors import EstimatorError, SpecError, SuiteError
from airmlops_core.spec import ModelSpec, load_spec, load_specs, spec_hash

# Each command imports what it needs (scikit-learn, MLflow, pandas) when it runs: seconds of
# imports that `airmlops up` (make up) would otherwise pay before it starts anything.


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate every spec (or the spec files named); with --deep also build each estimator
    and read each model's expectation suite."""

    specs: dict[str, ModelSpec] = {}
    errors: dict[str, SpecError] = {}
    paths: dict[str, Path] = {}
    if args.specs:
        where = f"{len(args.specs)} file(s)"
        for path in args.specs:
            try:
                spec = load_spec(path)
            except SpecError as exc:
                errors[str(path)] = exc
                continue
            specs[spec.name] = spec
            paths[spec.name] = Path(path)
    else:
        specs, errors = load_specs(args.models_dir)
        where = str(args.models_dir)
        paths = {name: args.models_dir / f"{name}.yaml" for name in specs}
    for err in errors.values():
        print(err, file=sys.stderr)
    if args.deep:
        from airmlops_core.train.estimator import build_pipeline
        from airmlops_core.train.search import check_space

        for name, s in list(specs.items()):
            if s.is_external:
                continue  # built elsewhere: no estimator to build
            try:
                pipeline = build_pipeline(s)
                if s.estimator.search is not None:
                    check_space(s, pipeline)
            except EstimatorError as exc:
                print(f"{paths[name]}: {exc}", file=sys.stderr)
                errors[name] = exc  # type: ignore[assignment]
        from airmlops_core.quality.suite import load_suite, suite_file

        for name, s in specs.items():  # the suite a reviewer edited by hand, before a run reads it
            suite = suite_file(s)
            if not suite.exists():
                print(
                    f"{paths[name]}: no expectation suite at {suite}; draft one with "
                    f"`airmlops profile-suite {name}`",
                    file=sys.stderr,
                )
                continue
            try:
                load_suite(suite)
            except SuiteError as exc:
                print(exc, file=sys.stderr)
                errors[name] = exc  # type: ignore[assignment]
    print(
        f"{len(specs) - sum(n in specs for n in errors)} valid, {len(errors)} invalid "
        f"spec(s) in {where}"
    )
    return 1 if errors else 0


def cmd_profile_suite(args: argparse.Namespace) -> int:
    """Draft a model's expectation suite from its spec's training data, for review."""
    from airmlops_core.io import data
    from airmlops_core.quality.drafting import profile_to_file
    from airmlops_core.quality.suite import suite_path

    spec = load_spec(args.models_dir / f"{args.model}.yaml")
    source = spec.external.reference if spec.external else spec.source
    if source.kind != "file" or not source.uri:
        print(
            f"{args.model}: profile-suite reads local files; pass a reference file with "
            "`python -m airmlops_core.quality profile`",
            file=sys.stderr,
        )
        return 2
    window = source.window
    out = args.out or suite_path(spec.name)
    profile_to_file(
        data.resolve_uri(source.uri, settings.data_dir()),
        spec.name,
        spec.target,
        out,
        [spec.row_key] if spec.row_key else [],
        window=(window.column, window.start, window.end) if window else None,
        source_name=source.uri,
    )
    print(f"wrote {out}: review it, then commit it")
    return 0


def _dev_cli() -> ModuleType | None:
    """The dev stack's commands (`airmlops_dev.cli`), when that package is installed."""
    try:
        return importlib.import_module("airmlops_dev.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "airmlops_dev" and not (exc.name or "").startswith("airmlops_dev."):
            raise
        return None


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the local stack's MLflow server when the dev stack is installed.

    Raises:
        SystemExit: when neither is available.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    dev = _dev_cli()
    if dev is None:
        raise SystemExit("no MLflow server: set MLFLOW_TRACKING_URI or pass --tracking-uri")
    return str(dev.default_tracking_uri())


def cmd_onboard(args: argparse.Namespace) -> int:
    """Onboard a model built elsewhere (spec with `external:`) and make it champion."""
    from airmlops_core import onboard
    from airmlops_core.tracking.model_source import REGISTRY_SCHEMES

    path = args.models_dir / f"{args.model}.yaml"
    spec = load_spec(path)
    try:
        # paths on the command line are relative to the current directory; both must be
        # inside the data directory (onboard refuses anything else, named)
        uri = args.model_uri
        if uri and not uri.startswith(REGISTRY_SCHEMES) and ":" not in uri:
            uri = str(Path(uri).expanduser().absolute())
        result = onboard.onboard(
            spec,
            model_uri=uri,
            model_file=args.model_file.expanduser().absolute() if args.model_file else None,
            tracking_uri=args.tracking_uri or default_tracking_uri(),
            spec_sha=spec_hash(path.read_bytes()),
        )
    except (errors.OnboardError, errors.UnsafeModel) as exc:
        print(f"{args.model}: not onboarded: {exc}", file=sys.stderr)
        return 2
    print(result["summary"])
    print(f"version: {result['url']}\nrun:     {result['run_url']}")
    return 0


def cmd_install_dags(args: argparse.Namespace) -> int:
    """Copy the pack's DAG entry files into an Airflow DAG folder."""
    try:
        written = dag_files.install(args.dag_folder, overwrite=args.overwrite)
    except dag_files.DagFileConflict as exc:
        print(exc, file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.dag_folder}: the pack's DAG files are already there, unchanged")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="airmlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate model specs without Airflow")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument(
        "--deep",
        action="store_true",
        help="also import and build estimators, read expectation suites",
    )
    p.add_argument(
        "specs", nargs="*", type=Path, help="spec files to check (default: all in --models-dir)"
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("install-dags", help="copy the pack's DAG files into a DAG folder")
    p.add_argument("dag_folder", type=Path, help="the Airflow DAG folder ([core] dags_folder)")
    p.add_argument("--overwrite", action="store_true", help="replace differing files")
    p.set_defaults(func=cmd_install_dags)
    p = sub.add_parser("profile-suite", help="draft a model's expectation suite from its data")
    p.add_argument("model")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument("--out", type=Path, help="default: include/expectations/<model>.yaml")
    p.set_defaults(func=cmd_profile_suite)
    p = sub.add_parser("onboard", help="onboard a model built elsewhere (monitoring only)")
    p.add_argument("model", help="a model whose spec has an external: section")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model-file",
        type=Path,
        help="a scikit-learn model saved with skops, inside the data directory",
    )
    src.add_argument(
        "--model-uri",
        help="an MLflow model: runs:/..., models:/..., or a model directory inside the data "
        "directory",
    )
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local stack's MLflow"
    )
    p.set_defaults(func=cmd_onboard)
    dev = _dev_cli()
    if dev is not None:  # the local stack and the demo: development installs only
        dev.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
