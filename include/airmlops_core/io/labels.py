"""Labels that landed after scoring: <data>/labels/<model>/*.parquet, one row per row key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from airmlops_core import settings
from airmlops_core.io import data

if TYPE_CHECKING:
    import pandas as pd


def landed_labels(model: str, row_key: str, target: str) -> pd.DataFrame:
    """The row key and target of every landed label file of `model` (a key's first label
    wins); an empty frame with those two columns when none has landed."""
    import pandas as pd

    files = sorted((Path(settings.data_dir()) / "labels" / model).glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=[row_key, target])
    return pd.concat(
        [data.read_frame(str(f), columns=[row_key, target]) for f in files], ignore_index=True
    ).drop_duplicates(row_key)
