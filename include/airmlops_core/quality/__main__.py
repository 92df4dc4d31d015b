"""The data gate from a shell: draft a suite from reference data, or check a file against one.

python -m airmlops_core.quality profile DATA_URI --model M [--target T] [--unique COL]
    [--out PATH] [--window COLUMN START END]
python -m airmlops_core.quality check DATA_URI --model M [--batch] [--html PATH]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from airmlops_core.quality.check import validate_uri
from airmlops_core.quality.drafting import profile_to_file
from airmlops_core.quality.report import render_html
from airmlops_core.quality.suite import load_suite, suite_path


def main(argv: list[str] | None = None) -> int:
    """`python -m airmlops_core.quality profile|check ...`; exit code 1 when a check fails."""
    parser = argparse.ArgumentParser(
        prog="python -m airmlops_core.quality", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="draft a suite from reference data")
    p.add_argument("data_uri")
    p.add_argument("--model", required=True)
    p.add_argument("--target")
    p.add_argument("--unique", action="append", default=[])
    p.add_argument("--out", type=Path, help="default: include/expectations/<model>.yaml")
    p.add_argument("--window", nargs=3, metavar=("COLUMN", "START", "END"))
    c = sub.add_parser("check", help="check a data file against a suite")
    c.add_argument("data_uri")
    c.add_argument("--model", required=True)
    c.add_argument("--batch", action="store_true", help="scoring variant (no target)")
    c.add_argument("--html", type=Path, help="also write the HTML report here")
    args = parser.parse_args(argv)
    if args.command == "profile":
        window = None
        if args.window:
            window = (args.window[0], *(yaml.safe_load(v) for v in args.window[1:]))
        out = args.out or suite_path(args.model)
        profile_to_file(args.data_uri, args.model, args.target, out, args.unique, window=window)
        print(f"wrote {out}")
        return 0
    suite = load_suite(suite_path(args.model))
    result, _ = validate_uri(args.data_uri, suite, batch=args.batch)
    print(result.summary())
    if args.html:
        args.html.write_text(render_html(result, title=f"Data check: {args.model}"), "utf-8")
    return 0 if result.success else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
