"""`airmlops`: validate specs, prepare demo data, run the local stack and the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from airmlops_core import settings


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate every spec; with --deep also import and build each estimator."""
    from airmlops_core.spec import load_specs

    specs, errors = load_specs(args.models_dir)
    for err in errors.values():
        print(err, file=sys.stderr)
    if args.deep:
        from airmlops_core.training import EstimatorError, build_pipeline

        for name, s in list(specs.items()):
            if s.is_external:
                continue  # built elsewhere: no estimator to build
            try:
                build_pipeline(s)
            except EstimatorError as exc:
                print(f"{args.models_dir}/{name}.yaml: {exc}", file=sys.stderr)
                errors[name] = exc  # type: ignore[assignment]
    print(f"{len(specs) - sum(n in specs for n in errors)} valid, {len(errors)} invalid "
          f"spec(s) in {args.models_dir}")
    return 1 if errors else 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from airmlops_core import demo_data

    for name, ref in demo_data.write_all(force=args.force).items():
        print(f"{name}: {ref.uri}")
    return 0


def cmd_profile_suite(args: argparse.Namespace) -> int:
    """Draft a model's expectation suite from its spec's training data, for review."""
    from airmlops_core import data, data_checks
    from airmlops_core.spec import load_spec

    spec = load_spec(args.models_dir / f"{args.model}.yaml")
    source = spec.external.reference if spec.external else spec.source
    if source.kind != "file" or not source.uri:
        print(f"{args.model}: profile-suite reads local files; pass a reference file with "
              "`python -m airmlops_core.data_checks profile`", file=sys.stderr)
        return 2
    window = source.window
    out = args.out or data_checks.suite_path(spec.name)
    data_checks.profile_to_file(
        data.resolve_uri(source.uri, settings.data_dir()), spec.name, spec.target, out,
        [spec.row_key] if spec.row_key else [],
        window=(window.column, window.start, window.end) if window else None)
    print(f"wrote {out}: review it, then commit it")
    return 0


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the local stack's MLflow server (AIRMLOPS_MLFLOW_PORT)."""
    import os

    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    from airmlops_core import localstack

    return localstack.StackConfig().mlflow_url


def cmd_onboard(args: argparse.Namespace) -> int:
    """Onboard a model built elsewhere (spec with `external:`) and make it champion."""
    from airmlops_core import onboard
    from airmlops_core.spec import load_spec, spec_hash

    path = args.models_dir / f"{args.model}.yaml"
    spec = load_spec(path)
    try:
        result = onboard.onboard(spec, model_uri=args.model_uri, model_file=args.model_file,
                                 tracking_uri=args.tracking_uri or default_tracking_uri(),
                                 spec_sha=spec_hash(path.read_bytes()))
    except onboard.OnboardError as exc:
        print(f"{args.model}: not onboarded: {exc}", file=sys.stderr)
        return 2
    print(result["summary"])
    print(f"version: {result['url']}\nrun:     {result['run_url']}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from airmlops_core import localstack

    return localstack.main([args.action])


def cmd_up(args: argparse.Namespace) -> int:
    """Start the local stack, run the demo, print where everything is."""
    from airmlops_core import demo, demo_data, demo_replay, localstack

    cfg = localstack.StackConfig()
    demo_data.write_all(cfg.root / "data")  # before Airflow starts: scheduled runs read it
    localstack.up(cfg)
    summaries = demo.run_demo(cfg, retrain=args.retrain)
    print(localstack._summary(cfg))
    print("\nDemo models (MLflow registry):")
    for s in summaries:
        print(s.line())
    print("\nSeasonal replay: Oct-Dec 2013 flights land month by month (landing Asset event ->"
          " flight_delay__score -> flight_delay__drift; labels land a month later):")
    for line in demo_replay.replay(cfg, again=args.retrain):
        print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="airmlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate model specs without Airflow")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument("--deep", action="store_true", help="also import and build estimators")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("demo-data", help="write the demo datasets")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_demo_data)
    p = sub.add_parser("profile-suite", help="draft a model's expectation suite from its data")
    p.add_argument("model")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument("--out", type=Path, help="default: include/expectations/<model>.yaml")
    p.set_defaults(func=cmd_profile_suite)
    p = sub.add_parser("onboard", help="onboard a model built elsewhere (monitoring only)")
    p.add_argument("model", help="a model whose spec has an external: section")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-file", type=Path, help="a scikit-learn model saved with skops")
    src.add_argument("--model-uri", help="an MLflow model: runs:/..., models:/..., or a "
                                         "model directory")
    p.add_argument("--models-dir", type=Path, default=settings.models_dir())
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local "
                                          "stack's MLflow")
    p.set_defaults(func=cmd_onboard)
    p = sub.add_parser("stack", help="the local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)
    p = sub.add_parser("up", help="start the local stack and run the demo")
    p.add_argument("--retrain", action="store_true", help="train demo models again")
    p.set_defaults(func=cmd_up)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
