"""Performance before labels on the seasonal replay: the estimate vs the realised metrics.

The replay `make up` runs (airmlops_dev.demo_replay): flight_delay's champion v1 learns from
Jan-Sep 2013 (the spec's estimator and split), then Oct, Nov and Dec land one month at a time;
after October's labels the retrain rule fires and v2 (Jan-Oct) takes over. Here, without the
stack: both versions are fitted with the pack's pipeline on the same windows, calibrated on
their own holdout (the split the train DAG freezes), and each month they would score is
estimated (airmlops_core.stats.estimate) and compared with its realised accuracy, ROC AUC and
F1 from the month's labels. The holdouts are listed too: there the labels come from the same
distribution the calibration was measured on.

Optional: `--nannyml /path/to/python` runs NannyML's CBPE (in that interpreter's own venv:
NannyML does not install beside pandas 3) on the same probabilities, references being the
holdouts, and prints its estimates beside the pack's.

    .venv/bin/python benchmarks/cbpe_replay.py [--nannyml /tmp/nmvenv/bin/python]

Result (2026-12, nannyml 0.13.1): both holdouts calibrated (ECE 0.010, 0.008); mean absolute
error over the five month batches: accuracy 0.089, ROC AUC 0.061, F1 0.024 (NannyML 0.095,
0.078, 0.030). October is close (accuracy off by 0.03, ROC AUC by 0.008); December is not
(accuracy 0.87 estimated, 0.67 realised): its delay rate jumps while the features barely
tell, a change of P(label | features) no label-free estimate can see. v1's F1 is 0 estimated
and realised: it predicts no delays in Oct-Dec. NannyML's holdout rows are in-sample (it
fits its calibrator on the reference), the pack's are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from airmlops_core.io.window import split_frame
from airmlops_core.spec import load_spec
from airmlops_core.stats.estimate import ESTIMATED, calibration, estimate
from airmlops_core.stats.metrics import METRIC_FUNCS
from airmlops_core.train.estimator import feature_frame, fit
from airmlops_dev import demo_data
from airmlops_dev.demo_replay import MODEL, MONTHS

PROJECT = Path(__file__).resolve().parents[1]
NANNYML = Path(__file__).with_name("cbpe_nannyml.py")


def _version(spec: Any, flights: pd.DataFrame, last_month: int) -> dict[str, Any]:
    """Fit on Jan..last_month as the train DAG would; the holdout's probabilities and labels."""
    window = flights[flights["month"] <= last_month]
    train, holdout = split_frame(
        window,
        test_size=spec.split.test_size,
        seed=spec.split.seed,
        stratify_on=spec.target,
        key=spec.row_key,
    )
    t0 = time.perf_counter()
    model = fit(spec, train)
    seconds = time.perf_counter() - t0
    p = model.predict_proba(feature_frame(spec, holdout))[:, 1]
    y = holdout[spec.target].to_numpy()
    return {"model": model, "p": p, "y": y, "fit_s": seconds, "rows": len(train)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nannyml", help="a python with nannyml installed (optional)")
    args = ap.parse_args()
    spec = load_spec(PROJECT / "include" / "models" / f"{MODEL}.yaml")
    m = spec.monitoring
    flights = demo_data.flights().drop(columns=["dest"])
    versions = {"v1": _version(spec, flights, 9), "v2": _version(spec, flights, 10)}
    batches: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for name, v in versions.items():
        print(f"{name}: fitted on {v['rows']:,} rows in {v['fit_s']:.1f}s")
        batches.append((name, "holdout", v["p"], v["y"]))
    scored_by = {10: "v1", 11: "v1", 12: "v2"}  # the replay's champion per month
    for month in MONTHS:
        rows = flights[flights["month"] == month]
        for name in ("v1", "v2") if month > 10 else ("v1",):
            p = versions[name]["model"].predict_proba(feature_frame(spec, rows))[:, 1]
            tag = f"2013-{month:02d}" + (" *" if scored_by[month] == name else "")
            batches.append((name, tag, p, rows[spec.target].to_numpy()))

    cals = {n: calibration(v["y"], v["p"]) for n, v in versions.items()}
    for n, c in cals.items():
        verdict = "calibrated" if c.ece <= m.calibration_max_ece else "NOT calibrated"
        print(
            f"{n} holdout: ECE {c.ece:.4f} (calibration_max_ece {m.calibration_max_ece:g}: "
            f"{verdict}), Brier {c.brier:.4f}, {c.n:,} rows"
        )
    nml = _nannyml(args.nannyml, batches) if args.nannyml else {}
    head = "  ".join(f"{k:>25}" for k in ESTIMATED)
    print(f"\n{'batch':<17} {'rows':>7}  {head}   (estimate / realised / |error|)")
    errors: dict[str, list[float]] = {k: [] for k in ESTIMATED}
    nml_errors: dict[str, list[float]] = {k: [] for k in ESTIMATED}
    for i, (name, tag, p, y) in enumerate(batches):
        result = estimate(p, cals[name], max_ece=m.calibration_max_ece, min_rows=m.min_rows)
        real = {k: METRIC_FUNCS[k](y, p) for k in ESTIMATED}
        cells = []
        for k in ESTIMATED:
            est = result.estimated.get(k, float("nan"))
            err = abs(est - real[k])
            if tag != "holdout":
                errors[k].append(err)
            cells.append(f"{est:.3f} / {real[k]:.3f} / {err:.3f}")
        print(f"{name + ' ' + tag:<17} {len(y):>7,}  " + "  ".join(f"{c:>25}" for c in cells))
        if nml:
            shown = []
            for k in ESTIMATED:
                v = nml[str(i)].get(k, float("nan"))
                if tag != "holdout":
                    nml_errors[k].append(abs(v - real[k]))
                shown.append(f"{v:.3f} / {abs(v - real[k]):.3f}")
            print(f"{'  NannyML CBPE':<26}" + "  ".join(f"{c:>25}" for c in shown))
    print("\nmean absolute error over the replay's months (holdouts excluded):")
    for k in ESTIMATED:
        line = f"  {k:<9} pack {np.mean(errors[k]):.4f}"
        if nml:
            line += f"   NannyML {np.mean(nml_errors[k]):.4f}"
        print(line)
    print("(* = the version the replay's champion is for that month)")


def _nannyml(python: str, batches: list[tuple[str, str, np.ndarray, np.ndarray]]) -> Any:
    """NannyML's CBPE per batch, run by `python` (benchmarks/cbpe_nannyml.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, tag, p, y) in enumerate(batches):
            pd.DataFrame({"p": p, "y": y, "version": name, "holdout": tag == "holdout"}).to_parquet(
                Path(tmp) / f"{i}.parquet"
            )
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        out = subprocess.run(
            [python, str(NANNYML), tmp], check=True, capture_output=True, text=True, env=env
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
