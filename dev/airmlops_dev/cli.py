"""The dev stack's `airmlops` commands: demo data, the local stack, `make up`'s demo."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from airmlops_dev import demo_data, localstack, run_progress
from airmlops_dev.private_files import make_private_dir
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_secrets import use_mlflow_credentials
from airmlops_dev.up_timeline import Timeline


def default_tracking_uri() -> str:
    """The local stack's MLflow server (AIRMLOPS_MLFLOW_PORT), with its credentials.

    MLflow's client in this process gets the stack's admin login (MLFLOW_TRACKING_USERNAME /
    PASSWORD, read from the stack's secrets file) unless the caller set credentials already.
    """
    cfg = StackConfig()
    use_mlflow_credentials(cfg, override=False)
    return cfg.mlflow_url


def cmd_demo_data(args: argparse.Namespace) -> int:
    for name, ref in demo_data.write_all(force=args.force).items():
        print(f"{name}: {ref.uri}")
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    return localstack.main([args.action])


def cmd_up(args: argparse.Namespace) -> int:
    """Start the local stack, run the demo, print where everything is and where the time went
    (the timeline, also in <home>/up_timeline.json)."""
    timeline = Timeline.for_make_up()
    cfg = StackConfig()
    try:
        with timeline.phase("demo data"):
            make_private_dir(cfg.root / "data")  # the home is owner-only from the start
            demo_data.write_all(cfg.root / "data")  # before Airflow starts: scheduled runs read it
        localstack.up(cfg, timeline=timeline)
        # imported once the stack starts: MLflow's import overlaps the components' start
        from airmlops_dev import demo

        with timeline.phase("demo: train, promotion gate"):
            summaries = demo.run_demo(cfg, retrain=args.retrain)
        print(localstack.summary(cfg))
        print("\nDemo models (MLflow registry):")
        for s in summaries:
            print(s.line())
        with timeline.phase("demo: seasonal replay"):
            _replay(cfg, again=args.retrain)
    finally:
        _close_timeline(timeline, cfg)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """The seasonal replay on the running stack (`make replay`): a stack that is down or has
    no flight_delay champion is refused with what to run first."""
    from airmlops_dev import demo_replay

    started = time.monotonic()
    try:
        _replay(StackConfig(), again=args.again)
    except demo_replay.NotReady as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nreplay took {time.monotonic() - started:.0f} s")
    return 0


def _replay(cfg: StackConfig, *, again: bool) -> None:
    """Print the seasonal replay's report, month by month as each completes."""
    from airmlops_dev import demo_replay

    print(
        "\nSeasonal replay: Oct-Dec 2013 flights land month by month (landing Asset event ->"
        " flight_delay__score -> flight_delay__drift; labels land a month later):",
        flush=True,
    )
    for line in demo_replay.replay(cfg, again=again):
        print(line, flush=True)


def _close_timeline(timeline: Timeline, cfg: StackConfig) -> None:
    """Add every demo run seen, print the timeline and write it to <home>/up_timeline.json."""
    now = time.time()
    for record in run_progress.shared().runs.values():
        timeline.add(
            f"  run {record.dag_id}",
            record.first_seen,
            record.ended or now,
            run_id=record.run_id,
            state=record.state,
            tasks=record.tasks,
        )
    path = cfg.root / "up_timeline.json"
    print(f"\nWhere the time went (since `make` started; also in {path}):")
    print(timeline.table(now))
    if cfg.root.is_dir():
        timeline.write(path)


def register(sub: Any) -> None:
    """Add the dev commands to the `airmlops` CLI's subparsers."""
    p = sub.add_parser("demo-data", help="write the demo datasets")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_demo_data)
    p = sub.add_parser("stack", help="the local stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_stack)
    p = sub.add_parser("up", help="start the local stack and run the demo")
    p.add_argument("--retrain", action="store_true", help="train demo models again")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("replay", help="the seasonal replay of flight_delay on the running stack")
    p.add_argument("--again", action="store_true", help="replay anew (default: the last report)")
    p.set_defaults(func=cmd_replay)
