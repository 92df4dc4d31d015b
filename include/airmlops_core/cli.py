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
    if spec.source.kind != "file" or not spec.source.uri:
        print(f"{args.model}: profile-suite reads local files; pass a reference file with "
              "`python -m airmlops_core.data_checks profile`", file=sys.stderr)
        return 2
    window = spec.source.window
    out = args.out or data_checks.suite_path(spec.name)
    data_checks.profile_to_file(
        data.resolve_uri(spec.source.uri, settings.data_dir()), spec.name, spec.target, out,
        [spec.row_key] if spec.row_key else [],
        window=(window.column, window.start, window.end) if window else None)
    print(f"wrote {out}: review it, then commit it")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from airmlops_core import localstack

    return localstack.main([args.action])


def cmd_up(args: argparse.Namespace) -> int:
    """Start the local stack, run the demo, print where everything is."""
    from airmlops_core import demo, demo_data, localstack

    cfg = localstack.StackConfig()
    demo_data.write_all(cfg.root / "data")  # before Airflow starts: scheduled runs read it
    localstack.up(cfg)
    summaries = demo.run_demo(cfg, retrain=args.retrain)
    print(localstack._summary(cfg))
    print("\nDemo models (MLflow registry):")
    for s in summaries:
        print(s.line())
    print("\nBulk scoring (a landing Asset event -> flight_delay__score):")
    print("\n".join(demo.run_score_demo(cfg).lines()))
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
