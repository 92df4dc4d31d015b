"""Evidently's DataDriftPreset on two Parquet files; runs inside benchmarks/.evidently-venv.

    <venv>/bin/python run_evidently.py REF.parquet CUR.parquet COLUMNS.json

COLUMNS.json: {"numeric": [...], "categorical": [...]}. Prints one JSON line: seconds inside the
process (reading + report), the columns Evidently calls drifted, and each column's method and
score. Plain Python 3 (this file is not imported by the pack).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def read(pq, path):
    """The benchmark's reader settings (pandas 2 has no to_pandas_kwargs in read_parquet)."""
    return pq.read_table(path, pre_buffer=False).to_pandas(self_destruct=True, split_blocks=True)


def main() -> int:
    t0 = time.perf_counter()
    import pyarrow.parquet as pq
    from evidently.presets import DataDriftPreset

    from evidently import DataDefinition, Dataset, Report

    t_import = time.perf_counter() - t0
    ref_path, cur_path, cols_path = sys.argv[1:4]
    with open(cols_path) as fh:
        cols = json.load(fh)
    definition = DataDefinition(
        numerical_columns=cols["numeric"], categorical_columns=cols["categorical"]
    )
    ref = Dataset.from_pandas(read(pq, ref_path), data_definition=definition)
    cur = Dataset.from_pandas(read(pq, cur_path), data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    out = snapshot.dict()
    seconds = time.perf_counter() - t0
    per_column = {}
    for metric in out["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            per_column[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": metric.get("value"),
            }
    drifted = []
    for name, info in per_column.items():
        score, threshold, method = info["score"], info["threshold"], info["method"] or ""
        # Evidently: p-value methods drift when score <= threshold, distances when >= threshold
        is_pvalue = "p_value" in method or "p-value" in method or method.endswith("test")
        if score is not None and threshold is not None:
            flagged = score <= threshold if is_pvalue else score >= threshold
            info["drift"] = bool(flagged)
            if flagged:
                drifted.append(name)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "import_seconds": t_import,
                "drifted": drifted,
                "columns": per_column,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
