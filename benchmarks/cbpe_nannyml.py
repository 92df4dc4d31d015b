"""NannyML's CBPE on the batches benchmarks/cbpe_replay.py writes (run in NannyML's own venv).

Argument: a directory of <i>.parquet files (columns p, y, version, holdout). Per version, the
holdout is NannyML's reference; every batch is estimated as one chunk. Prints one JSON line:
{"<i>": {"accuracy": ..., "roc_auc": ..., "f1": ...}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nannyml as nml
import pandas as pd

METRICS = ["accuracy", "roc_auc", "f1"]


def main(folder: str) -> None:
    frames = {int(p.stem): pd.read_parquet(p) for p in Path(folder).glob("*.parquet")}
    for df in frames.values():
        df["y_pred"] = (df["p"] > 0.5).astype(int)
    out = {}
    for version in {str(df["version"].iloc[0]) for df in frames.values()}:
        mine = {i: df for i, df in frames.items() if df["version"].iloc[0] == version}
        [reference] = [df for df in mine.values() if df["holdout"].iloc[0]]
        cbpe = nml.CBPE(
            y_pred_proba="p",
            y_pred="y_pred",
            y_true="y",
            problem_type="classification_binary",
            metrics=METRICS,
            chunk_number=1,
        )
        cbpe.fit(reference[["p", "y_pred", "y"]])
        for i, df in mine.items():
            res = cbpe.estimate(df[["p", "y_pred"]]).filter(period="analysis").to_df()
            out[str(i)] = {m: float(res[(m, "value")].iloc[0]) for m in METRICS}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
